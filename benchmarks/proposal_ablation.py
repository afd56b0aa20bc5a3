"""What each part of the model proposer adds to class-agnostic recall (BENCHMARKS.md, issue 3).

    python benchmarks/proposal_ablation.py --dataset ../shared/data/coco128_seg \
        --json benchmarks/results/proposal_ablation.json [--model DIR]

Rows: the proposer without its feature hierarchy (masks, their connected components, thresholds) on the val
split, and the feature hierarchy's SLIC granularity (``FEATURE_SEGMENTS``) on the first 40 *train* images, which
is where the shipped value was chosen (so the val figures stay untuned).
"""

from __future__ import annotations

import argparse
import json

import omniseg
from omniseg.atomic import atomic_write_text
from omniseg.eval import proposals

KEYS = ("mean_proposals_per_image", "recall@0.5", "recall@0.7", "recall@0.9", "gt_segments", "images")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="../shared/data/coco128_seg")
    parser.add_argument("--model")
    parser.add_argument("--segments", default="32,48,96")
    parser.add_argument("--train-images", type=int, default=40)
    parser.add_argument("--json")
    args = parser.parse_args()
    segmenter = omniseg.load(args.model)
    rows = []

    def measure(label: str, proposer, split: str, limit: int | None) -> None:
        report = proposals.evaluate_recall(proposer, args.dataset, label, 100, split=split, limit=limit, progress=False)
        rows.append({"proposer": label, "split": split, **{k: report[k] for k in KEYS}})
        print(json.dumps(rows[-1]))

    measure("without feature hierarchy", proposals.model_proposer(segmenter, feature_hierarchy=False), "val", None)
    shipped = proposals.FEATURE_SEGMENTS
    for segments in [int(s) for s in args.segments.split(",") if s]:
        proposals.FEATURE_SEGMENTS = segments
        proposer = proposals.model_proposer(segmenter)
        measure(f"feature hierarchy, {segments} segments", proposer, "train", args.train_images)
    proposals.FEATURE_SEGMENTS = shipped
    if args.json:
        atomic_write_text(args.json, json.dumps({"model": segmenter.model_id, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

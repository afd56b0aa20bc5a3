"""Effect of prompt engineering on val mIoU (issue 5): templates averaged vs max-ensembled,
synonyms / polysemy context (the shipped ``-pe`` vocabularies), on CamVid and MSRC-v2.

    python benchmarks/prompt_engineering.py [--datasets camvid,msrc_v2] [--json OUT]

Every configuration gives the same numbers as
``omniseg eval DATASET --split val [--vocab V] [--templates T --template-mode M] [--grounding]``;
the script only computes each image's Regions once and reuses them for all configurations.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np
import torch

import omniseg
from omniseg.atomic import atomic_write_text
from omniseg.eval.semantic import evaluate_semantic
from omniseg.images import ImageLike
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.vocab import TEMPLATE_SETS, Vocabulary

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VOCABS = {"camvid": "camvid11", "msrc_v2": "msrc23"}
# (label, vocabulary suffix, template set, template mode)
CONFIGS = [
    ("names from classes.json (baseline)", None, "plain", "average"),
    ("+ 8 templates, averaged", None, "scene", "average"),
    ("+ 8 templates, max over prompts", None, "scene", "max"),
    ("synonyms/context (-pe), max over synonyms", "-pe", "plain", "average"),
    ("-pe + 8 templates averaged, max over synonyms", "-pe", "scene", "average"),
    ("-pe + 8 templates, max over all prompts", "-pe", "scene", "max"),
]


class RegionCache(Segmenter):
    """A Segmenter that remembers each image's Regions (keyed by the pixels)."""

    def __init__(self, inner: Segmenter) -> None:
        super().__init__(inner.model, inner.text_encoder, inner.model_id, inner.max_size)
        self._cache: dict[tuple, Regions] = {}

    def regions(self, image: ImageLike) -> Regions:
        array = np.ascontiguousarray(image)
        key = (array.shape, zlib.crc32(array.tobytes()))
        if key not in self._cache:
            self._cache[key] = super().regions(array)
        return self._cache[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="camvid,msrc_v2")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segmenter = RegionCache(omniseg.load())
    report: dict = {"split": "val (val_fraction=0.2, seed=0)", "datasets": {}}
    for name in args.datasets.split(","):
        base = VOCABS[name]
        rows = []
        for label, suffix, templates, mode in CONFIGS:
            if suffix is None:  # the dataset's own names, as `omniseg eval` without --vocab
                vocab = Vocabulary.from_names(json.loads((SHARED / name / "classes.json").read_text()))
            else:
                vocab = Vocabulary.load(base + suffix)
            vocab.templates, vocab.template_mode = TEMPLATE_SETS[templates], mode
            row = {"config": label, "vocab": base + suffix if suffix else "classes.json"}
            row.update({"templates": templates, "template_mode": mode})
            start = time.perf_counter()
            for grounding in (False, True):
                result = evaluate_semantic(
                    segmenter, SHARED / name, grounding=grounding, split="val", limit=args.limit,
                    progress=False, vocabulary=vocab,
                )  # fmt: skip
                row["grounding_mIoU" if grounding else "mIoU"] = result["mIoU"]
                row["images"] = result["images"]
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"{name:8s} {label:48s} mIoU {row['mIoU']:6.2f}  grounding {row['grounding_mIoU']:6.2f}", flush=True)
        report["datasets"][name] = rows
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Tune the frozen recognizer's fusion weight and the "unknown" threshold on training/val parts.

The model runs once per image (regions, embeddings, ImageNet probabilities cached in --cache);
every setting is then scored from the cache: mIoU (full vocabulary) and grounding mIoU (the image's
own classes), for each dataset part given as NAME:SPLIT. Zero-shot sets are tuned on their *train*
part only (e.g. ccp:train), so their val part stays an honest held-out figure.

    python benchmarks/fusion_sweep.py ccp:train camvid:val msrc_v2:val --limit 60 \
        --region-weights 0,0.5,1 --pixel-weights 0,0.5,1 --json benchmarks/results/fusion_sweep.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import omniseg
from omniseg.data.uniform import IGNORE, UniformDataset, read_mask, read_rgb
from omniseg.eval.metrics import ConfusionMatrix
from omniseg.recognition.fusion import FusionConfig, RecognizerFusion
from omniseg.regions import Regions
from omniseg.tasks.semantic import semantic_segmentation
from omniseg.vocab import Vocabulary

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def cached_regions(seg: omniseg.Segmenter, part: str, limit: int, cache: Path) -> list[tuple[Regions, np.ndarray]]:
    name, split = part.split(":")
    dataset = UniformDataset(DATA / name)
    samples = dataset.eval_samples(split, limit=limit)
    out = []
    for sample in tqdm(samples, desc=part):
        path = cache / f"{name}_{split}_{sample.id}.pt"
        gt = read_mask(sample.mask_path, len(dataset.classes))
        if path.is_file():
            fields = torch.load(path, weights_only=True)
        else:
            r = seg.regions(read_rgb(sample.image_path))
            fields = {
                "masks": r.masks.half(),
                "embeddings": r.embeddings,
                "scores": r.scores,
                "imagenet_probs": r.imagenet_probs.half(),
                "imagenet_pixel_logits": r.imagenet_pixel_logits.half(),
                "image_size": torch.tensor(r.image_size),
            }
            torch.save(fields, path)
        regions = Regions(
            masks=fields["masks"].float(),
            embeddings=fields["embeddings"],
            scores=fields["scores"],
            image_size=tuple(int(v) for v in fields["image_size"]),
            imagenet_probs=fields["imagenet_probs"].float(),
            imagenet_pixel_logits=fields["imagenet_pixel_logits"].float(),
        )
        out.append((regions, gt))
    return out


def score(
    items,
    vocab: Vocabulary,
    cover: torch.Tensor,
    fusion: FusionConfig,
    threshold: float | None,
    grounding: bool,
    reference: torch.Tensor,
) -> tuple[float | None, float]:
    """(mIoU, fraction of labelled ground-truth pixels left unlabeled)."""
    prompts, owner = torch.from_numpy(vocab.embeddings), torch.from_numpy(vocab.prompt_to_class)
    k = len(vocab)
    conf = ConfusionMatrix(k, IGNORE)
    for regions, gt in items:
        if grounding:
            present = [int(c) for c in np.unique(gt) if c != IGNORE and c < k]
            keep = torch.isin(owner, torch.tensor(present))
            remap = {c: i for i, c in enumerate(present)}
            local = torch.tensor([remap[int(c)] for c in owner[keep]])
            label, _ = semantic_segmentation(
                regions,
                prompts[keep],
                local,
                len(present),
                gt.shape,
                threshold,
                class_cover=cover[present],
                fusion=fusion,
                reference=reference,
            )
            pred = np.where(label.numpy() < 0, -1, np.asarray(present)[label.numpy().clip(0)])
        else:
            label, _ = semantic_segmentation(
                regions, prompts, owner, k, gt.shape, threshold, class_cover=cover, fusion=fusion, reference=reference
            )
            pred = label.numpy()
        pred = np.where(pred < 0, k, pred)  # unlabeled: a wrong answer for every labelled pixel
        conf.update(pred, gt)
    s = conf.scores()
    unlabeled = conf.matrix[:, k].sum() / max(1, conf.matrix.sum())
    return (None if math.isnan(s["mIoU"]) else round(float(s["mIoU"]), 2)), round(float(unlabeled), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", help="NAME:SPLIT, e.g. ccp:train")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--region-weights", default="0,0.5,1")
    parser.add_argument("--pixel-weights", default="0,0.5,1")
    parser.add_argument("--temperatures", default="1")
    parser.add_argument("--seen-weights", default="0")
    parser.add_argument("--thresholds", default="none")
    parser.add_argument("--cache", type=Path, default=Path("runs/fusion_cache"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    seg = omniseg.load()
    trained = json.loads((Path(omniseg.__file__).parent / "weights/default/trained_classes.json").read_text())
    grid = [
        FusionConfig(float(r), float(p), float(t), float(sw))
        for r in args.region_weights.split(",")
        for p in args.pixel_weights.split(",")
        for t in args.temperatures.split(",")
        for sw in args.seen_weights.split(",")
    ]
    thresholds = [None if t == "none" else float(t) for t in args.thresholds.split(",")]
    results = []
    for part in args.parts:
        items = cached_regions(seg, part, args.limit, args.cache)
        dataset = UniformDataset(DATA / part.split(":")[0])
        vocab = seg.vocabulary(Vocabulary.from_names(dataset.classes))
        reference = seg.alternatives(dataset.classes)
        for fusion in grid:
            cover = RecognizerFusion(seg.text_encoder, trained["classes"], fusion).class_cover(
                Vocabulary.from_names(dataset.classes)
            )
            for t in thresholds:
                row = {
                    "part": part,
                    "region_weight": fusion.region_weight,
                    "pixel_weight": fusion.pixel_weight,
                    "temperature": fusion.temperature,
                    "seen_weight": fusion.seen_weight,
                    "threshold": t,
                }
                row["mIoU"], row["unlabeled"] = score(items, vocab, cover, fusion, t, False, reference)
                row["grounding_mIoU"], row["grounding_unlabeled"] = score(
                    items, vocab, cover, fusion, t, True, reference
                )
                print(json.dumps(row), flush=True)
                results.append(row)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

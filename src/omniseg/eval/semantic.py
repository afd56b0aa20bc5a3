"""`omniseg eval DATASET_DIR`: mIoU and grounding mIoU on the uniform dataset format.

mIoU: every image is segmented with the dataset's full vocabulary (classes.json).
Grounding mIoU (seeds/003 sec. 4.3): each image's vocabulary is only the classes in its ground
truth; predictions are mapped back to dataset ids and accumulate in one confusion matrix.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from omniseg.data.uniform import IGNORE, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.eval.metrics import ConfusionMatrix
from omniseg.segmenter import Segmenter
from omniseg.tasks.semantic import semantic_segmentation
from omniseg.vocab import Vocabulary

if TYPE_CHECKING:
    from omniseg.eval.report import ReportCollector


def evaluate_semantic(
    segmenter: Segmenter,
    dataset_dir: str | Path,
    grounding: bool = False,
    limit: int | None = None,
    split: str = "all",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    progress: bool = True,
    collector: ReportCollector | None = None,
    vocabulary: Vocabulary | None = None,
) -> dict:
    """collector: also sees every (prediction, ground truth) and the final confusion matrix (--report).
    vocabulary: prompts for the dataset's classes (synonyms, templates); its class i must be
    dataset class i (same count, same order). Default: the names in classes.json, no templates."""
    dataset = UniformDataset(dataset_dir)
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    if vocabulary is not None and len(vocabulary) != len(dataset.classes):
        raise InputError(
            f"the vocabulary has {len(vocabulary)} classes but {dataset.name} has {len(dataset.classes)}: "
            "its class i must be the dataset's class i"
        )
    vocab = segmenter.vocabulary(vocabulary or Vocabulary.from_names(dataset.classes))
    prompts = torch.from_numpy(vocab.embeddings)
    owner = torch.from_numpy(vocab.prompt_to_class)
    fusion = segmenter.fusion
    cover = fusion.class_cover(vocab) if fusion is not None else None
    fusion_config = fusion.config if fusion is not None else None
    conf = ConfusionMatrix(len(dataset.classes), IGNORE)
    start = time.perf_counter()
    evaluated = 0
    for sample in tqdm(samples, desc=f"eval {dataset.name}", disable=not progress, dynamic_ncols=True):
        image, gt = read_rgb(sample.image_path), read_mask(sample.mask_path, len(dataset.classes))
        if gt.shape != image.shape[:2]:
            raise InputError(f"mask and image differ in size for {sample.id}")
        regions = segmenter.regions(image)
        if grounding:
            present = [int(c) for c in np.unique(gt) if c != IGNORE and c < len(dataset.classes)]
            if not present:
                continue
            keep = torch.isin(owner, torch.tensor(present))
            remap = {c: i for i, c in enumerate(present)}
            local_owner = torch.tensor([remap[int(c)] for c in owner[keep]])
            label, _ = semantic_segmentation(
                regions,
                prompts[keep],
                local_owner,
                len(present),
                gt.shape,
                class_cover=None if cover is None else cover[present],
                fusion=fusion_config,
            )
            pred = np.asarray(present)[label.numpy()]
        else:
            label, _ = semantic_segmentation(
                regions, prompts, owner, len(dataset.classes), gt.shape, class_cover=cover, fusion=fusion_config
            )
            pred = label.numpy()
        conf.update(pred, gt)
        if collector is not None:
            collector.add(sample.id, sample.image_path, pred, gt)
        evaluated += 1
    seconds = time.perf_counter() - start
    if collector is not None:
        collector.confusion = conf.matrix.copy()
    scores = conf.scores()
    per_class = {
        name: (None if math.isnan(v) else round(float(v) * 100, 2))
        for name, v in zip(dataset.classes, scores["iou"], strict=False)
    }
    per_class_acc = {
        name: (None if math.isnan(v) else round(float(v) * 100, 2))
        for name, v in zip(dataset.classes, scores["acc"], strict=False)
    }
    seen = seen_classes(dataset.classes, segmenter.trained_names)
    return {
        "dataset": dataset.name,
        "metric": "grounding mIoU" if grounding else "mIoU",
        "mIoU": _finite(scores["mIoU"]),
        # seen = the dataset's classes whose name is on the model card (trained_classes.json)
        "seen_mIoU": _subset_mean(scores["iou"], seen),
        "unseen_mIoU": _subset_mean(scores["iou"], [not s for s in seen]),
        "seen_classes": [c for c, s in zip(dataset.classes, seen, strict=True) if s],
        "mAcc": _finite(scores["mAcc"]),
        "pixel_acc": _finite(scores["pixel_acc"]),
        "per_class_iou": per_class,
        "per_class_acc": per_class_acc,
        "averaging": "detectron2: mean over classes with ground-truth pixels in the evaluated images",
        "split": split if split == "all" else f"{split} (val_fraction={val_fraction}, seed={split_seed})",
        "images": evaluated,
        "seconds": round(seconds, 2),
        "model": segmenter.model_id,
        "prompts": {
            "names": [", ".join(names) for names in vocab.synonyms],
            "templates": list(vocab.templates),
            "template_mode": vocab.template_mode,
        },
    }


def seen_classes(classes: list[str], trained_names: list[str]) -> list[bool]:
    """Per dataset class: is its name one the model trained on (case-insensitive)?"""
    trained = {n.strip().casefold() for n in trained_names}
    return [c.strip().casefold() in trained for c in classes]


def _subset_mean(iou: np.ndarray, keep: list[bool]) -> float | None:
    """Mean IoU (%) over the kept classes that had ground-truth pixels; None when there are none."""
    values = [float(v) for v, k in zip(iou, keep, strict=True) if k and not math.isnan(v)]
    return round(100 * sum(values) / len(values), 2) if values else None


def _finite(value: float) -> float | None:
    """JSON has no NaN: a metric with nothing to average is null."""
    return None if math.isnan(value) else round(value, 2)


def format_table(report: dict) -> str:
    lines = [f"{'class':<28} {'IoU':>7} {'Acc':>7}"]
    for name, iou in report["per_class_iou"].items():
        acc = report["per_class_acc"][name]
        fmt = lambda v: "    n/a" if v is None else f"{v:7.2f}"  # noqa: E731
        lines.append(f"{name[:28]:<28} {fmt(iou)} {fmt(acc)}")
    show = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines.append(
        f"{report['metric']}: {show(report['mIoU'])}  mAcc: {show(report['mAcc'])}  pixel acc: "
        f"{show(report['pixel_acc'])}  ({report['images']} images, {report['seconds']:.1f} s)"
    )
    if "seen_mIoU" in report:
        lines.append(
            f"seen classes (trained names): {show(report['seen_mIoU'])}  unseen: {show(report['unseen_mIoU'])}  "
            f"({len(report['seen_classes'])} of {len(report['per_class_iou'])} classes seen)"
        )
    return "\n".join(lines)

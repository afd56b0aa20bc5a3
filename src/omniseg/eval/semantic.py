"""`omniseg eval DATASET_DIR`: mIoU and grounding mIoU on the uniform dataset format.

mIoU: every image is segmented with the dataset's full vocabulary (classes.json).
Grounding mIoU (OpenSeg sec. 4.3): each image's vocabulary is only the classes in its ground
truth; predictions are mapped back to dataset ids and accumulate in one confusion matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from omniseg.data.dataset import open_dataset
from omniseg.data.uniform import IGNORE, Sample, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.eval.evaluator import evaluate_images, split_label
from omniseg.eval.metrics import ConfusionMatrix
from omniseg.recognition.fusion import FusionConfig
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.tasks.semantic import semantic_segmentation
from omniseg.vocab import Vocabulary

if TYPE_CHECKING:
    from omniseg.eval.report import ReportCollector


class SemanticEvaluator:
    """mIoU (or grounding mIoU) of region outputs against class-id masks, in one confusion matrix.

    prompts / owner: the embedded prompts of the dataset's classes and each prompt's class.
    grounding: each image's vocabulary is only the classes in its ground truth.
    collector: also sees every (prediction, ground truth) and the final confusion matrix (--report).
    """

    def __init__(
        self,
        classes: list[str],
        prompts: torch.Tensor,
        owner: torch.Tensor,
        grounding: bool = False,
        collector: ReportCollector | None = None,
        cover: torch.Tensor | None = None,
        fusion: FusionConfig | None = None,
        trained_names: Sequence[str] = (),
    ) -> None:
        self.classes, self.prompts, self.owner = classes, prompts, owner
        self.grounding, self.collector = grounding, collector
        # the frozen recognizer's fusion (Segmenter.fusion): each class's cover and the fusion settings
        self.cover, self.fusion = cover, fusion
        self.seen = seen_classes(classes, list(trained_names))  # on the model card (trained_classes.json)
        self.reset()

    def reset(self) -> None:
        self.conf = ConfusionMatrix(len(self.classes), IGNORE)
        self.evaluated = 0

    def process(self, sample: Sample, regions: Regions | np.ndarray) -> None:
        """``regions``: the model's Regions, or (a concept source) its prediction in dataset class ids."""
        gt = read_mask(sample.truth_path, len(self.classes))
        size = regions.shape if isinstance(regions, np.ndarray) else tuple(regions.image_size)
        if gt.shape != size:
            raise InputError(f"mask and image differ in size for {sample.id}")
        if isinstance(regions, np.ndarray):
            pred = regions
        elif self.grounding:
            present = [int(c) for c in np.unique(gt) if c != IGNORE and c < len(self.classes)]
            if not present:
                return
            keep = torch.isin(self.owner, torch.tensor(present))
            remap = {c: i for i, c in enumerate(present)}
            local_owner = torch.tensor([remap[int(c)] for c in self.owner[keep]])
            label, _ = semantic_segmentation(
                regions,
                self.prompts[keep],
                local_owner,
                len(present),
                gt.shape,
                class_cover=None if self.cover is None else self.cover[present],
                fusion=self.fusion,
            )
            pred = np.asarray(present)[label.numpy()]
        else:
            label, _ = semantic_segmentation(
                regions,
                self.prompts,
                self.owner,
                len(self.classes),
                gt.shape,
                class_cover=self.cover,
                fusion=self.fusion,
            )
            pred = label.numpy()
        self.conf.update(pred, gt)
        if self.collector is not None:
            self.collector.add(sample.id, sample.image_path, pred, gt)
        self.evaluated += 1

    def evaluate(self) -> dict:
        if self.collector is not None:
            self.collector.confusion = self.conf.matrix.copy()
        scores = self.conf.scores()
        return {
            "metric": "grounding mIoU" if self.grounding else "mIoU",
            "mIoU": _finite(scores["mIoU"]),
            # seen = the dataset's classes whose name is on the model card (trained_classes.json)
            "seen_mIoU": _subset_mean(scores["iou"], self.seen),
            "unseen_mIoU": _subset_mean(scores["iou"], [not s for s in self.seen]),
            "seen_classes": [c for c, s in zip(self.classes, self.seen, strict=True) if s],
            "mAcc": _finite(scores["mAcc"]),
            "pixel_acc": _finite(scores["pixel_acc"]),
            "per_class_iou": _percent_per_class(self.classes, scores["iou"]),
            "per_class_acc": _percent_per_class(self.classes, scores["acc"]),
            "averaging": "detectron2: mean over classes with ground-truth pixels in the evaluated images",
            "images": self.evaluated,
        }


def evaluate_semantic(
    segmenter: Segmenter,
    dataset_dir: str | Path | UniformDataset,
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
    dataset = open_dataset(dataset_dir)
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    if vocabulary is not None and len(vocabulary) != len(dataset.classes):
        raise InputError(
            f"the vocabulary has {len(vocabulary)} classes but {dataset.name} has {len(dataset.classes)}: "
            "its class i must be the dataset's class i"
        )
    vocab = segmenter.vocabulary(vocabulary or Vocabulary.from_names(dataset.classes))
    fusion = segmenter.fusion
    predict: Callable[[Sample], np.ndarray] | None = None  # None: the segmenter's Regions of each image
    if segmenter.concept_source is not None:  # SAM 3: the door's own semantic answer, in dataset ids
        predict = concept_prediction(segmenter, vocab, grounding, len(dataset.classes))
        prompts, owner = torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)
    else:
        assert vocab.embeddings is not None and vocab.prompt_to_class is not None
        prompts, owner = torch.from_numpy(vocab.embeddings), torch.from_numpy(vocab.prompt_to_class)
    evaluator = SemanticEvaluator(
        dataset.classes,
        prompts,
        owner,
        grounding,
        collector,
        cover=fusion.class_cover(vocab) if fusion is not None else None,
        fusion=fusion.config if fusion is not None else None,
        trained_names=segmenter.trained_names,
    )
    split_name = split_label(split, val_fraction, split_seed)
    return {
        **evaluate_images(
            segmenter, dataset, samples, evaluator, f"eval {dataset.name}", split_name, progress, predict
        ),
        "prompts": {
            "names": [", ".join(names) for names in vocab.synonyms],
            "templates": list(vocab.templates),
            "template_mode": vocab.template_mode,
        },
    }


def concept_prediction(
    segmenter: Segmenter, vocab: Vocabulary, grounding: bool, num_classes: int
) -> Callable[[Sample], np.ndarray]:
    """A concept source's semantic map of a sample in dataset class ids (-1 = unlabeled). Grounding:
    the image's vocabulary is the classes of its ground truth (their synonyms as given in ``vocab``)."""

    def predict(sample: Sample) -> np.ndarray:
        image = read_rgb(sample.image_path)
        if not grounding:
            return segmenter.segment(image, classes=vocab).class_map()
        gt = read_mask(sample.truth_path, num_classes)
        present = [int(c) for c in np.unique(gt) if c != IGNORE and c < num_classes]
        if not present:
            return np.full(gt.shape, -1, np.int64)
        local = Vocabulary([vocab.synonyms[c] for c in present], templates=vocab.templates)
        label = segmenter.segment(image, classes=local).class_map()
        return np.where(label < 0, -1, np.asarray(present)[np.maximum(label, 0)])

    return predict


def _percent_per_class(classes: list[str], values: np.ndarray) -> dict[str, float | None]:
    return {
        name: (None if math.isnan(v) else round(float(v) * 100, 2)) for name, v in zip(classes, values, strict=False)
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

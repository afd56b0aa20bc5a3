"""Panoptic quality (Kirillov et al. 2019) with panopticapi's counting rules, and `omniseg eval --task panoptic`.

Per image, with ground-truth and predicted id maps (0 = void) and their segments:
- a predicted and a ground-truth segment of the same category match when IoU > 0.5 (which makes
  matches unique); the union leaves out the predicted segment's pixels on void ground truth;
- crowd ground-truth segments are never matched and never false negatives;
- an unmatched prediction is a false positive unless more than half of its area lies on void or
  on the crowd region of its category;
- an unmatched, non-crowd ground-truth segment is a false negative.
Per category PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2);
a category enters the averages only if TP + FP + FN > 0 (all / things / stuff averaged alike).
Followed literally, quirk included: when an image has several crowd segments of one category,
panopticapi excuses false positives only by the last of them (in segment order). COCO and
omniseg.data.segments have at most one crowd segment per category, where this makes no difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omniseg.concepts import Instances
from omniseg.data.dataset import Dataset, open_dataset
from omniseg.data.segments import ClassRoles, class_roles, sample_truth
from omniseg.data.uniform import Sample, UniformDataset
from omniseg.eval.categories import ObjectQuestion, object_question, sample_output
from omniseg.eval.evaluator import evaluate_images, split_label
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.tasks.concepts import concept_panoptic
from omniseg.tasks.panoptic import DEFAULT_PANOPTIC_MIN_SCORE, Panoptic, panoptic_segmentation

OFFSET = 1 << 32  # > any segment id: gt * OFFSET + pred is a unique pair key
VOID = 0


@dataclass(frozen=True)
class Segment:
    """What PQ needs of a segment: its id in the map, category and crowd flag."""

    id: int
    category_id: int
    iscrowd: bool = False


@dataclass
class CategoryCounts:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


class PanopticQuality:
    """Accumulates TP/FP/FN and matched IoU per category over images; ``summary()`` averages."""

    def __init__(self) -> None:
        self.counts: dict[int, CategoryCounts] = {}

    def _cat(self, category: int) -> CategoryCounts:
        return self.counts.setdefault(category, CategoryCounts())

    def update(
        self, gt_map: np.ndarray, gt_segments: Iterable[Segment], pred_map: np.ndarray, pred_segments: Iterable[Segment]
    ) -> None:
        if gt_map.shape != pred_map.shape:
            raise ValueError(f"ground truth {gt_map.shape} and prediction {pred_map.shape} differ in size")
        gt_segs = {s.id: s for s in gt_segments}
        pred_segs = {s.id: s for s in pred_segments}
        gt_flat = gt_map.astype(np.int64).ravel()
        pred_flat = pred_map.astype(np.int64).ravel()
        pred_area = dict(zip(*(v.tolist() for v in np.unique(pred_flat, return_counts=True)), strict=True))
        gt_area = dict(zip(*(v.tolist() for v in np.unique(gt_flat, return_counts=True)), strict=True))
        stray = set(pred_area) - set(pred_segs) - {VOID}
        if stray or set(pred_segs) - set(pred_area):
            raise ValueError("predicted id map and segments disagree (every segment must cover >= 1 pixel)")
        keys, inter = np.unique(gt_flat * OFFSET + pred_flat, return_counts=True)
        overlap = {(int(k // OFFSET), int(k % OFFSET)): int(n) for k, n in zip(keys, inter, strict=True)}

        matched_gt, matched_pred = set(), set()
        for (g, p), n in overlap.items():
            gs, ps = gt_segs.get(g), pred_segs.get(p)
            if gs is None or ps is None or gs.iscrowd or gs.category_id != ps.category_id:
                continue
            union = pred_area[p] + gt_area[g] - n - overlap.get((VOID, p), 0)
            iou = n / union
            if iou > 0.5:
                counts = self._cat(gs.category_id)
                counts.tp += 1
                counts.iou += iou
                matched_gt.add(g)
                matched_pred.add(p)

        crowd_of: dict[int, int] = {}  # category -> its (last) crowd segment
        for g, gs in gt_segs.items():
            if gs.iscrowd:
                crowd_of[gs.category_id] = g
            elif g not in matched_gt:
                self._cat(gs.category_id).fn += 1
        for p, ps in pred_segs.items():
            if p in matched_pred:
                continue
            crowd = crowd_of.get(ps.category_id)
            ignored = overlap.get((VOID, p), 0) + (overlap.get((crowd, p), 0) if crowd is not None else 0)
            if ignored / pred_area[p] > 0.5:
                continue
            self._cat(ps.category_id).fp += 1

    def average(self, categories: dict[int, bool], isthing: bool | None = None) -> dict:
        """Mean PQ/SQ/RQ (fractions) over the categories with TP + FP + FN > 0; isthing filters."""
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for category, cat_isthing in categories.items():
            if isthing is not None and cat_isthing != isthing:
                continue
            c = self.counts.get(category, CategoryCounts())
            if c.tp + c.fp + c.fn == 0:
                continue
            denominator = c.tp + 0.5 * c.fp + 0.5 * c.fn
            per_class[category] = {
                "pq": c.iou / denominator,
                "sq": c.iou / c.tp if c.tp else 0.0,
                "rq": c.tp / denominator,
            }
            pq += per_class[category]["pq"]
            sq += per_class[category]["sq"]
            rq += per_class[category]["rq"]
            n += 1
        if n == 0:
            return {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0, "per_class": per_class}
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n, "per_class": per_class}


def _pct(value: float) -> float | None:
    return None if math.isnan(value) else round(value * 100, 2)


class PanopticEvaluator:
    """PQ/SQ/RQ of panoptic_segmentation on region outputs, or of a concept source's instances
    painted by tasks.concepts (ground truth: omniseg.data.segments)."""

    def __init__(self, dataset: Dataset, roles: ClassRoles, question: ObjectQuestion) -> None:
        self.dataset, self.roles, self.question = dataset, roles, question
        self.categories = {k: roles.isthing[k] for k in range(len(dataset.classes)) if not roles.void[k]}
        self.reset()

    def reset(self) -> None:
        self.pq = PanopticQuality()
        self.images = 0

    def process(self, sample: Sample, regions: Regions | Instances) -> None:
        """``regions``: the model's Regions, or a concept source's instances above its threshold."""
        gt_map, gt_segs = sample_truth(self.dataset, sample, self.roles, regions.image_size)
        pan = self._panoptic(regions, gt_map.shape)
        pred_segs = [Segment(s.id, self.question.vocab.class_ids[s.label]) for s in pan.segments]
        gt_list = [Segment(s.id, s.category_id, s.iscrowd) for s in gt_segs]
        self.pq.update(gt_map, gt_list, pan.id_map.numpy(), pred_segs)
        self.images += 1

    def _panoptic(self, regions: Regions | Instances, size: tuple[int, ...]) -> Panoptic:
        if isinstance(regions, Instances):  # the source applied its threshold: things best first, stuff merged
            return concept_panoptic(regions, self.question.vocab.stuff)
        return self.question.ask(panoptic_segmentation, regions, size)

    def evaluate(self) -> dict:
        classes, roles = self.dataset.classes, self.roles
        groups = {
            name: self.pq.average(self.categories, flag)
            for name, flag in (("all", None), ("things", True), ("stuff", False))
        }
        return {
            "metric": "PQ",
            "PQ": _pct(groups["all"]["pq"]),
            "SQ": _pct(groups["all"]["sq"]),
            "RQ": _pct(groups["all"]["rq"]),
            **{
                name: {"PQ": _pct(g["pq"]), "SQ": _pct(g["sq"]), "RQ": _pct(g["rq"]), "n": g["n"]}
                for name, g in groups.items()
            },
            "per_class": {
                classes[k]: {m: round(v * 100, 2) for m, v in r.items()} for k, r in groups["all"]["per_class"].items()
            },
            "rules": "panopticapi: match at IoU > 0.5, void removed from the union, predictions mostly on "
            "void/crowd not counted; categories without TP/FP/FN left out of the means",
            "ground_truth": {
                "things": [c for c, t in zip(classes, roles.isthing, strict=True) if t],
                "stuff": [c for c, s in zip(classes, roles.stuff, strict=True) if s],
                "void": [c for c, v in zip(classes, roles.void, strict=True) if v] + ["mask value 255"],
            },
            "min_score": self.question.min_score,
            "images": self.images,
        }


def evaluate_panoptic(
    segmenter: Segmenter,
    dataset_dir: str | Path | UniformDataset,
    stuff: tuple[str, ...] = (),
    limit: int | None = None,
    split: str = "all",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    min_score: float | None = None,
    progress: bool = True,
) -> dict:
    """PQ/SQ/RQ of the segmenter on a uniform dataset (ground truth: omniseg.data.segments).

    The vocabulary is the evaluated categories, void classes left out (omniseg.eval.categories).
    min_score: what ``segment --task panoptic`` keeps by default when None: a region's class
    probability x objectness >= DEFAULT_PANOPTIC_MIN_SCORE, or a concept source's detection score
    above its own default (SAM 3: 0.3).
    """
    dataset = open_dataset(dataset_dir)
    roles = class_roles(dataset, stuff)
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    concept_source = segmenter.concept_source
    if min_score is None:
        min_score = DEFAULT_PANOPTIC_MIN_SCORE if concept_source is None else concept_source.default_threshold
    question = object_question(segmenter, dataset, roles, min_score)
    split_name = split_label(split, val_fraction, split_seed)
    return evaluate_images(
        segmenter,
        dataset,
        samples,
        PanopticEvaluator(dataset, roles, question),
        f"panoptic {dataset.name}",
        split_name,
        progress,
        predict=sample_output(segmenter, question.vocab, min_score),
    )


def format_table(report: dict) -> str:
    """panopticapi's summary table, in percent."""
    show = lambda v: "  n/a" if v is None else f"{v:5.1f}"  # noqa: E731
    lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>5s}", "-" * 38]
    for name in ("all", "things", "stuff"):
        g = report[name]
        lines.append(f"{name.capitalize():10s}| {show(g['PQ'])}  {show(g['SQ'])}  {show(g['RQ'])} {g['n']:5d}")
    lines.append(f"{report['dataset']}: {report['images']} images, {report['seconds']:.1f} s")
    return "\n".join(lines)

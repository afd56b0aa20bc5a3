"""Mask AP (COCO protocol, pycocotools COCOeval with iouType="segm") and `omniseg eval --task instance`.

The metric is pycocotools itself: this module only turns the uniform dataset's instance maps
into a COCO ground-truth dict and the predictions into COCO results, so the numbers are COCO's
by construction (AP = mean over IoU 0.50:0.95 and over categories, 101-point interpolation,
up to 100 detections per image, crowd regions matched but neither TP nor FN).
A concept source (SAM 3) gives its instances itself: they go in as COCO results as the source gives
them (overlapping masks allowed, stuff classes left out), every one above CONCEPT_AP_THRESHOLD.
Ground truth is at the dataset's resolution (<= 512 px for the shared COCO sets), so COCO's
small/medium/large area ranges do not mean what they mean on full-size COCO; only AP, AP50 and
AP75 are reported.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from omniseg import formats
from omniseg.concepts import Instances
from omniseg.data.dataset import Dataset, open_dataset
from omniseg.data.segments import ClassRoles, GTSegment, class_roles, sample_truth
from omniseg.data.uniform import Sample, UniformDataset
from omniseg.errors import InputError
from omniseg.eval.categories import ObjectQuestion, object_question, sample_output
from omniseg.eval.evaluator import evaluate_images, split_label
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.tasks.concepts import concept_instances
from omniseg.tasks.instance import Instance, instance_segmentation

# A concept source's detection score an instance must exceed to be a COCO result. COCO AP wants the
# low-scoring detections too (they add recall at the tail of the precision-recall curve), so this is
# detectron2's test-time floor (0.05), not the score for showing masks (SAM 3's 0.3); kept above 0
# because every query of every name above 0 would be thousands of image-size masks per image.
CONCEPT_AP_THRESHOLD = 0.05


def coco_ground_truth(images: Sequence[tuple[int, np.ndarray, list[GTSegment]]], thing_classes: dict[int, str]) -> dict:
    """COCO instances dict from (image id, panoptic-style GT id map, its GTSegments) per image.

    images: (image_id, id_map [H, W], segments) with segments as omniseg.data.segments.GTSegment;
    only segments of ``thing_classes`` ({category id: name}) become annotations.
    """
    out_images: list[dict] = []
    annotations: list[dict] = []
    for image_id, id_map, segments in images:
        out_images.append({"id": image_id, "height": int(id_map.shape[0]), "width": int(id_map.shape[1])})
        for s in segments:
            if s.category_id not in thing_classes:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": s.category_id,
                    "segmentation": formats.encode_rle(id_map == s.id),
                    "area": s.area,
                    "bbox": list(s.bbox),
                    "iscrowd": int(s.iscrowd),
                }
            )
    categories = [{"id": k, "name": n} for k, n in sorted(thing_classes.items())]
    return {"images": out_images, "annotations": annotations, "categories": categories}


def mask_ap(ground_truth: dict, results: list[dict]) -> dict[str, float]:
    """AP, AP50, AP75 (fractions) of COCO results against a COCO ground-truth dict.

    With no detection at all, AP is 0 for any ground truth (COCOeval cannot load an empty result
    list); with no ground truth it is NaN.
    """
    if not ground_truth["annotations"]:
        return {"AP": math.nan, "AP50": math.nan, "AP75": math.nan}
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2])}


def _pct(value: float) -> float | None:
    return None if math.isnan(value) or value < 0 else round(value * 100, 2)


class InstanceEvaluator:
    """Mask AP (pycocotools) of instance_segmentation on region outputs (every region scored, no
    score threshold: COCO AP wants them all), or of a concept source's instances (tasks.concepts)."""

    def __init__(self, dataset: Dataset, roles: ClassRoles, question: ObjectQuestion) -> None:
        self.dataset, self.roles, self.question = dataset, roles, question
        self.things = {k: c for k, c in enumerate(dataset.classes) if roles.isthing[k]}
        self.reset()

    def reset(self) -> None:
        self.gt_images: list[tuple[int, np.ndarray, list[GTSegment]]] = []
        self.results: list[dict] = []

    def process(self, sample: Sample, regions: Regions | Instances) -> None:
        """``regions``: the model's Regions, or a concept source's instances (labels: vocabulary indices)."""
        image_id = len(self.gt_images) + 1
        gt_map, gt_segs = sample_truth(self.dataset, sample, self.roles, regions.image_size)
        self.gt_images.append((image_id, gt_map, gt_segs))
        instances = self._instances(regions, gt_map.shape)
        self.results += formats.instance_records(
            [i.mask.numpy() for i in instances],
            [i.label for i in instances],
            [i.score for i in instances],
            image_id,
            self.question.vocab.class_ids,
        )

    def _instances(self, regions: Regions | Instances, size: tuple[int, ...]) -> list[Instance]:
        if isinstance(regions, Instances):  # overlaps kept, as COCO results allow
            return concept_instances(regions, self.question.vocab.stuff)
        return self.question.ask(instance_segmentation, regions, size)

    def evaluate(self) -> dict:
        ap = mask_ap(coco_ground_truth(self.gt_images, self.things), self.results)
        return {
            "metric": "mask AP",
            **{k: _pct(v) for k, v in ap.items()},
            "protocol": "pycocotools COCOeval iouType=segm (AP@[.50:.95], AP50, AP75; maxDets 100)",
            "ground_truth": {
                "things": list(self.things.values()),
                "crowd": "thing pixels without an instance id",
                "note": "visible instance masks at the dataset's resolution",
            },
            "detections": len(self.results),
            "images": len(self.gt_images),
        }


def evaluate_instances(
    segmenter: Segmenter,
    dataset_dir: str | Path | UniformDataset,
    stuff: tuple[str, ...] = (),
    limit: int | None = None,
    split: str = "all",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    progress: bool = True,
) -> dict:
    """Mask AP of the segmenter's instances (every region scored, no score threshold; a concept
    source's instances above CONCEPT_AP_THRESHOLD) on a dataset with instances/ (ground truth:
    omniseg.data.segments; vocabulary: omniseg.eval.categories)."""
    dataset = open_dataset(dataset_dir)
    roles = class_roles(dataset, stuff)
    if not roles.has_instances or not any(roles.isthing):
        raise InputError(f"{dataset.name} has no instance annotations (instances/): mask AP needs thing classes")
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    # every region scored, no score threshold (COCO AP wants them all)
    question = object_question(segmenter, dataset, roles, min_score=0.0)
    split_name = split_label(split, val_fraction, split_seed)
    report = evaluate_images(
        segmenter,
        dataset,
        samples,
        InstanceEvaluator(dataset, roles, question),
        f"instances {dataset.name}",
        split_name,
        progress,
        predict=sample_output(segmenter, question.vocab, CONCEPT_AP_THRESHOLD),
    )
    if segmenter.concept_source is not None:
        report["score_threshold"] = CONCEPT_AP_THRESHOLD
    return report


def format_table(report: dict) -> str:
    show = lambda v: "  n/a" if v is None else f"{v:5.1f}"  # noqa: E731
    return (
        f"mask AP: {show(report['AP'])}  AP50: {show(report['AP50'])}  AP75: {show(report['AP75'])}  "
        f"({report['dataset']}: {report['images']} images, {report['detections']} detections, "
        f"{report['seconds']:.1f} s)"
    )

"""`omniseg eval --task interactive`: NoC@85 / NoC@90 with simulated clicks.

Objects: on the uniform layout, every class present in an image (its whole mask, ignore pixels
excluded) covering at least ``min_fraction`` of the labelled pixels. Clicks follow the usual
protocol (RITM, SimpleClick): the first click is the interior point farthest from the object's
boundary; each next click goes to the point farthest from the boundary of the largest error
region, positive if the model missed it, negative if it was wrongly included. NoC@t is the
number of clicks until IoU >= t, counted as ``max_clicks`` when never reached; lower is better.

A source that answers prompts only (SAM 2, SAM 3's tracker, EdgeTAM: omniseg.source.PromptableSource
with no Regions of its own) is asked again after every click with all the clicks so far, as
``omniseg click`` asks it; its answers are read by the same click task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from omniseg.data.dataset import open_dataset
from omniseg.data.uniform import IGNORE, Sample, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.eval.evaluator import evaluate_images, split_label
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.source import PromptableSource, RegionSource
from omniseg.tasks.common import image_regions
from omniseg.tasks.interactive import Click, interactive_segment

THRESHOLDS = (0.85, 0.90)


def next_click(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> Click | None:
    """The click at the centre of the largest error (None when there is no error left)."""
    fn = gt & ~pred & valid
    fp = pred & ~gt & valid
    best: tuple[float, int, int, bool] | None = None
    for region, positive in ((fn, True), (fp, False)):
        if not region.any():
            continue
        # distance to the nearest non-error pixel; the image border counts as a boundary
        dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = (int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape))
        if best is None or dist[y, x] > best[0]:
            best = (float(dist[y, x]), y, x, positive)
    if best is None:
        return None
    _, y, x, positive = best
    return Click(float(x), float(y), positive)


Answers = Regions | Callable[[list[Click]], Regions]  # the image's Regions, or the model's answer to the clicks


def clicks_to_iou(regions: Answers, gt: np.ndarray, valid: np.ndarray, max_clicks: int) -> list[float]:
    """IoU after each of up to ``max_clicks`` simulated clicks (stops early at IoU 1)."""
    answer = regions if callable(regions) else (lambda clicks: regions)
    clicks: list[Click] = []
    pred = np.zeros_like(gt)
    ious = []
    for _ in range(max_clicks):
        click = next_click(pred, gt, valid)
        if click is None:
            break
        clicks.append(click)
        if not any(c.positive for c in clicks):  # a negative first click cannot happen: pred starts empty
            break
        pred = interactive_segment(answer(clicks), clicks, out_size=gt.shape).mask
        inter = (pred & gt & valid).sum()
        union = ((pred | gt) & valid).sum()
        ious.append(float(inter / union) if union else 1.0)
        if ious[-1] >= 1.0:
            break
    return ious


def noc(ious: list[float], threshold: float, max_clicks: int) -> int:
    for n, iou in enumerate(ious, start=1):
        if iou >= threshold:
            return n
    return max_clicks


@dataclass(frozen=True)
class ImageObjects:
    """One evaluated image: its sample, class mask, labelled pixels and the classes that are objects."""

    sample: Sample
    mask: np.ndarray
    valid: np.ndarray
    objects: list[int]


def image_objects(samples: Sequence[Sample], num_classes: int, min_fraction: float) -> Iterator[ImageObjects]:
    """The samples with at least one object (a class covering ``min_fraction`` of the labelled pixels)."""
    for sample in samples:
        assert sample.mask_path is not None
        mask = read_mask(sample.mask_path, num_classes)
        valid = mask != IGNORE
        ids, counts = np.unique(mask[valid], return_counts=True)
        objects = [int(i) for i, n in zip(ids, counts, strict=True) if n >= min_fraction * max(valid.sum(), 1)]
        if objects:
            yield ImageObjects(sample, mask, valid, objects)


class InteractiveEvaluator:
    """NoC@85, NoC@90 and the mean IoU after 1, 3, 5 simulated clicks over the objects of the images."""

    def __init__(self, max_clicks: int = 20, nothing_found: str = "no object to click on") -> None:
        self.max_clicks = max_clicks
        self.nothing_found = nothing_found  # the InputError when no image had an object
        self.reset()

    def reset(self) -> None:
        self.curves: list[list[float]] = []

    def process(self, item: ImageObjects, regions: Answers) -> None:
        for c in item.objects:
            self.curves.append(clicks_to_iou(regions, (item.mask == c) & item.valid, item.valid, self.max_clicks))

    def evaluate(self) -> dict:
        curves, max_clicks = self.curves, self.max_clicks
        if not curves:
            raise InputError(self.nothing_found)

        def iou_at(n: int) -> float:
            return float(np.mean([c[min(n, len(c)) - 1] if c else 0.0 for c in curves])) * 100

        report: dict[str, Any] = {"metric": "NoC"}
        for t in THRESHOLDS:
            counts_t = [noc(c, t, max_clicks) for c in curves]
            report[f"NoC@{round(t * 100)}"] = round(float(np.mean(counts_t)), 2)
            report[f"failed@{round(t * 100)}"] = round(float(np.mean([n >= max_clicks for n in counts_t])) * 100, 2)
        report.update(
            {
                "mIoU@1": round(iou_at(1), 2),
                "mIoU@3": round(iou_at(3), 2),
                "mIoU@5": round(iou_at(5), 2),
                "objects": len(curves),
                "max_clicks": max_clicks,
                "protocol": "first click at the object's centre, then at the centre of the largest error region "
                "(positive on misses, negative on false alarms); objects = classes present per image",
            }
        )
        return report


def evaluate_interactive(
    segmenter: Segmenter,
    dataset_dir: str | Path | UniformDataset,
    split: str = "val",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    limit: int | None = None,
    max_clicks: int = 20,
    min_fraction: float = 0.01,
    progress: bool = True,
) -> dict:
    """NoC@85, NoC@90 and the mean IoU after 1, 3, 5 clicks over the objects of the split."""
    dataset = open_dataset(dataset_dir)
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    source = getattr(segmenter, "source", None)  # duck-typed segmenters (tests) have only regions()

    def answers(item: ImageObjects) -> Answers:
        if isinstance(source, PromptableSource) and not isinstance(source, RegionSource):
            array = read_rgb(item.sample.image_path)
            return lambda clicks: segmenter.prompt_regions(array, clicks)
        return image_regions(segmenter, read_rgb(item.sample.image_path))[1]

    return evaluate_images(
        segmenter,
        dataset,
        image_objects(samples, len(dataset.classes), min_fraction),
        InteractiveEvaluator(max_clicks, f"no object covers {min_fraction:.0%} of an image in {dataset_dir}"),
        f"interactive {dataset.name}",
        split_label(split, val_fraction, split_seed),
        progress,
        predict=answers,
    )


def format_interactive(report: dict) -> str:
    return (
        f"{report['dataset']}: NoC@85 {report['NoC@85']:.2f}  NoC@90 {report['NoC@90']:.2f}  "
        f"(failed {report['failed@85']:.1f}% / {report['failed@90']:.1f}%)  mIoU@1 {report['mIoU@1']:.2f}  "
        f"mIoU@5 {report['mIoU@5']:.2f}  ({report['objects']} objects, {report['seconds']:.1f} s)"
    )

"""Panoptic segmentation: every pixel gets a class, and thing pixels also an object identity.

Things are the instances of tasks/instance.py (painted first, best score first, so objects are
never swallowed by the background around them). Stuff is what is left: each remaining pixel goes
to the best-scoring stuff region whose mask claims it, and all stuff regions of one class are
merged into one segment (stuff has no identity: two "sky" regions are one sky). Pixels that no
kept region claims are void (id 0), as in the COCO panoptic format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from omniseg.regions import Regions
from omniseg.tasks.instance import (
    DEFAULT_MIN_AREA,
    DEFAULT_OVERLAP_KEEP,
    DEFAULT_TEMPERATURE,
    RegionClasses,
    classify_regions,
    instances_from_classes,
    mask_bbox,
    paint_in_score_order,
)

# A panoptic map has no score per pixel, so every kept segment is a claim: weak regions would be
# false positives (PQ counts each one). Instance AP, by contrast, ranks and wants all of them.
DEFAULT_PANOPTIC_MIN_SCORE = 0.2
VOID = 0


@dataclass
class PanopticSegment:
    id: int  # value in the id map, >= 1
    label: int  # class index in the vocabulary
    isthing: bool
    area: int
    bbox: tuple[int, int, int, int]  # COCO [x, y, w, h]
    score: float  # things: the instance score; stuff: the best score of its merged regions


@dataclass
class Panoptic:
    id_map: torch.Tensor  # int32 [H, W], 0 = void, else a segment id
    segments: list[PanopticSegment]


def panoptic_segmentation(
    regions: Regions,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    num_classes: int,
    stuff: Sequence[bool],
    temperature: float = DEFAULT_TEMPERATURE,
    min_score: float = DEFAULT_PANOPTIC_MIN_SCORE,
    overlap_keep: float = DEFAULT_OVERLAP_KEEP,
    min_area: int = DEFAULT_MIN_AREA,
    out_size: tuple[int, int] | None = None,
    reference: torch.Tensor | None = None,
) -> Panoptic:
    """Id map + segments: things ids 1..T in score order, then one stuff segment per class.

    stuff: per class, True = stuff. A stuff segment smaller than ``min_area`` becomes void.
    """
    if len(stuff) != num_classes:
        raise ValueError(f"stuff has {len(stuff)} flags for {num_classes} classes")
    h, w = out_size or regions.image_size
    size = (int(h), int(w))
    classes = classify_regions(regions, prompt_embeddings, prompt_to_class, num_classes, temperature, reference)
    return panoptic_from_classes(regions.masks, classes, stuff, size, min_score, overlap_keep, min_area)


def panoptic_from_classes(
    masks: torch.Tensor,
    classes: RegionClasses,
    stuff: Sequence[bool],
    size: tuple[int, int],
    min_score: float = DEFAULT_PANOPTIC_MIN_SCORE,
    overlap_keep: float = DEFAULT_OVERLAP_KEEP,
    min_area: int = DEFAULT_MIN_AREA,
) -> Panoptic:
    """The panoptic map of masks [N, h, w] whose classes and scores are known (from the regions'
    embeddings above, or given by a concept source: tasks/concepts.py)."""
    taken = torch.zeros(size, dtype=torch.bool)
    things = instances_from_classes(masks, classes, stuff, size, taken, min_score, overlap_keep, min_area)
    id_map = torch.zeros(size, dtype=torch.int32)
    segments: list[PanopticSegment] = []
    for inst in things:
        sid = len(segments) + 1
        id_map[inst.mask] = sid
        segments.append(PanopticSegment(sid, inst.label, True, inst.area, inst.bbox, inst.score))

    # Stuff: no minimum share of the own mask (overlap_keep=0), amorphous regions are merged below.
    stuff_candidates = [
        (i, float(classes.scores[i]))
        for i in range(len(classes.labels))
        if stuff[int(classes.labels[i])] and float(classes.scores[i]) >= min_score
    ]
    painted = paint_in_score_order(stuff_candidates, masks, size, taken, overlap_keep=0.0, min_area=1)
    merged: dict[int, tuple[torch.Tensor, float]] = {}
    for i, mask in painted:
        label, score = int(classes.labels[i]), float(classes.scores[i])
        if label in merged:
            merged[label] = (merged[label][0] | mask, max(merged[label][1], score))
        else:
            merged[label] = (mask, score)
    for label in sorted(merged):
        mask, score = merged[label]
        area = int(mask.sum())
        if area < min_area:
            continue
        sid = len(segments) + 1
        id_map[mask] = sid
        segments.append(PanopticSegment(sid, label, False, area, mask_bbox(mask), score))
    return Panoptic(id_map, segments)

"""Instance segmentation: which objects, with which class and how sure (docs/ARCHITECTURE.md task table).

Every region is a candidate object. Its class is the argmax over classes of the cosine to the
region embedding (max over a class's prompts, as in semantic segmentation); its score is the
class probability, softmax over the vocabulary of cosine / temperature, times the region's
objectness. So a region that looks like one class among many and that the model believes is an
object scores high; a region that is "a bit of everything" or background scores low.

Regions overlap (their soft masks are independent sigmoids), while COCO and panoptic outputs
want each pixel to belong to one object. Overlaps are resolved like Mask2Former/Panoptic-FPN
post-processing: paint regions in score order, each pixel goes to the first region that claims
it, and a region that has lost most of its mask (it duplicated a better one) or is tiny is dropped.
Stuff classes are not objects and never appear here (panoptic.py merges them per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omniseg.regions import Regions
from omniseg.tasks.semantic import CONFIDENCE_SCALE, other_concepts, region_class_similarity

DEFAULT_TEMPERATURE = 0.1  # cosine/0.1: the logit scale (10) the class head starts training with (exp(2.3))
MASK_THRESHOLD = 0.5
DEFAULT_OVERLAP_KEEP = 0.5
DEFAULT_MIN_AREA = 16  # pixels: one cell of the stride-4 mask at full resolution
DEFAULT_MAX_INSTANCES = 100  # COCO's maxDets


@dataclass
class Instance:
    mask: torch.Tensor  # bool [H, W] at the image size, disjoint from every other instance's
    label: int  # class index in the vocabulary
    score: float  # class probability x objectness, in [0, 1]
    bbox: tuple[int, int, int, int]  # COCO [x, y, width, height] of the mask, in pixels
    region: int  # index of the region it came from (for debugging and for the panoptic merge)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class RegionClasses:
    labels: torch.Tensor  # [N] int64, argmax class of each region
    scores: torch.Tensor  # [N] class probability x objectness
    cosine: torch.Tensor  # [N] cosine of the region to its class


def classify_regions(
    regions: Regions,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    num_classes: int,
    temperature: float = DEFAULT_TEMPERATURE,
    reference: torch.Tensor | None = None,
) -> RegionClasses:
    """Class, score and cosine of every region (see the module docstring for why this score).

    reference [R, D]: "no object" concepts (the door passes "background", which the default model
    trained as COCO's unannotated pixels). The score is then also multiplied by the region's
    confidence against them (tasks.semantic.CONFIDENCE_SCALE): a region that is more background than
    any asked class is no "person" instance covering the scene, however the softmax over the asked
    classes alone ranks it (Mask2Former's no-object class). Measured on coco128_seg val: PQ 9.70 ->
    10.25; the model's whole training vocabulary as reference lowered it (8.77: near-synonyms such as
    "pedestrian" and "body" compete with "person").
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    sim = region_class_similarity(regions, prompt_embeddings, prompt_to_class, num_classes)  # [K, N]
    cosine, labels = sim.max(dim=0)
    prob = torch.softmax(sim.float() / temperature, dim=0).gather(0, labels[None])[0]
    score = prob * regions.scores.float()
    others = other_concepts(reference, prompt_embeddings)
    if others is not None and len(others) and len(regions):
        best_other = (others.to(regions.embeddings.dtype) @ regions.embeddings.T).max(dim=0).values
        score = score * torch.sigmoid((cosine - best_other).float() / CONFIDENCE_SCALE)
    return RegionClasses(labels, score, cosine)


def upsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One soft mask [h, w] -> [H, W], bilinear as semantic segmentation does."""
    if tuple(mask.shape) == tuple(size):
        return mask.float()
    return F.interpolate(mask[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """COCO [x, y, w, h] of a bool mask (w = last column - first column + 1, as pycocotools toBbox)."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if len(rows) == 0:
        return (0, 0, 0, 0)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def paint_in_score_order(
    candidates: Sequence[tuple[int, float]],
    masks: Sequence[torch.Tensor] | torch.Tensor,
    size: tuple[int, int],
    taken: torch.Tensor,
    overlap_keep: float,
    min_area: int,
) -> list[tuple[int, torch.Tensor]]:
    """Greedy overlap resolution over (index into ``masks``, score) pairs, best score first.

    A region keeps the pixels of its binarised mask that no earlier region took; it is dropped
    when what is left is below ``overlap_keep`` of its mask or below ``min_area`` pixels. ``taken``
    [H, W] bool is updated in place so that callers can paint further (stuff after things).
    """
    kept = []
    for index, _ in sorted(candidates, key=lambda c: -c[1]):
        full = upsample_mask(masks[index], size) > MASK_THRESHOLD
        area = int(full.sum())
        if area == 0:
            continue
        free = full & ~taken
        left = int(free.sum())
        if left < min_area or left < overlap_keep * area:
            continue
        taken |= free
        kept.append((index, free))
    return kept


def instance_segmentation(
    regions: Regions,
    prompt_embeddings: torch.Tensor,
    prompt_to_class: torch.Tensor,
    num_classes: int,
    stuff: Sequence[bool] | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    min_score: float = 0.0,
    overlap_keep: float = DEFAULT_OVERLAP_KEEP,
    min_area: int = DEFAULT_MIN_AREA,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    out_size: tuple[int, int] | None = None,
    reference: torch.Tensor | None = None,
) -> list[Instance]:
    """Instances of the thing classes, best score first, with disjoint masks at ``out_size``.

    stuff: per class, True = stuff (never an instance); None = every class is a thing.
    min_score: regions scoring below it are not candidates (AP wants them all: 0 by default).
    overlap_keep: fraction of its mask a region must keep after better regions took theirs.
    """
    if stuff is not None and len(stuff) != num_classes:
        raise ValueError(f"stuff has {len(stuff)} flags for {num_classes} classes")
    h, w = out_size or regions.image_size
    size = (int(h), int(w))
    classes = classify_regions(regions, prompt_embeddings, prompt_to_class, num_classes, temperature, reference)
    taken = torch.zeros(size, dtype=torch.bool)
    things = instances_from_classes(regions.masks, classes, stuff, size, taken, min_score, overlap_keep, min_area)
    return things[:max_instances]


def instances_from_classes(
    masks: torch.Tensor,
    classes: RegionClasses,
    stuff: Sequence[bool] | None,
    size: tuple[int, int],
    taken: torch.Tensor,
    min_score: float,
    overlap_keep: float,
    min_area: int,
) -> list[Instance]:
    """The thing regions (soft or bool ``masks`` [N, h, w]) painted onto ``taken`` (updated in
    place); shared by the panoptic task and the concept tasks (tasks/concepts.py).

    (Splitting a region into its connected parts, one object each, was measured and not kept:
    coco128_seg val PQ 9.70 -> 7.68, fragments of one object became false positives.)
    """
    candidates = [
        (i, float(classes.scores[i]))
        for i in range(len(classes.labels))
        if float(classes.scores[i]) >= min_score and not (stuff is not None and stuff[int(classes.labels[i])])
    ]
    painted = paint_in_score_order(candidates, masks, size, taken, overlap_keep, min_area)
    return [
        Instance(
            mask=mask, label=int(classes.labels[i]), score=float(classes.scores[i]), bbox=mask_bbox(mask), region=i
        )
        for i, mask in painted
    ]

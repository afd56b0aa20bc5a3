"""The semantic, instance and panoptic tasks on a concept source's instances (omniseg.concepts).

A concept source (SAM 3) already gives each instance its class and score, and its masks overlap.
The tasks differ from the Regions ones only in where classes come from; overlaps are resolved by
the same painting as tasks/instance.py and tasks/panoptic.py:

- instance: the instances as the source gives them (overlaps allowed, as in COCO results), best
  score first, without the stuff classes (stuff is never an object);
- semantic: each pixel takes the class of the best-scoring instance covering it; uncovered pixels
  are unlabeled (-1);
- panoptic: thing instances painted best first (an instance that lost most of its mask to better
  ones is dropped), then stuff instances merged per class (tasks.panoptic.panoptic_from_classes).

``found`` holds only instances above the caller's threshold (the source applied it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from omniseg.concepts import Instances
from omniseg.tasks.instance import Instance, RegionClasses, mask_bbox, paint_in_score_order
from omniseg.tasks.panoptic import Panoptic, panoptic_from_classes


def _classes(found: Instances) -> RegionClasses:
    return RegionClasses(labels=found.labels, scores=found.scores, cosine=found.scores)


def concept_instances(found: Instances, stuff: Sequence[bool] | None = None) -> list[Instance]:
    """Every instance of a thing class, best score first (ties: the source's order), masks overlapping."""
    order = sorted(range(len(found)), key=lambda i: -float(found.scores[i]))
    kept = [i for i in order if not (stuff is not None and stuff[int(found.labels[i])])]
    return [
        Instance(
            mask=found.masks[i],
            label=int(found.labels[i]),
            score=float(found.scores[i]),
            bbox=mask_bbox(found.masks[i]),
            region=i,
        )
        for i in kept
    ]


def concept_semantic(found: Instances) -> torch.Tensor:
    """Class ids [H, W] (int64, -1 = unlabeled): the best-scoring instance's class at each pixel."""
    size = found.image_size
    label = torch.full(size, -1, dtype=torch.long)
    taken = torch.zeros(size, dtype=torch.bool)
    candidates = [(i, float(found.scores[i])) for i in range(len(found))]
    for i, mask in paint_in_score_order(candidates, found.masks, size, taken, overlap_keep=0.0, min_area=1):
        label[mask] = int(found.labels[i])
    return label


def concept_panoptic(found: Instances, stuff: Sequence[bool]) -> Panoptic:
    """Things painted best first, stuff merged per class, as tasks.panoptic does for Regions."""
    return panoptic_from_classes(found.masks, _classes(found), stuff, found.image_size, min_score=0.0)

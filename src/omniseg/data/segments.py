"""Ground-truth segments (instances and panoptic) from the uniform dataset layout.

The layout stores semantic masks (masks/<id>.png, class ids, 255 = ignore) and, for COCO-derived
sets, instances/<id>.png (uint16, 0 = no instance, k = k-th instance; each instance's pixels have
one class in masks/). Instance maps hold the *visible* part of each object (overlaps were painted
largest first), so ground-truth segments never overlap: exactly what a panoptic map needs.

Which class is what (documented in the eval report):
- void: classes named "background", "void", "unlabeled"/"unlabelled" (COCO's 0 = "no annotated
  thing") and mask value 255; these pixels are void for PQ and never ground-truth objects.
- thing: with instances/ present, every other class (COCO's 80 classes are all things), except
  the classes the user names as stuff (``--stuff``) or the dataset declares in ``stuff.json``
  (written from COCO panoptic's ``isthing: 0``).
- stuff: without instances/ (camvid, msrc_v2: semantic-only sets), every non-void class; one
  segment per class present in the image. Instance evaluation needs things, so it refuses such sets.
- crowd: pixels of a thing class that carry no instance id (coco_mini paints COCO's crowd RLEs
  into masks/ but not into instances/) form one iscrowd=1 segment per class, as COCO does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omniseg.data.dataset import Dataset
from omniseg.data.uniform import IGNORE, Sample, read_mask
from omniseg.errors import InputError
from omniseg.tasks.common import load_mask

VOID_CLASS_NAMES = frozenset({"background", "void", "unlabeled", "unlabelled"})


@dataclass(frozen=True)
class ClassRoles:
    void: list[bool]  # per class id: never a segment, its pixels are void
    isthing: list[bool]  # per class id (False for void and stuff)
    has_instances: bool

    @property
    def stuff(self) -> list[bool]:
        return [not v and not t for v, t in zip(self.void, self.isthing, strict=True)]


@dataclass(frozen=True)
class GTSegment:
    id: int  # value in the ground-truth id map, >= 1
    category_id: int  # class id of the dataset
    iscrowd: bool
    area: int
    bbox: tuple[int, int, int, int]  # COCO [x, y, w, h]


def declared_stuff(root: Path) -> list[str]:
    """The stuff classes a dataset declares itself (``stuff.json``, written e.g. from COCO panoptic's isthing)."""
    path = root / "stuff.json"
    return [str(n) for n in json.loads(path.read_text())] if path.is_file() else []


def class_roles(dataset: Dataset, stuff_names: Sequence[str] = ()) -> ClassRoles:
    """Void / thing / stuff per class of the dataset (rules in the module docstring)."""
    has_instances = (dataset.root / "instances").is_dir()
    lower = [c.lower() for c in dataset.classes]
    unknown = [n for n in stuff_names if n.strip().lower() not in lower]
    if unknown:
        raise InputError(f"--stuff names a class that is not in {dataset.name}/classes.json: {unknown[0]!r}")
    stuff = {n.strip().lower() for n in [*stuff_names, *declared_stuff(dataset.root)]}
    void = [c in VOID_CLASS_NAMES for c in lower]
    isthing = [has_instances and not v and c not in stuff for c, v in zip(lower, void, strict=True)]
    return ClassRoles(void, isthing, has_instances)


def instance_path(dataset: Dataset, sample: Sample) -> Path | None:
    path = dataset.root / "instances" / f"{sample.id}.png"
    return path if path.is_file() else None


def read_instance_map(path: Path) -> np.ndarray:
    return load_mask(path, "instance map").astype(np.int64)


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def ground_truth_segments(
    class_map: np.ndarray, instance_map: np.ndarray | None, roles: ClassRoles
) -> tuple[np.ndarray, list[GTSegment]]:
    """Panoptic ground truth of one image: id map int64 [H, W] (0 = void) and its segments.

    Thing segments in instance-id order, then crowd segments, then stuff segments, by class id.
    """
    if instance_map is not None and instance_map.shape != class_map.shape:
        raise InputError(f"instance map {instance_map.shape} and mask {class_map.shape} differ in size")
    classes = class_map.astype(np.int64)
    num_classes = len(roles.void)
    known = (classes != IGNORE) & (classes >= 0) & (classes < num_classes)
    safe = np.where(known, classes, 0)
    void_px = ~known | np.asarray(roles.void, dtype=bool)[safe]
    thing_px = ~void_px & np.asarray(roles.isthing, dtype=bool)[safe]
    stuff_px = ~void_px & ~thing_px
    inst = instance_map if instance_map is not None else np.zeros_like(classes)

    id_map = np.zeros(classes.shape, dtype=np.int64)
    segments: list[GTSegment] = []

    def add(mask: np.ndarray, category: int, crowd: bool) -> None:
        sid = len(segments) + 1
        id_map[mask] = sid
        segments.append(GTSegment(sid, category, crowd, int(mask.sum()), bbox_of(mask)))

    # Things: one segment per (instance id, class); an instance spanning two classes (it should
    # not) is split rather than given a wrong class.
    keyed = np.where(thing_px & (inst > 0), inst * (num_classes + 1) + safe, -1)
    for key in np.unique(keyed[keyed >= 0]):
        add(keyed == key, int(key % (num_classes + 1)), crowd=False)
    crowd = thing_px & (inst == 0)
    for category in np.unique(safe[crowd]):
        add(crowd & (safe == category), int(category), crowd=True)
    for category in np.unique(safe[stuff_px]):
        add(stuff_px & (safe == category), int(category), crowd=False)
    return id_map, segments


def sample_truth(
    dataset: Dataset, sample: Sample, roles: ClassRoles, image_size: tuple[int, ...]
) -> tuple[np.ndarray, list[GTSegment]]:
    """A sample's panoptic ground truth (id map, segments) from its class mask and, when the dataset
    has instances/, its instance map; InputError when the mask does not fit the image or an
    instance map is missing."""
    assert sample.mask_path is not None
    classes = read_mask(sample.mask_path, len(dataset.classes))
    if classes.shape != tuple(image_size):
        raise InputError(f"mask and image differ in size for {sample.id}")
    path = instance_path(dataset, sample)
    if roles.has_instances and path is None:
        raise InputError(f"{dataset.name} has instances/ but no instances/{sample.id}.png")
    return ground_truth_segments(classes, read_instance_map(path) if path else None, roles)

"""The results module: what every task returns, with one surface — ``to_json()`` (an API summary,
the same in the CLI's files and the REST answers), ``overlay()`` (a picture) and
``save(out_dir, stem)`` (files). Semantic label maps (``SemanticResult``, ``encode_label_map``),
instances, panoptic segments, and id maps of in-context targets and video frames (``IdMapResult``);
the refer and click results live with their tasks and share the surface.

Category ids in the written COCO files are the class's index in the vocabulary + 1: COCO's ids
start at 1, and a file that names the class as well ("category_name", "categories") can be read
without the vocabulary at hand. The image id is the file stem, as a number when it is one
(COCO's own file names), so the instance file evaluates directly against COCO ground truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from omniseg import formats
from omniseg.atomic import atomic_save_png, atomic_write_text, output_path
from omniseg.errors import InputError
from omniseg.tasks.instance import Instance
from omniseg.tasks.panoptic import PanopticSegment
from omniseg.viz import overlay

# Files each task writes for one image (the CLI's --skip-existing checks these).
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "semantic": (".png", "_overlay.png", ".json"),
    "instance": ("_instances.json", "_overlay.png"),
    "panoptic": ("_panoptic.png", "_panoptic.json", "_overlay.png"),
    "ids": (".png", "_overlay.png", ".json"),  # in-context targets and video frames
}


UINT8_UNLABELED = 255
UINT16_UNLABELED = 65535


def unlabeled_value(num_classes: int) -> int:
    """uint8 with 255 = unlabeled up to 255 classes, else uint16 with 65535."""
    if num_classes <= 255:
        return UINT8_UNLABELED
    if num_classes <= 65535:
        return UINT16_UNLABELED
    raise InputError(f"{num_classes} classes do not fit a uint16 label map (at most 65,535)")


def encode_label_map(label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids [H,W] (int, -1 = unlabeled) -> the label map to write, and its region classes.

    Up to 65,535 classes the map holds class ids (uint8 up to 255 classes, else uint16; the top
    value means unlabeled) and the second value is None. Above, no integer PNG holds a class id:
    the map holds region ids instead (one region per class present in this image, numbered in
    class order) and the second value gives each region's class id.
    """
    if num_classes <= 65535:
        unlabeled = unlabeled_value(num_classes)
        dtype = np.uint8 if unlabeled == UINT8_UNLABELED else np.uint16
        return np.where(label < 0, unlabeled, label).astype(dtype), None
    present = np.unique(label[label >= 0])
    unlabeled = unlabeled_value(len(present))
    dtype = np.uint8 if unlabeled == UINT8_UNLABELED else np.uint16
    regions = np.searchsorted(present, np.maximum(label, 0))
    return np.where(label < 0, unlabeled, regions).astype(dtype), present.astype(np.int64)


@dataclass
class SemanticResult:
    image: np.ndarray = field(repr=False)
    label_map: np.ndarray = field(repr=False)  # uint8/uint16, index into names, unlabeled = 255/65535
    classes: list[str] = field(repr=False)  # the whole vocabulary
    model_id: str
    timings: dict[str, float]
    region_classes: np.ndarray | None = field(default=None, repr=False)  # > 65,535 classes: region id -> class id

    @property
    def names(self) -> list[str]:
        """Name of each label-map value: the classes, or (region ids) the class of each region."""
        if self.region_classes is None:
            return self.classes
        return [self.classes[int(k)] for k in self.region_classes]

    @property
    def unlabeled(self) -> int:
        return unlabeled_value(len(self.names))

    def class_map(self) -> np.ndarray:
        """Class ids [H,W] int64 whatever the label map holds; -1 = unlabeled."""
        values = self.label_map.astype(np.int64)
        ids = values if self.region_classes is None else self.region_classes[np.minimum(values, len(self.names) - 1)]
        return np.where(values == self.unlabeled, -1, ids)

    def fractions(self) -> dict[str, float]:
        ids, counts = np.unique(self.label_map, return_counts=True)
        total = self.label_map.size
        names = self.names
        return {
            names[int(i)]: round(float(c) / total, 6) for i, c in zip(ids, counts, strict=False) if i != self.unlabeled
        }

    def display_map(self) -> tuple[np.ndarray, list[str], int]:
        """(label map, class names, unlabeled value): what the overlay draws."""
        return self.label_map, self.names, self.unlabeled

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, *self.display_map(), alpha=alpha, legend=legend)

    def to_json(self) -> dict:
        """'classes' names every label-map value (class ids, or region ids above 65,535 classes)."""
        out = {
            "classes": self.names,
            "label_map": {
                "dtype": str(self.label_map.dtype),
                "unlabeled": self.unlabeled,
                "height": int(self.label_map.shape[0]),
                "width": int(self.label_map.shape[1]),
                "values": "class ids" if self.region_classes is None else "region ids",
            },
            "vocabulary_size": len(self.classes),
            "fractions": self.fractions(),
            "unlabeled_fraction": round(float((self.label_map == self.unlabeled).mean()), 6),
            "model": self.model_id,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.region_classes is not None:
            out["regions"] = [
                {"id": i, "class": self.classes[int(k)], "class_id": int(k)} for i, k in enumerate(self.region_classes)
            ]
        return out

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        suffixes = {"label_map": ".png", "overlay": "_overlay.png", "json": ".json"}
        paths = {key: output_path(out_dir, stem, suffix) for key, suffix in suffixes.items()}
        atomic_save_png(paths["label_map"], self.label_map)
        atomic_save_png(paths["overlay"], self.overlay())
        # Files hold no timings: the same image and job give the same bytes (batch resume relies on it).
        saved = {k: v for k, v in self.to_json().items() if k != "timings"}
        atomic_write_text(paths["json"], json.dumps(saved, indent=2))
        return paths


def _index_map(masks: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Disjoint masks -> one map of mask indices (for viz.overlay), and its 'nothing' value."""
    unlabeled = 65535 if len(masks) >= 255 else 255
    index = np.full(shape, unlabeled, dtype=np.uint16 if unlabeled == 65535 else np.uint8)
    for i, m in enumerate(masks):
        index[m] = i
    return index, unlabeled


@dataclass
class InstanceResult:
    image: np.ndarray = field(repr=False)
    instances: list[Instance] = field(repr=False)
    classes: list[str]
    stuff: list[bool]
    model_id: str
    timings: dict[str, float]

    @property
    def category_ids(self) -> list[int]:
        return [k + 1 for k in range(len(self.classes))]

    def masks(self) -> list[np.ndarray]:
        return [inst.mask.numpy() for inst in self.instances]

    def coco(self, image_id: int | str) -> list[dict]:
        """COCO results records (RLE masks), best score first."""
        return formats.instance_records(
            self.masks(),
            [i.label for i in self.instances],
            [i.score for i in self.instances],
            image_id,
            self.category_ids,
            self.classes,
        )

    def display_map(self) -> tuple[np.ndarray, list[str], int]:
        """(map of instance indices, a name per instance, the 'nothing' value): what the overlay draws."""
        index, unlabeled = _index_map(self.masks(), self.image.shape[:2])
        return index, [f"{self.classes[i.label]} {i.score:.2f}" for i in self.instances], unlabeled

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, *self.display_map(), alpha=alpha, legend=legend)

    def to_json(self) -> dict:
        return {
            "task": "instance",
            "classes": self.classes,
            "stuff": self.stuff,
            "instances": [
                {
                    "class": self.classes[i.label],
                    "category_id": i.label + 1,
                    "score": round(i.score, 6),
                    "bbox": list(i.bbox),
                    "area": i.area,
                }
                for i in self.instances
            ],
            "model": self.model_id,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        paths = {
            "instances": output_path(out_dir, stem, "_instances.json"),
            "overlay": output_path(out_dir, stem, "_overlay.png"),
        }
        formats.write_instances_json(paths["instances"], self.coco(formats.coco_image_id(stem)))
        atomic_save_png(paths["overlay"], self.overlay())
        return paths


@dataclass
class PanopticResult:
    image: np.ndarray = field(repr=False)
    id_map: np.ndarray = field(repr=False)  # int32 [H, W], 0 = void, else segments[k].id
    segments: list[PanopticSegment]
    classes: list[str]
    stuff: list[bool]
    model_id: str
    timings: dict[str, float]

    def segments_info(self) -> list[dict]:
        """COCO panoptic segments_info (category_id = class index + 1), plus the score."""
        return [
            {
                "id": s.id,
                "category_id": s.label + 1,
                "isthing": int(s.isthing),
                "area": s.area,
                "bbox": list(s.bbox),
                "score": round(s.score, 6),
            }
            for s in self.segments
        ]

    def record(self, image_id: int | str, file_name: str) -> dict:
        """The per-image annotation of the COCO panoptic format, with the categories it uses."""
        return {
            "image_id": image_id,
            "file_name": file_name,
            "segments_info": self.segments_info(),
            "categories": formats.categories(
                self.classes, [not s for s in self.stuff], [k + 1 for k in range(len(self.classes))]
            ),
        }

    def display_map(self) -> tuple[np.ndarray, list[str], int]:
        """(map of segment indices, a name per segment, the 'nothing' value): what the overlay draws."""
        masks = [self.id_map == s.id for s in self.segments]
        index, unlabeled = _index_map(masks, self.id_map.shape)
        names = [
            f"{self.classes[s.label]} {s.score:.2f}" if s.isthing else self.classes[s.label] for s in self.segments
        ]
        return index, names, unlabeled

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, *self.display_map(), alpha=alpha, legend=legend)

    def to_json(self) -> dict:
        return {
            "task": "panoptic",
            "classes": self.classes,
            "stuff": self.stuff,
            "segments_info": [
                {**info, "class": self.classes[s.label]}
                for info, s in zip(self.segments_info(), self.segments, strict=True)
            ],
            "void_fraction": round(float((self.id_map == 0).mean()), 6),
            "model": self.model_id,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        paths = {
            "panoptic": output_path(out_dir, stem, "_panoptic.png"),
            "json": output_path(out_dir, stem, "_panoptic.json"),
            "overlay": output_path(out_dir, stem, "_overlay.png"),
        }
        record = self.record(formats.coco_image_id(stem), paths["panoptic"].name)
        formats.write_panoptic(paths["panoptic"], paths["json"], self.id_map, record)
        atomic_save_png(paths["overlay"], self.overlay())
        return paths


@dataclass
class IdMapResult:
    """An in-context target's or a video frame's answer: the examples' (or first mask's) object ids
    at the image's size, 0 = background. ``frame``: the frame's position in a video (None otherwise)."""

    image: np.ndarray = field(repr=False)
    id_map: np.ndarray = field(repr=False)  # uint8/uint16 [H, W], the ids of the example masks
    model_id: str
    frame: int | None = None
    labels: dict[int, str] | None = None  # tracked concepts (video --classes): each object id's name

    def ids(self) -> list[int]:
        """The object ids found (background 0 excluded), ascending."""
        return [int(i) for i in np.unique(self.id_map) if i != 0]

    def fractions(self) -> dict[str, float]:
        """Fraction of the image each value covers, background (0) included; keys are the ids as text."""
        values, counts = np.unique(self.id_map, return_counts=True)
        return {str(int(i)): round(float(c) / self.id_map.size, 6) for i, c in zip(values, counts, strict=True)}

    def display_map(self) -> tuple[np.ndarray, list[str], int]:
        """(map of indices into the found ids, 'id k' per found id, the 'nothing' value = background)."""
        found = np.asarray(self.ids(), dtype=np.int64)
        unlabeled = 65535 if len(found) >= 255 else 255
        index = np.searchsorted(found, self.id_map.astype(np.int64))
        index = np.where(self.id_map == 0, unlabeled, index).astype(np.uint16 if unlabeled == 65535 else np.uint8)
        names = self.labels or {}
        return index, [f"{names[int(i)]} {i}" if int(i) in names else f"id {i}" for i in found], unlabeled

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, *self.display_map(), alpha=alpha, legend=legend)

    def to_json(self) -> dict:
        out: dict = {
            "height": int(self.id_map.shape[0]),
            "width": int(self.id_map.shape[1]),
            "dtype": str(self.id_map.dtype),
            "ids": self.ids(),
            "fractions": self.fractions(),
            "model": self.model_id,
        }
        if self.frame is not None:
            out["frame"] = self.frame
        if self.labels is not None:
            out["labels"] = {str(i): self.labels[i] for i in self.ids() if i in self.labels}
        return out

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """``<stem>.png`` (the id map), ``<stem>_overlay.png`` and ``<stem>.json``."""
        suffixes = dict(zip(("ids", "overlay", "json"), OUTPUT_SUFFIXES["ids"], strict=True))
        paths = {key: output_path(out_dir, stem, suffix) for key, suffix in suffixes.items()}
        atomic_save_png(paths["ids"], self.id_map)
        atomic_save_png(paths["overlay"], self.overlay())
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2))
        return paths

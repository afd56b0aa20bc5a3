"""Reader of the uniform dataset layout (docs/ARCHITECTURE.md): images/<id>.*, masks/<id>.png, classes.json.

Masks hold class ids with 255 = ignore. Splits are fixed by a seed so every run, and every
machine, sees the same train/val images.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omniseg.errors import InputError
from omniseg.images import pil_to_rgb, read_image
from omniseg.tasks.common import load_mask

IGNORE = 255
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    id: str
    image_path: Path
    mask_path: Path | None

    @property
    def truth_path(self) -> Path:
        """The mask path of a sample evaluation needs a mask for (InputError when it has none)."""
        if self.mask_path is None:
            raise InputError(f"image {self.id} has no mask (masks/{self.id}.png) to evaluate against")
        return self.mask_path


class UniformDataset:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        classes_file = self.root / "classes.json"
        if not classes_file.is_file():
            raise InputError(f"not a dataset directory (no classes.json): {self.root}")
        self.classes: list[str] = json.loads(classes_file.read_text())
        self.name = self.root.name
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise InputError(f"dataset has no images/ folder: {self.root}")
        samples = []
        for entry in sorted(images_dir.iterdir()):
            # Video layout (images/<sequence>/<frame>): every frame is a sample "<sequence>/<frame>".
            paths = sorted(entry.iterdir()) if entry.is_dir() else [entry]
            for path in paths:
                if path.suffix.lower() in IMAGE_EXTS:
                    sid = path.relative_to(images_dir).with_suffix("").as_posix()
                    mask = self.root / "masks" / f"{sid}.png"
                    samples.append(Sample(sid, path, mask if mask.is_file() else None))
        if not samples:
            raise InputError(f"dataset has no images: {images_dir}")
        self.samples = samples

    def labelled(self) -> bool:
        return any(s.mask_path is not None for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, part: str, val_fraction: float = 0.2, seed: int = 0) -> list[Sample]:
        """Fixed-seed split of the labelled samples; part is 'train', 'val' or 'all'.

        A dataset without any mask (images only, e.g. for captions) splits all of its images."""
        labelled = [s for s in self.samples if s.mask_path is not None] if self.labelled() else self.samples
        return fixed_split(labelled, self.name, part, val_fraction, seed)

    def eval_samples(
        self, part: str, val_fraction: float = 0.2, seed: int = 0, limit: int | None = None
    ) -> list[Sample]:
        """The samples an evaluation scores: ``split`` cut to the first ``limit``; none is an InputError
        (a metric over no image would be a silent 0 or NaN)."""
        samples = self.split(part, val_fraction, seed)
        if limit is not None:
            samples = samples[: max(0, limit)]
        if not samples:
            raise InputError(f"no labelled images to evaluate in {self.root} (split {part})")
        return samples


def fixed_split(samples: list[Sample], name: str, part: str, val_fraction: float, seed: int) -> list[Sample]:
    """``part`` ('train', 'val' or 'all') of ``samples``, shuffled by a seed and the dataset's name so
    every run, and every machine, cuts the same way."""
    if part == "all":
        return samples
    order = list(range(len(samples)))
    random.Random(f"{seed}:{name}").shuffle(order)
    n_val = max(1, round(len(samples) * val_fraction))
    chosen = sorted(order[:n_val]) if part == "val" else sorted(order[n_val:])
    if part not in ("train", "val"):
        raise InputError(f"unknown split {part!r}: use train, val or all")
    return [samples[i] for i in chosen]


def read_mask(path: Path, num_classes: int | None = None) -> np.ndarray:
    """Class ids (255 = ignore); with ``num_classes``, an id that is neither a class nor 255 is an
    InputError (a silent skip would score a model on part of the ground truth)."""

    mask = load_mask(path)
    if num_classes is not None:
        ids = np.unique(mask)
        beyond = ids[(ids >= num_classes) & (ids != IGNORE)]
        if beyond.size:
            raise InputError(
                f"mask {path} has class id {int(beyond[0])} but classes.json lists {num_classes} classes "
                f"(ids 0..{num_classes - 1}, {IGNORE} = ignore)"
            )
    return mask


def read_rgb(path: Path) -> np.ndarray:
    """The image as stored (no EXIF rotation: masks are aligned with the stored pixels)."""

    return read_image(path, lambda im: pil_to_rgb(im, exif=False))

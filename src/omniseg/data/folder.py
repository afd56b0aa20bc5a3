"""Plain image folders as a ``Dataset`` without ground truth: what ``segment`` and ``batch`` read.

A folder is walked recursively (``omniseg.fswalk``: sorted, hidden entries skipped, each real
directory once, so a symbolic link loop cannot repeat an image). Every file with an image
extension is a sample whose id is its path below the folder without the extension ('a/x' for
FOLDER/a/x.jpg): the same id names its outputs, so a/x.jpg and b/x.jpg never collide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from omniseg.data.uniform import Sample, fixed_split
from omniseg.errors import InputError
from omniseg.fswalk import walk_files

# What a folder scan picks up: the formats the reader (Pillow) opens when a file is named directly.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".avif")


def relative_id(path: Path, base: Path) -> str:
    """The id of ``path`` below ``base``: its relative path, '/'-separated, without the extension."""
    return path.relative_to(base).with_suffix("").as_posix()


def image_files(root: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Image files under ``root`` in walk order (sorted), never entering ``exclude`` (a resolved path)."""
    return (path for path in walk_files(root, exclude) if path.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFolder:
    """The images under ``root`` (recursively) as a Dataset with no classes and no masks.

    ``exclude``: a directory never walked (an output directory inside the input). A folder
    without any image is an InputError, as is asking it for samples to evaluate.
    """

    def __init__(self, root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder not found: {self.root}")
        self.name = self.root.resolve().name
        self.classes: list[str] = []
        excluded = Path(exclude).resolve() if exclude is not None else None
        self.samples = [Sample(relative_id(p, self.root), p, None) for p in image_files(self.root, excluded)]
        if not self.samples:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}")

    def labelled(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, part: str, val_fraction: float = 0.2, seed: int = 0) -> list[Sample]:
        """Fixed-seed split of the images (the uniform layout's rule for a dataset without masks)."""
        return fixed_split(self.samples, self.name, part, val_fraction, seed)

    def eval_samples(
        self, part: str, val_fraction: float = 0.2, seed: int = 0, limit: int | None = None
    ) -> list[Sample]:
        raise InputError(
            f"{self.root} is a plain image folder: no ground truth to evaluate against "
            "(a dataset has classes.json, images/ and masks/, or is a COCO JSON file)"
        )

"""The dataset seam: what evaluation and training read, and ``open_dataset`` for every format.

A ``Dataset`` has a name, a root, its class names and samples (image path, class-id mask path),
split by a fixed seed; ``instances/<id>.png`` under the root holds object ids when the format has
objects. Readers:

| what the user gives | reader |
|---|---|
| a directory in the uniform layout (``classes.json``, ``images/``, ``masks/``) | ``UniformDataset`` |
| a COCO instances JSON (polygons / RLE) | ``data.coco``: converted once into the uniform layout |
| a COCO panoptic JSON (+ its PNG folder) | ``data.coco``: the same |
| a plain folder of images, no ground truth (``segment`` / ``batch``) | ``data.folder.ImageFolder`` |

Where to add a dataset format: a reader here that yields the same samples (docs/ARCHITECTURE.md).
Plain folders are not opened here: ``open_dataset`` serves evaluation and training, which need
ground truth, and a folder without ``classes.json`` is refused with a message that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from omniseg.data.coco import is_coco_file, uniform_from_coco
from omniseg.data.uniform import Sample, UniformDataset
from omniseg.errors import InputError


class Dataset(Protocol):
    name: str
    root: Path
    classes: list[str]
    samples: list[Sample]

    def labelled(self) -> bool: ...

    def split(self, part: str, val_fraction: float = 0.2, seed: int = 0) -> list[Sample]: ...

    def eval_samples(
        self, part: str, val_fraction: float = 0.2, seed: int = 0, limit: int | None = None
    ) -> list[Sample]: ...


def open_dataset(path: str | Path | UniformDataset, images_dir: str | Path | None = None) -> UniformDataset:
    """The dataset at ``path``: a uniform-layout directory or a COCO instances/panoptic JSON file
    (``images_dir``: where its images are, when not beside it); an opened dataset is returned as is."""
    if isinstance(path, UniformDataset):
        return path
    path = Path(path)
    if is_coco_file(path):
        dataset = UniformDataset(uniform_from_coco(path, images_dir))
        dataset.name = path.stem
        return dataset
    if not path.is_dir():
        raise InputError(f"dataset not found: {path} (a uniform-layout directory or a COCO JSON file)")
    return UniformDataset(path)

"""Readers of COCO annotation files: instances JSON (polygons or RLE) and panoptic JSON + PNGs.

A COCO file is read into the uniform layout (docs/ARCHITECTURE.md) once, in the cache directory
($OMNISEG_CACHE/datasets/<key of the file's path, size and mtime>): ``classes.json`` = the
categories in id order, ``masks/<image>.png`` = class ids, ``instances/<image>.png`` = object
ids, ``stuff.json`` = the stuff categories (panoptic ``isthing: 0``), and ``images/`` = links to
the image files. Every evaluator and the training loop then read it like any uniform dataset, so
the numbers on a COCO file are those of its uniform conversion, by construction.

Rules of the conversion:
- instances: pixels of no annotation are ignore (255): the file says nothing about them; an
  object is painted over the larger ones it overlaps (objects in decreasing area); a crowd
  annotation marks its category without an object id (the uniform layout's crowd), and so does a
  stuff category (``isthing: 0``);
- panoptic: the PNG's ids (R + 256 G + 256^2 B) name ``segments_info``; id 0 is void (255);
  things get object ids, stuff and crowd segments do not.
Images are found next to the JSON, in ``images/`` beside it, or in the folder named like the
file's split (``instances_val2017.json`` -> ``val2017/``) beside it or one level up; give
``images_dir`` otherwise. Panoptic PNGs are looked up in the folder named like the JSON
(``panoptic_val2017.json`` -> ``panoptic_val2017/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from omniseg.atomic import atomic_save_png, atomic_write_text
from omniseg.data.uniform import IGNORE
from omniseg.errors import InputError, MissingResourceError
from omniseg.text.cache import default_cache_dir

FORMAT_VERSION = 1  # bump when the conversion changes: older caches are then rebuilt


def is_coco_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".json" and Path(path).is_file()


def read_coco(path: str | Path) -> dict[str, Any]:
    """The parsed file, checked to be COCO instances or panoptic annotations."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a JSON file: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise InputError(f"{path} is not COCO annotations (needs 'images' and 'categories' lists)")
    if not isinstance(data.get("annotations"), list):
        raise InputError(f"{path} has no 'annotations' list")
    return data


def is_panoptic(data: dict[str, Any]) -> bool:
    return any("segments_info" in a for a in data["annotations"])


def uniform_from_coco(path: str | Path, images_dir: str | Path | None = None) -> Path:
    """The uniform-layout directory of a COCO instances or panoptic file (converted on first use)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{FORMAT_VERSION}|{path}|{stat.st_size}|{stat.st_mtime_ns}|{images_dir}".encode())
    target = default_cache_dir() / "datasets" / f"{path.stem}-{key.hexdigest()[:12]}"
    if (target / "classes.json").is_file():
        return target
    data = read_coco(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".coco-", dir=target.parent))
    try:
        images = _image_folder(path, data, images_dir)
        if is_panoptic(data):
            _convert_panoptic(path, data, images, staging)
        else:
            _convert_instances(data, images, staging)
        if not (target / "classes.json").is_file():  # another process may have finished first
            shutil.rmtree(target, ignore_errors=True)
            staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _image_folder(path: Path, data: dict[str, Any], images_dir: str | Path | None) -> Path:
    first = data["images"][0]["file_name"] if data["images"] else None
    split = path.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    candidates = (
        [Path(images_dir)]
        if images_dir is not None
        else [path.parent, path.parent / "images", path.parent / split, path.parent.parent / split]
    )
    for folder in candidates:
        if first is None or (folder / first).is_file():
            return folder
    raise MissingResourceError(
        f"the images of {path.name} (e.g. {first}) are not in {', '.join(str(c) for c in candidates)}"
    )


def _categories(data: dict[str, Any]) -> tuple[list[str], dict[int, int], list[str]]:
    """Class names in category-id order, category id -> class id, and the stuff categories' names."""
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    names = [str(c["name"]) for c in cats]
    if len(set(n.lower() for n in names)) != len(names):
        raise InputError("COCO categories with the same name cannot be told apart by name")
    stuff = [str(c["name"]) for c in cats if c.get("isthing", 1) == 0]
    return names, {int(c["id"]): k for k, c in enumerate(cats)}, stuff


def _write_layout(out: Path, names: list[str], stuff: list[str]) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "stuff.json", json.dumps(stuff))
    atomic_write_text(out / "classes.json", json.dumps(names))  # last: marks the conversion complete


def _link_image(source: Path, out: Path, stem: str) -> None:
    link = out / "images" / f"{stem}{source.suffix.lower()}"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source.resolve(), link)


def _decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) -> bool [H, W]."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = segmentation
    else:
        raise InputError(f"unknown COCO segmentation of type {type(segmentation).__name__}")
    return mask_utils.decode(rle).astype(bool)


def _convert_instances(data: dict[str, Any], images: Path, out: Path) -> None:
    names, class_of, stuff = _categories(data)
    stuff_ids = {int(c["id"]) for c in data["categories"] if c.get("isthing", 1) == 0}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    for info in data["images"]:
        height, width, stem = int(info["height"]), int(info["width"]), Path(info["file_name"]).stem
        classes = np.full((height, width), IGNORE, np.uint8 if len(names) < IGNORE else np.uint16)
        objects = np.zeros((height, width), np.uint16)
        anns = sorted(by_image.get(int(info["id"]), []), key=lambda a: -float(a.get("area", 0)))
        for n, ann in enumerate(anns, start=1):
            if int(ann["category_id"]) not in class_of:
                raise InputError(f"annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
            pixels = _decode(ann["segmentation"], height, width)
            classes[pixels] = class_of[int(ann["category_id"])]
            objects[pixels] = 0 if ann.get("iscrowd", 0) or int(ann["category_id"]) in stuff_ids else n
        _link_image(images / info["file_name"], out, stem)
        atomic_save_png(out / "masks" / f"{stem}.png", classes)
        atomic_save_png(out / "instances" / f"{stem}.png", objects)
    _write_layout(out, names, stuff)


def _convert_panoptic(path: Path, data: dict[str, Any], images: Path, out: Path) -> None:
    names, class_of, stuff = _categories(data)
    stuff_ids = {int(c["id"]) for c in data["categories"] if c.get("isthing", 1) == 0}
    pngs = path.parent / path.stem
    infos = {int(i["id"]): i for i in data["images"]}
    for ann in data["annotations"]:
        info = infos.get(int(ann["image_id"]))
        if info is None:
            raise InputError(f"{path.name}: annotation of unknown image_id {ann['image_id']}")
        png = pngs / ann["file_name"]
        if not png.is_file():
            raise MissingResourceError(f"panoptic PNG not found: {png}")
        rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        classes = np.full(ids.shape, IGNORE, np.uint8 if len(names) < IGNORE else np.uint16)
        objects = np.zeros(ids.shape, np.uint16)
        for n, segment in enumerate(ann["segments_info"], start=1):
            pixels = ids == int(segment["id"])
            category = int(segment["category_id"])
            classes[pixels] = class_of[category]
            if category not in stuff_ids and not segment.get("iscrowd", 0):
                objects[pixels] = n
        stem = Path(info["file_name"]).stem
        _link_image(images / info["file_name"], out, stem)
        atomic_save_png(out / "masks" / f"{stem}.png", classes)
        atomic_save_png(out / "instances" / f"{stem}.png", objects)
    _write_layout(out, names, stuff)

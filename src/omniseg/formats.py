"""COCO file formats of instance and panoptic results (one concern: bytes on disk).

Instance results: the COCO "results" JSON, a list of {image_id, category_id, segmentation (RLE),
score, bbox, area}; `COCO.loadRes` and COCOeval read it as is. RLE counts are stored as text
(pycocotools returns bytes, which JSON cannot hold).

Panoptic results: a PNG whose colour encodes the segment id (id = R + 256 G + 256^2 B, 0 = void)
plus a JSON record {image_id, file_name, segments_info: [{id, category_id, isthing, area, bbox,
score}]}, the per-image annotation of the COCO panoptic format (panopticapi reads these).
All writes are atomic (omniseg.atomic).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from omniseg.atomic import atomic_save_png, atomic_write_text

MAX_SEGMENT_ID = 256**3 - 1  # what three 8-bit channels can hold


def encode_rle(mask: np.ndarray) -> dict:
    """bool [H, W] -> COCO RLE {"size": [H, W], "counts": str}."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (counts as str or bytes) -> bool [H, W]."""
    counts = rle["counts"]
    raw = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(raw).astype(bool)


def coco_image_id(stem: str) -> int | str:
    """COCO names images by their numeric id ('000000000139.jpg' -> 139); other names stay text."""
    return int(stem) if stem.isdigit() else stem


def id_map_to_rgb(id_map: np.ndarray) -> np.ndarray:
    """Segment ids [H, W] -> uint8 [H, W, 3] in the COCO panoptic encoding."""
    ids = np.asarray(id_map, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must be in 0..{MAX_SEGMENT_ID}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] in the COCO panoptic encoding -> int64 segment ids [H, W]."""
    c = np.asarray(rgb, dtype=np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256**2 * c[..., 2]


def instance_records(
    masks: Sequence[np.ndarray],
    labels: Sequence[int],
    scores: Sequence[float],
    image_id: int | str,
    category_ids: Sequence[int],
    names: Sequence[str] | None = None,
) -> list[dict]:
    """COCO results records; label k becomes category_ids[k] (and category_name names[k])."""
    records = []
    for mask, label, score in zip(masks, labels, scores, strict=True):
        rle = encode_rle(mask)
        raw = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        record = {
            "image_id": image_id,
            "category_id": int(category_ids[label]),
            "segmentation": rle,
            "score": round(float(score), 6),
            "bbox": [float(v) for v in mask_utils.toBbox(raw)],
            "area": int(mask_utils.area(raw)),
        }
        if names is not None:
            record["category_name"] = names[label]
        records.append(record)
    return records


def categories(names: Sequence[str], isthing: Sequence[bool], category_ids: Sequence[int]) -> list[dict]:
    return [{"id": int(c), "name": n, "isthing": int(t)} for c, n, t in zip(category_ids, names, isthing, strict=True)]


def write_instances_json(path: str | Path, records: list[dict]) -> None:
    atomic_write_text(path, json.dumps(records))


def write_panoptic(png_path: str | Path, json_path: str | Path, id_map: np.ndarray, record: dict) -> None:
    """PNG in the COCO panoptic colour encoding + its JSON record (segments absent from the map refused)."""
    present = {int(i) for i in np.unique(id_map)} - {0}
    listed = {int(s["id"]) for s in record["segments_info"]}
    if present != listed:
        raise ValueError(f"id map and segments_info disagree: {sorted(present ^ listed)[:5]}")
    atomic_save_png(png_path, id_map_to_rgb(id_map))
    atomic_write_text(json_path, json.dumps(record, indent=2))

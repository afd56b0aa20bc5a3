"""Helpers shared by the task functions: grids, resizing, label dtypes, Regions with pixel features.

Regions live on the model's grid (stride 4 of the processed image); users speak in image pixels.
All conversions between the two go through here so every task uses the same convention as
``F.interpolate(..., align_corners=False)``: grid cell centres sit at (i + 0.5) * H / h - 0.5.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from omniseg.atomic import atomic_save_png, atomic_write_text, output_path
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image, read_image
from omniseg.regions import Regions
from omniseg.viz import overlay

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter


@torch.inference_mode()
def image_regions(segmenter: Segmenter, image: ImageLike) -> tuple[np.ndarray, Regions]:
    """The loaded RGB array and its Regions, which must carry ``pixel_features``: the example-based
    tasks (in-context, video) compare pixels, which region embeddings alone cannot do."""
    array = load_image(image)
    regions = segmenter.regions(array)
    if regions.pixel_features is None:
        raise InputError(
            f"the model {segmenter.model_id} gives no pixel features, which in-context and video segmentation need"
        )
    return array, regions


def upsample(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """[C,h,w] -> [C,H,W] bilinear (align_corners=False, as the semantic task does)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]


def sample_at_points(maps: torch.Tensor, points_xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear values of maps [C,h,w] at image-pixel points [P,2] (x, y) -> [C,P].

    Equal to upsampling the maps to the image size and reading the pixels, without the upsampling.
    """
    height, width = image_size
    grid = torch.empty(1, 1, points_xy.shape[0], 2, dtype=maps.dtype)
    grid[0, 0, :, 0] = (points_xy[:, 0].to(maps.dtype) + 0.5) / width * 2 - 1
    grid[0, 0, :, 1] = (points_xy[:, 1].to(maps.dtype) + 0.5) / height * 2 - 1
    out = F.grid_sample(maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0, :]


def id_fractions(
    mask: np.ndarray, ids: list[int], grid: tuple[int, ...], ignore_index: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of each grid cell covered by each id ([len(ids),h,w]) and by valid pixels ([h,w]).

    Area pooling (not nearest sampling) keeps thin and small objects, which a stride-4 grid would
    otherwise miss, and gives mixed boundary cells a proportional weight.
    """
    m = torch.from_numpy(np.asarray(mask).astype(np.int64))
    onehot = torch.stack([(m == i) for i in ids]).float() if ids else torch.zeros(0, *m.shape)
    valid = (m != ignore_index).float() if ignore_index is not None else torch.ones(m.shape)
    pooled = F.adaptive_avg_pool2d(torch.cat([onehot, valid[None]])[None], (grid[0], grid[1]))[0]
    return pooled[:-1], pooled[-1]


def label_dtype(max_id: int) -> type[np.unsignedinteger]:
    """uint8 when every id fits, else uint16 (the PNG writers support both)."""
    if max_id <= 255:
        return np.uint8
    if max_id <= 65535:
        return np.uint16
    raise InputError(f"object id {max_id} does not fit a 16-bit PNG (at most 65,535)")


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """An id map in the smallest PNG-writable dtype (uint8, else uint16) its largest id fits."""
    return ids.astype(label_dtype(int(ids.max(initial=0))), copy=False)


MAX_OBJECT_IDS = 64  # distinct ids an example/first mask may hold; more is a soft or JPEG mask


def check_mask_matches(mask: np.ndarray, image: np.ndarray, what: str) -> None:
    if mask.ndim != 2:
        raise InputError(f"{what} must be a single-channel id mask, got shape {mask.shape}")
    if mask.shape != image.shape[:2]:
        raise InputError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
        )


def as_id_mask(mask: np.ndarray | str | os.PathLike, what: str = "mask", ignore_index: int | None = None) -> np.ndarray:
    """An object-id mask (0 = background, 1.. = objects) from a path or array, checked.

    bool becomes 0/1; floats are accepted only when every value is a whole number (a soft mask must
    be thresholded by the caller: which threshold is theirs to choose). Negative ids, ids beyond
    65,535 and more than MAX_OBJECT_IDS distinct ids (a soft or JPEG-compressed mask) are InputError.
    """
    array = load_mask(os.fsdecode(mask), what) if isinstance(mask, (str, bytes, os.PathLike)) else np.asarray(mask)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
            raise InputError(f"{what} holds fractional values: give integer ids (threshold a soft mask first)")
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{what} must hold integer ids, got dtype {array.dtype}")
    if array.ndim != 2:
        raise InputError(f"{what} must be a single-channel id mask, got shape {array.shape}")
    ids = np.unique(array)
    if ignore_index is not None:
        ids = ids[ids != ignore_index]
    if ids.size and (int(ids[0]) < 0 or int(ids[-1]) > 65535):
        raise InputError(f"{what} has ids {int(ids[0])}..{int(ids[-1])}: ids must lie in 0..65535")
    if ids.size > MAX_OBJECT_IDS:
        raise InputError(
            f"{what} has {ids.size} distinct values: expected object ids (0 = background, at most "
            f"{MAX_OBJECT_IDS}); is it a soft or JPEG-compressed mask? Threshold it first"
        )
    return array


def _mask_array(im: Image.Image, path: Path | None, what: str) -> np.ndarray:
    if im.mode not in ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        at = f": {path}" if path is not None else ""
        raise InputError(f"{what} must be single-channel ids (L, P or 16-bit PNG), got mode {im.mode}{at}")
    array = np.asarray(im)
    return array.astype(np.uint8) if array.dtype == bool else array


def load_mask(path: str | Path | bytes, what: str = "mask", notes: list[str] | None = None) -> np.ndarray:
    """A single-channel id mask file (1-bit, L, P with palette indices, 16-bit), or its encoded bytes
    (an upload) -> 2-D integer array.

    The same file checks as images (omniseg.images.read_image: empty, truncated, oversized, first frame
    only); colour, alpha and float images are InputError. No EXIF rotation: ids are stored as is.
    notes: as in read_image (warnings collected instead of issued).
    """
    if isinstance(path, bytes):
        return read_image(path, lambda im: _mask_array(im, None, what), what, notes=notes)
    file = Path(path)
    return read_image(file, lambda im: _mask_array(im, file, what), what, notes=notes)


def mask_overlay(
    image: np.ndarray | None, mask: np.ndarray, name: str, alpha: float = 0.55, legend: bool = True
) -> Image.Image:
    """A binary mask [H, W] drawn over its image with a one-entry legend (refer and click results)."""
    if image is None:
        raise InputError("this result does not hold its image: pass the image to the task to draw an overlay")
    return overlay(image, np.where(mask, 0, 255).astype(np.uint8), [name], 255, alpha=alpha, legend=legend)


def save_binary_mask(
    out_dir: str | Path, stem: str, mask: np.ndarray, record: dict, image: np.ndarray | None, name: str
) -> dict[str, Path]:
    """``<stem>.png`` (0 / 255), ``<stem>.json`` and, when the image is known, ``<stem>_overlay.png``
    (the refer and click results)."""

    paths = {"mask": output_path(out_dir, stem, ".png"), "json": output_path(out_dir, stem, ".json")}
    atomic_save_png(paths["mask"], mask.astype(np.uint8) * 255)
    atomic_write_text(paths["json"], json.dumps(record, indent=2))
    if image is not None:
        paths["overlay"] = output_path(out_dir, stem, "_overlay.png")
        atomic_save_png(paths["overlay"], mask_overlay(image, mask, name))
    return paths

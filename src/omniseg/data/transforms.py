"""Training-time geometry: resize to a short side, scale jitter, random crop, horizontal flip."""

from __future__ import annotations

import numpy as np
from PIL import Image

from omniseg.data.uniform import IGNORE


def resize_pair(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    mk = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    return im, mk


def random_crop_flip(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    short_side: int,
    crop: int,
    scale_range: tuple[float, float],
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Image, mask (padding = IGNORE) and optionally a second id map (instances; padding = 0),
    all resized, cropped and flipped alike. Returns (image, mask) or (image, mask, extra)."""
    h, w = mask.shape
    scale = short_side / min(h, w) * rng.uniform(*scale_range)
    image, mask = resize_pair(image, mask, scale)
    if extra is not None:
        extra = resize_ids(extra, mask.shape)
    h, w = mask.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE)
        extra = None if extra is None else np.pad(extra, ((0, ph), (0, pw)))
        h, w = mask.shape
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    out = [image[y : y + crop, x : x + crop], mask[y : y + crop, x : x + crop]]
    if extra is not None:
        out.append(extra[y : y + crop, x : x + crop])
    if rng.random() < 0.5:
        out = [a[:, ::-1] for a in out]
    return tuple(np.ascontiguousarray(a) for a in out)


def resize_ids(ids: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of an integer id map of any width (PIL's mode I keeps 32 bits)."""
    im = Image.fromarray(ids.astype(np.int32), "I").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(im).astype(ids.dtype)

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
) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    scale = short_side / min(h, w) * rng.uniform(*scale_range)
    image, mask = resize_pair(image, mask, scale)
    h, w = mask.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE)
        h, w = mask.shape
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    image, mask = image[y : y + crop, x : x + crop], mask[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)

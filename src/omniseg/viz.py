"""Pictures: a colour overlay of a label map with a legend of the classes present."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Okabe & Ito's colour-blind-safe set (black left out: it is the edge colour), then Paul Tol's
# "muted" set: distinguishable with the common colour-vision deficiencies; more colours follow by
# farthest-point sampling in CIELAB.
SAFE_COLOURS = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167),
    (136, 34, 85), (68, 170, 153), (153, 153, 51), (136, 204, 238), (221, 204, 119), (51, 34, 136), (170, 68, 153),
)  # fmt: skip
PALETTE_SIZE = 256  # distinct colours; beyond, colours repeat
STABLE_CLASSES = 64  # up to this many classes a class keeps its colour in every picture


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 [N, 3] -> CIELAB [N, 3] (D65)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


@functools.lru_cache(maxsize=1)
def _palette_table() -> np.ndarray:
    """PALETTE_SIZE colours: the safe set, then each next colour the farthest (CIELAB) from all
    chosen so far, among an RGB lattice without near-black, near-white and grey colours."""
    levels = np.linspace(0, 255, 11)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _lab(grid)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] > 25) & (lab[:, 0] < 92) & (chroma > 20)  # the overlay must stay readable on photos
    grid, lab = grid[keep], lab[keep]
    chosen = [np.asarray(c, np.float64) for c in SAFE_COLOURS]
    nearest = np.min(np.linalg.norm(lab[:, None] - _lab(np.asarray(chosen))[None], axis=-1), axis=1)
    while len(chosen) < PALETTE_SIZE:
        best = int(np.argmax(nearest))
        chosen.append(grid[best])
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=1))
    return np.round(np.asarray(chosen)).astype(np.uint8)


def palette(n: int) -> np.ndarray:
    """n colours, uint8 [n, 3]: the first n of one fixed sequence (colour-blind-safe ones first,
    each next one as far as possible from the earlier ones), so palette(5) is palette(60)[:5].
    No colour repeats below PALETTE_SIZE."""
    table = _palette_table()
    return table[np.arange(n) % len(table)]


def class_colours(label_map: np.ndarray, num_classes: int, unlabeled: int) -> np.ndarray:
    """The colour of every class [num_classes, 3] for drawing ``label_map``.

    Up to STABLE_CLASSES classes a class has the same colour in every picture (palette order).
    Larger vocabularies would run out of distinguishable colours, so the classes *present* get the
    palette in order of area: the largest the first (most distinct) colours.
    """
    if num_classes <= STABLE_CLASSES:
        return palette(num_classes)
    values, counts = np.unique(label_map[label_map != unlabeled], return_counts=True)
    present = values[np.argsort(-counts, kind="stable")].astype(np.int64)
    colours = np.zeros((num_classes, 3), np.uint8)
    colours[present] = palette(len(present))
    return colours


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


BLEND_BLOCK_PIXELS = 1 << 20
LEGEND_NAME_CHARS = 48  # a legend entry's width (and memory) must not grow with a long class name


def _legend_name(name: str) -> str:
    return name if len(name) <= LEGEND_NAME_CHARS else name[: LEGEND_NAME_CHARS - 1] + "\u2026"


def _percent(fraction: float) -> str:
    """'<1%' rather than a misleading '0%' for a class that is present but small."""
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"


def overlay(
    image: np.ndarray,
    label_map: np.ndarray,
    classes: list[str],
    unlabeled: int,
    alpha: float = 0.55,
    legend: bool = True,
) -> Image.Image:
    """Blend class colours over the image; unlabeled pixels stay as they are; legend on the right.

    Blended in blocks of rows (BLEND_BLOCK_PIXELS at a time): the float temporaries of a whole
    64 MP image were about 50 bytes a pixel; per block they are a fixed few tens of MB."""
    colours = class_colours(label_map, len(classes), unlabeled)
    blended = np.empty(image.shape, np.uint8)
    counts = np.zeros(len(classes), np.int64)
    height = label_map.shape[0]
    step = max(1, BLEND_BLOCK_PIXELS // max(1, label_map.shape[1]))
    for top in range(0, height, step):
        bottom = min(height, top + step)
        labels = label_map[top : min(height, bottom + 1)]  # one more row: the boundary with the next block
        out = image[top:bottom].astype(np.float32)
        valid = labels[: bottom - top] != unlabeled
        ids = labels[: bottom - top][valid].astype(np.int64)
        counts += np.bincount(ids, minlength=len(classes))
        out[valid] = (1 - alpha) * out[valid] + alpha * colours[ids]
        # Darken class boundaries so neighbouring regions of similar colour stay apart.
        edge = np.zeros((bottom - top, label_map.shape[1]), dtype=bool)
        edge[: len(labels) - 1] |= labels[:-1] != labels[1:]
        edge[:, :-1] |= labels[: bottom - top, :-1] != labels[: bottom - top, 1:]
        out[edge] *= 0.35
        blended[top:bottom] = out.clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(blended)
    if not legend:
        return picture
    present = np.flatnonzero(counts)
    counts = counts[present]
    order = np.argsort(-counts, kind="stable")
    total = max(label_map.size, 1)
    font_size = max(11, min(18, picture.height // 24))
    font = _font(font_size)
    row = font_size + 6
    max_rows = max(1, (picture.height - 8) // row)
    entries = [(int(present[i]), counts[i] / total) for i in order]
    shown = entries[:max_rows]
    width = (
        12
        + font_size
        + 8
        + max((int(font.getlength(f"{_legend_name(classes[k])}  {_percent(f)}")) for k, f in shown), default=60)
    )
    canvas = Image.new("RGB", (picture.width + width, picture.height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for r, (k, frac) in enumerate(shown):
        y = 4 + r * row
        x = picture.width + 8
        draw.rectangle([x, y, x + font_size, y + font_size], fill=tuple(int(c) for c in colours[k]), outline=(0, 0, 0))
        draw.text((x + font_size + 6, y), f"{_legend_name(classes[k])}  {_percent(frac)}", fill=(0, 0, 0), font=font)
    if len(entries) > len(shown):
        draw.text(
            (picture.width + 8, 4 + len(shown) * row - row // 2),
            f"+{len(entries) - len(shown)} more",
            fill=(90, 90, 90),
            font=font,
        )
    return canvas

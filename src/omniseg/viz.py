"""Pictures: a colour overlay of a label map with a legend of the classes present."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def palette(n: int) -> np.ndarray:
    """n distinct, stable colours (golden-ratio hue steps), uint8 [n, 3]."""
    colours = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 + 0.35 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 3) % 2)
        colours.append([round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)])
    return np.asarray(colours, dtype=np.uint8).reshape(n, 3)


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
    colours = palette(len(classes))
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

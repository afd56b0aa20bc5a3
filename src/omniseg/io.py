"""Compatibility names: ``omniseg.io`` was split along its two concerns.

- reading images (``load_image``, ``ImageLike``, ``read_image``, ...): ``omniseg.images``;
- atomic writes and safe output names (``atomic_save_png``, ``output_path``, ...): ``omniseg.atomic``.

The library imports those modules; this one only keeps ``from omniseg.io import load_image`` working
for code outside it (scripts, notebooks, branches written before the split). Add nothing here.
"""

from __future__ import annotations

from omniseg.atomic import (
    MAX_OUTPUT_NAME_BYTES,
    atomic_save_png,
    atomic_write_bytes,
    atomic_write_text,
    output_path,
    remove_stale_temp_files,
)
from omniseg.images import (
    MAX_IMAGE_PIXELS,
    ImageLike,
    decode_image,
    image_size,
    load_image,
    pil_to_rgb,
    read_image,
    to_uint8,
)

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_OUTPUT_NAME_BYTES",
    "ImageLike",
    "atomic_save_png",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_image",
    "image_size",
    "load_image",
    "output_path",
    "pil_to_rgb",
    "read_image",
    "remove_stale_temp_files",
    "to_uint8",
]

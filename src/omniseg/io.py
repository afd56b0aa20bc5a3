"""Image loading with clear errors, and atomic writes (a crash never leaves half a file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from omniseg.errors import InputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
MAX_IMAGE_PIXELS = 64_000_000


def load_image(image: ImageLike) -> np.ndarray:
    """path | PIL image | array -> uint8 RGB array [H, W, 3]."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    path = Path(image)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise InputError(f"image too large: {path} is {im.width}x{im.height} (limit {MAX_IMAGE_PIXELS} pixels)")
            im.load()
            # Phone photos store rotation in EXIF; segment what the user sees, not the raw buffer.
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {exc.__class__.__name__}") from exc


_TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, never flip it while threads write


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(directory: str | os.PathLike) -> int:
    """Delete the temporary files a killed process left under ``directory`` (recursively); returns how many.

    Only names the atomic writers make (``.<name>.<random>.tmp``) are touched."""
    removed = 0
    root = Path(directory)
    if not root.is_dir():
        return 0
    for tmp in root.rglob(f".*{_TEMP_SUFFIX}"):
        if tmp.is_file() and tmp.name.count(".") >= 3:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_png(path: str | os.PathLike, array_or_image: np.ndarray | Image.Image) -> None:
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    _atomic_write(Path(path), lambda fh: im.save(fh, format="PNG"))

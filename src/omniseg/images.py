"""Reading images with clear errors: every image and mask file the library reads goes through here.

``read_image`` refuses empty, non-image, truncated and oversized files (the size is checked from the
header, before any pixel is decoded: a few-KB PNG claiming 40000x40000 costs nothing) with an
``InputError``, and warns (``MultiFrameWarning``) when a file has several frames and only the first
is used. ``load_image`` turns whatever a user passes (path, PIL image, array) into uint8 RGB.
Writing results is the other concern, in ``omniseg.atomic``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, Union

import numpy as np
from PIL import Image, ImageOps

from omniseg.errors import InputError, MultiFrameWarning, TooLargeError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
MAX_IMAGE_PIXELS = 64_000_000
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
T = TypeVar("T")


@contextlib.contextmanager
def _quiet_exif() -> Iterator[None]:
    """Pillow warns "Corrupt EXIF data" (two stderr lines per read) on a damaged EXIF block of an
    image that reads fine; what is salvageable is used and the rest ignored, so say nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def _open_checked(source: Path | bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open (lazily: header only) an image file, or encoded bytes (an upload), after the checks every
    reader needs. Over ``max_pixels``: TooLargeError (an InputError; the server answers 413)."""
    at = "" if isinstance(source, bytes) else f" {source}"  # messages name the file, never a server's temp path
    if isinstance(source, bytes):
        if not source:
            raise InputError(f"{what} is empty (0 bytes)")
        opened: Path | io.BytesIO = io.BytesIO(source)
    else:
        if not source.is_file():
            problem = "is not a regular file" if source.exists() else "not found"
            raise InputError(f"{what} {problem}: {source}")
        if source.stat().st_size == 0:
            raise InputError(f"{what} is an empty file (0 bytes): {source}")
        opened = source
    try:
        with _quiet_exif(), warnings.catch_warnings():
            # Pillow's own bomb warning (89-179 MP) would print two lines; our limit is lower anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(opened)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{what} too large:{at} (over {max_pixels} pixels)") from exc
    except PermissionError as exc:
        raise InputError(f"{what} cannot be read (permission denied):{at}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure to identify a user's file is bad input
        raise InputError(f"cannot read {what}{at}: not an image file (PNG, JPEG, ...) or an unknown format") from exc
    if im.width * im.height > max_pixels or im.width * im.height == 0:
        im.close()
        size = f"{at.strip()} is {im.width}x{im.height}" if at else f"{im.width}x{im.height}"
        if im.width * im.height:
            raise TooLargeError(f"{what} too large: {size} (limit {max_pixels} pixels)")
        raise InputError(f"{what} empty: {size}")
    return im


def read_image(
    path: str | os.PathLike | bytes,
    convert: Callable[[Image.Image], T],
    what: str = "image",
    max_pixels: int = MAX_IMAGE_PIXELS,
    notes: list[str] | None = None,
) -> T:
    """Open the image file ``path`` (or encoded image bytes), first frame, check it, and return
    ``convert(image)``.

    Raises InputError for a missing, empty, unreadable, truncated or corrupt file, and for one with
    more than ``max_pixels`` pixels (from its header, before decoding: TooLargeError). Warns
    MultiFrameWarning for an animated or multi-page file, or, given a ``notes`` list, appends the
    message there instead (a server answering many requests from threads cannot use the global,
    thread-unsafe warnings filters to hand each client its own warnings).
    """
    source = path if isinstance(path, bytes) else Path(path)
    at = "" if isinstance(source, bytes) else f" {source}"
    with _open_checked(source, what, max_pixels) as im:
        try:
            with _quiet_exif():
                frames = getattr(im, "n_frames", 1)  # seeks through the file: may meet the corruption
                if frames > 1:
                    im.seek(0)
                im.load()
                array = convert(im)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, KeyError, IndexError, ...
            raise InputError(f"cannot read {what}{at}: the file is truncated or corrupt") from exc
    if frames > 1:
        message = f"{at.strip() or what} has {frames} frames (animated or multi-page): only the first is used"
        if notes is not None:
            notes.append(message)
        else:
            warnings.warn(message, MultiFrameWarning, stacklevel=3)
    return array


def decode_image(
    data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, what: str = "image", notes: list[str] | None = None
) -> np.ndarray:
    """Encoded image bytes (an upload) -> uint8 RGB [H, W, 3], with the checks of ``read_image``; the
    pixel limit is read from the header, before the pixels are decoded."""
    return read_image(data, pil_to_rgb, what, max_pixels, notes)


def image_size(path: str | os.PathLike, what: str = "image", exif: bool = True) -> tuple[int, int]:
    """(width, height) from the file header only (as shown: EXIF rotation applied when ``exif``), so
    bad input fails before a model loads. The same checks and errors as ``read_image``."""
    with _open_checked(Path(path), what) as im:
        width, height = im.size
        if exif and _exif_orientation(im) in (5, 6, 7, 8):  # rotated by 90 degrees when loaded
            width, height = height, width
        return width, height


def _exif_orientation(im: Image.Image) -> int | None:
    try:
        with _quiet_exif():
            return im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, not fatal
        return None


def _exif_transpose(im: Image.Image) -> Image.Image:
    """Phone photos store rotation in EXIF; segment what the user sees, not the raw buffer."""
    if _exif_orientation(im) in (None, 1):
        return im
    try:
        with _quiet_exif():
            return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed orientation tag: use the pixels as stored
        return im


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Pixel values -> uint8: bool -> 0/255; uint16 (and integer images beyond 255, up to 65535)
    -> / 257, the 16-bit scale; floats in 0..1 -> x 255, other floats clipped to 0..255 (NaN -> 0).
    Negative or > 65535 integers and non-numeric arrays are InputError."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise InputError(f"integer image values must lie in 0..255 (8-bit) or 0..65535 (16-bit), got {lo}..{hi}")
        if arr.dtype == np.uint16 or hi > 255:
            return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise InputError(f"image array must hold numbers (uint8, uint16, bool or float), got dtype {arr.dtype}")


def pil_to_rgb(im: Image.Image, exif: bool = True) -> np.ndarray:
    """A PIL image -> uint8 RGB [H, W, 3] (see load_image), EXIF rotation applied when ``exif``."""
    if exif:
        im = _exif_transpose(im)
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        # 16-bit and 32-bit grayscale: Pillow's convert("RGB") clips at 255 (a 16-bit photo turns white).
        arr = np.asarray(im)
        if im.mode == "I" and arr.size and int(arr.max()) > 65535:
            arr = arr.astype(np.float64) / float(arr.max())
        return np.repeat(to_uint8(arr)[..., None], 3, axis=2)
    if im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")  # the direct conversion warns about palette transparency
    return np.asarray(im.convert("RGB"))


def load_image(image: ImageLike) -> np.ndarray:
    """path | PIL image | array -> uint8 RGB array [H, W, 3].

    Grayscale becomes RGB, alpha is dropped (the colour channels are kept as stored), 16-bit images
    are scaled to 8 bits, CMYK and palette images are converted, EXIF rotation is applied, and only
    the first frame of an animated/multi-page file is read (with a MultiFrameWarning). Raises
    InputError for anything that is not a readable image (see ``read_image``).
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        if arr.shape[0] * arr.shape[1] == 0:
            raise InputError(f"image array has no pixels: shape {image.shape}")
        arr = to_uint8(arr[..., :3])
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr)
    if isinstance(image, Image.Image):
        if image.width * image.height == 0:
            raise InputError(f"image has no pixels: {image.width}x{image.height}")
        try:
            return pil_to_rgb(image)
        except (OSError, SyntaxError, ValueError) as exc:  # a lazily opened file that is truncated
            raise InputError(f"cannot read the PIL image: {exc.__class__.__name__}: {exc}") from exc
    if not isinstance(image, (str, os.PathLike)):
        raise InputError(f"an image is a path, a PIL image or an array, got {type(image).__name__}")
    return read_image(image, pil_to_rgb)

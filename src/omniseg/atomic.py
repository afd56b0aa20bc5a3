"""Atomic writes (a crash never leaves half a file) and safe output names.

Every result the library writes goes through ``_atomic_write``: a temporary file in the target
directory, then a rename; a failure (permissions, disk full) raises ``OutputError`` and leaves no
partial file. ``output_path`` refuses names that would escape the output directory. Reading images
is the other concern, in ``omniseg.images``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from omniseg.errors import InputError, OutputError

_TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, never flip it while threads write


# Characters that would let a name escape the output directory or break a file system.
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f]")


# A file name is at most 255 bytes, and the atomic writer's temporary name adds up to 22
# (".NAME.<pid>.XXXXXXXX.tmp", a pid of up to 7 digits).
MAX_OUTPUT_NAME_BYTES = 255 - 22


def output_path(out_dir: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``out_dir / (stem + suffix)``, refusing a stem that would escape ``out_dir`` (path separators,
    '..', control characters), is empty, or makes a file name too long to write: names come from
    users (and, with the server, from uploads), and are checked before any work starts."""
    stem = str(stem)
    if not stem or stem in (".", "..") or _UNSAFE_NAME.search(stem) or (os.altsep and os.altsep in stem):
        raise InputError(f"unsafe output name {stem!r}: no path separators, '..' or control characters")
    size = len(f"{stem}{suffix}".encode("utf-8", "surrogateescape"))
    if size > MAX_OUTPUT_NAME_BYTES:
        raise InputError(
            f"output name {stem[:40]!r}... is too long: {stem}{suffix} would be {size} bytes "
            f"(at most {MAX_OUTPUT_NAME_BYTES}); rename the input"
        )
    return Path(out_dir) / f"{stem}{suffix}"


def _open_temp(fd: int):  # noqa: ANN202 - a seam: tests simulate a full disk here
    return os.fdopen(fd, "wb")


def _atomic_write(path: Path, write: Callable) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the writer's pid in the name: another run into the same directory never deletes it (see below)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX)
        with _open_temp(fd) as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets a normal file's mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            error = OutputError(f"cannot write {path}: {exc.strerror or exc}")
            error.errno = exc.errno
            raise error from exc
        raise


def remove_stale_temp_files(directory: str | os.PathLike) -> int:
    """Delete the temporary files a killed process left under ``directory`` (recursively); returns how many.

    Only names the atomic writers make (``.<name>.<pid>.<random>.tmp``) are touched, and only those
    of a process that is gone: two runs into one directory never delete each other's files in flight
    (issue 13). Names without a pid (older versions) count as stale."""
    removed = 0
    root = Path(directory)
    if not root.is_dir():
        return 0
    for tmp in root.rglob(f".*{_TEMP_SUFFIX}"):
        if tmp.is_file() and tmp.name.count(".") >= 3 and not _writer_alive(tmp.name):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that made ``temp_name`` (its pid is the 3rd field from the right) still runs."""
    pid = temp_name.rsplit(".", 3)[1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_png(path: str | os.PathLike, array_or_image: np.ndarray | Image.Image) -> None:
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    _atomic_write(Path(path), lambda fh: im.save(fh, format="PNG"))

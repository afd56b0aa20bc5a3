"""What to do when a cache or store is damaged: a cache is a cache.

A corrupt or truncated SQLite cache, a stored vector of the wrong size or with NaN, OMNISEG_CACHE
naming a file, a read-only or locked cache, a truncated ``vectors.npy`` or a random FAISS index
file all ended in an internal error on every later run, or (NaN) in a silently wrong answer
(issue 13). The rule here: detect the damage where the data enters, then rebuild what can be
rebuilt, or run without the cache; either way say so in one ``omniseg: warning:`` line naming the
file (once per file and process), and never answer from damaged data.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
from pathlib import Path

import numpy as np

from omniseg.errors import CacheWarning

_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def warn_once(path: str | Path, what: str) -> None:
    """One warning line per (file, kind of problem) and process: '<file>: <what>'."""
    key = (str(path), what)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(f"cache {path}: {what}", CacheWarning, stacklevel=3)


def is_unusable(exc: BaseException) -> bool:
    """Errors that rebuilding cannot cure (locked, read-only, not a directory, no permission): run
    without the cache. Anything else from SQLite (not a database, malformed) is damage: rebuild."""
    if isinstance(exc, OSError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("locked", "readonly", "read-only", "unable to open", "busy", "permission"))


def valid_rows(vectors: np.ndarray) -> np.ndarray:
    """[N] True where a row is all finite (a NaN row would win or lose every comparison silently)."""
    return np.isfinite(vectors).all(axis=1) if vectors.size else np.ones(len(vectors), bool)


def all_finite(vectors: np.ndarray, block: int = 65_536) -> bool:
    """Every value finite, checked in blocks of rows (a memory-mapped store is streamed, not copied)."""
    return all(bool(np.isfinite(vectors[lo : lo + block]).all()) for lo in range(0, vectors.shape[0], block))


def remove_database(path: Path) -> None:
    """Delete a damaged SQLite file and its journal / WAL companions (OSError if it cannot be)."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


DatabaseError = sqlite3.DatabaseError

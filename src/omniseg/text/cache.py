"""On-disk cache of text embeddings keyed by (encoder, text), so a vocabulary is encoded once.

SQLite (stdlib) gives atomic, concurrent-safe writes: a crashed run never leaves a torn cache.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from omniseg.text import cache_health as health

T = TypeVar("T")


def default_cache_dir() -> Path:
    root = os.environ.get("OMNISEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "omniseg"
    )
    return Path(root)


LOCK_TIMEOUT_S = 10.0  # waiting longer for another process's lock: run without the cache


class EmbeddingCache:
    """Embeddings by (encoder, text) in ``directory/text_embeddings.sqlite``.

    Damage never reaches an answer (omniseg.text.cache_health): a file that is not a database or
    is malformed is deleted and rebuilt; a cache that cannot be used (OMNISEG_CACHE names a file,
    read-only, locked) is bypassed for the rest of the process; a stored vector of the wrong size
    or with NaN is recomputed and replaced. Each says so in one warning line naming the file.
    """

    def __init__(self, directory: str | Path, encoder_id: str) -> None:
        self.path = Path(directory) / "text_embeddings.sqlite"
        self.encoder_id = encoder_id
        self._conn: sqlite3.Connection | None = None
        self._disabled = False  # the cache proved unusable: every call computes
        self._lock = threading.RLock()  # one connection, shared by threads (the server's workers) in turn

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, check_same_thread=False)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS emb (encoder TEXT, text TEXT, vec BLOB, PRIMARY KEY (encoder, text))"
            )
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _guarded(self, operation: Callable[[], T], fallback: T) -> T:
        """``operation()`` on the database; on damage, rebuild it and retry once; when the cache
        cannot be used (or rebuilding fails), warn and return ``fallback`` from now on."""
        if self._disabled:
            return fallback
        for attempt in (1, 2):
            try:
                return operation()
            except (health.DatabaseError, OSError) as exc:
                self._close()
                if attempt == 1 and not health.is_unusable(exc):
                    try:
                        health.remove_database(self.path)
                    except OSError:
                        break
                    health.warn_once(self.path, f"damaged ({exc}); deleted and rebuilt")
                    continue
                reason = getattr(exc, "strerror", None) or str(exc)
                health.warn_once(self.path, f"cannot be used ({reason}); running without the cache")
                break
        self._disabled = True
        return fallback

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        def query() -> dict[str, np.ndarray]:
            db = self._db()
            found: dict[str, np.ndarray] = {}
            unique = list(dict.fromkeys(texts))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT text, vec FROM emb WHERE encoder=? AND text IN ({marks})", [self.encoder_id, *chunk]
                )
                for text, blob in rows:
                    if isinstance(blob, bytes) and len(blob) % 4 == 0:
                        found[text] = np.frombuffer(blob, dtype=np.float32)
                    else:
                        found[text] = np.zeros(0, np.float32)  # not a vector: checked (and redone) by the caller
            return found

        return self._guarded(query, {})

    def store(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        def insert() -> None:
            db = self._db()
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                    [
                        (self.encoder_id, t, np.ascontiguousarray(v, np.float32).tobytes())
                        for t, v in zip(texts, vectors, strict=False)
                    ],
                )

        self._guarded(insert, None)

    def get_or_compute(self, texts: list[str], compute: Callable[[Sequence[str]], np.ndarray], dim: int) -> np.ndarray:
        with self._lock:
            found = self.lookup(texts)
        bad = [t for t, v in found.items() if v.shape != (dim,) or not np.isfinite(v).all()]
        if bad:  # recomputed below and stored again, replacing the damaged rows
            where = getattr(self, "path", "in memory")
            health.warn_once(where, f"{len(bad)} stored vector(s) damaged (wrong size or NaN); recomputed")
            for text in bad:
                del found[text]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vectors = compute(missing)
            with self._lock:
                self.store(missing, vectors)
            found.update(zip(missing, vectors, strict=False))
        if not texts:
            return np.zeros((0, dim), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32)


class MemoryEmbeddingCache(EmbeddingCache):
    """The same interface in memory, holding at most ``max_texts`` embeddings (least recently used
    go first): for a server, which must not grow a file with every text a client sends."""

    def __init__(self, encoder_id: str, max_texts: int = 50_000) -> None:
        self.encoder_id = encoder_id
        self.max_texts = max_texts
        self._lock = threading.RLock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        for text in dict.fromkeys(texts):
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                found[text] = vector
        return found

    def store(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors, strict=False):
            self._vectors[text] = np.asarray(vector, np.float32)
            self._vectors.move_to_end(text)
        while len(self._vectors) > self.max_texts:
            self._vectors.popitem(last=False)

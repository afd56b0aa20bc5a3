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

import numpy as np


def default_cache_dir() -> Path:
    root = os.environ.get("OMNISEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "omniseg"
    )
    return Path(root)


class EmbeddingCache:
    def __init__(self, directory: str | Path, encoder_id: str) -> None:
        self.path = Path(directory) / "text_embeddings.sqlite"
        self.encoder_id = encoder_id
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()  # one connection, shared by threads (the server's workers) in turn

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS emb (encoder TEXT, text TEXT, vec BLOB, PRIMARY KEY (encoder, text))"
            )
        return self._conn

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
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
                found[text] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [
                    (self.encoder_id, t, np.ascontiguousarray(v, np.float32).tobytes())
                    for t, v in zip(texts, vectors, strict=False)
                ],
            )

    def get_or_compute(self, texts: list[str], compute: Callable[[Sequence[str]], np.ndarray], dim: int) -> np.ndarray:
        with self._lock:
            found = self.lookup(texts)
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

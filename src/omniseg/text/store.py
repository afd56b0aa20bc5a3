"""Memory-mapped embedding store for large vocabularies (10^5 .. 10^6 prompts and more).

The SQLite cache (text/cache.py) is right for a few thousand prompts; a million rows of 1.5 KiB
each are better kept as one float32 ``.npy`` file opened with ``mmap_mode="r"``: opening it costs
milliseconds, pages are read only when a search touches them, and RSS stays small.

A store holds the embeddings of one ordered list of texts by one encoder: its directory name is a
hash of (encoder id, texts), so a different encoder or a different list never reads stale rows.
Encoding runs in chunks; each finished chunk is flushed and ticked in ``done.npy`` before the next
starts, so an interrupted run resumes where it stopped. ``meta.json`` is written last and marks
the store complete.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omniseg import cancel
from omniseg.io import atomic_write_text
from omniseg.text.cache import default_cache_dir

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

DEFAULT_CHUNK = 8192
LARGE_PROMPTS = 20_000  # above this many texts, embeddings live in a memory-mapped store, not SQLite


def embed_texts(
    encoder: TextEncoder, texts: Sequence[str], progress: bool = True, root: str | Path | None = None
) -> tuple[np.ndarray, Path | None]:
    """Embeddings of texts and the store directory holding them (None for small lists).

    Small lists go through the encoder's own (SQLite-cached) path; larger ones through an
    EmbeddingStore under ``root`` (default: the cache directory), memory-mapped.
    """
    if len(texts) <= LARGE_PROMPTS:
        return encoder.encode(texts), None
    raw = getattr(encoder, "encode_uncached", None) or encoder.encode
    store = EmbeddingStore(root or default_cache_dir(), encoder.encoder_id, texts)
    return store.build(raw, encoder.dim, progress=progress), store.directory


def texts_key(encoder_id: str, texts: Sequence[str]) -> str:
    """sha256 over the encoder id and the texts in order (NUL-separated: a text never holds NUL)."""
    digest = hashlib.sha256(encoder_id.encode("utf-8") + b"\0")
    step = 65536
    for start in range(0, len(texts), step):
        digest.update("\0".join(texts[start : start + step]).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class EmbeddingStore:
    """Embeddings of ``texts`` by encoder ``encoder_id`` under ``root/stores/<encoder>-<key>/``."""

    def __init__(self, root: str | Path, encoder_id: str, texts: Sequence[str]) -> None:
        self.encoder_id = encoder_id
        self.texts = texts
        self.key = texts_key(encoder_id, texts)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)
        self.directory = Path(root) / "stores" / f"{safe}-{self.key[:20]}"
        self.vectors_path = self.directory / "vectors.npy"
        self.done_path = self.directory / "done.npy"
        self.meta_path = self.directory / "meta.json"

    @property
    def complete(self) -> bool:
        return self.meta_path.is_file() and self.vectors_path.is_file()

    def load(self) -> np.ndarray | None:
        """The [M, D] float32 embeddings, memory-mapped read-only; None until the store is complete."""
        if not self.complete:
            return None
        vectors = np.load(self.vectors_path, mmap_mode="r")
        return vectors if vectors.shape[0] == len(self.texts) else None

    def build(
        self,
        encode: Callable[[Sequence[str]], np.ndarray],
        dim: int,
        chunk: int = DEFAULT_CHUNK,
        progress: bool = True,
    ) -> np.ndarray:
        """Encode the missing chunks (resuming a previous run), then return ``load()``.

        Texts inside a chunk are encoded sorted by length, so a batch pads to similar lengths.
        """
        from tqdm import tqdm

        loaded = self.load()
        if loaded is not None:
            return loaded
        self.directory.mkdir(parents=True, exist_ok=True)
        n = len(self.texts)
        chunks = max(1, -(-n // chunk))
        vectors = self._open(self.vectors_path, (n, dim), np.float32)
        done = self._open(self.done_path, (chunks,), np.bool_)
        if done.shape != (chunks,) or vectors.shape != (n, dim):  # a run with another chunk size or encoder
            vectors = np.lib.format.open_memmap(self.vectors_path, mode="w+", dtype=np.float32, shape=(n, dim))
            done = np.lib.format.open_memmap(self.done_path, mode="w+", dtype=np.bool_, shape=(chunks,))
        todo = [c for c in range(chunks) if not done[c]]
        start_time = time.perf_counter()
        bar = tqdm(
            total=n,
            initial=n - sum(min(chunk, n - c * chunk) for c in todo),
            desc=f"encode {n:,} prompts",
            unit="prompt",
            disable=not progress,
            dynamic_ncols=True,
        )
        for c in todo:
            cancel.check()
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            part = list(self.texts[lo:hi])
            order = sorted(range(len(part)), key=lambda i: len(part[i]))
            encoded = np.asarray(encode([part[i] for i in order]), dtype=np.float32)
            block = np.empty_like(encoded)
            block[np.asarray(order, dtype=np.int64)] = encoded
            vectors[lo:hi] = block
            vectors.flush()
            done[c] = True
            done.flush()
            bar.update(hi - lo)
        bar.close()
        del vectors, done
        meta = {
            "encoder": self.encoder_id,
            "count": n,
            "dim": dim,
            "key": self.key,
            "seconds_this_run": round(time.perf_counter() - start_time, 1),
        }
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2))
        result = self.load()
        assert result is not None
        return result

    @staticmethod
    def _open(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        if path.is_file():
            try:
                return np.load(path, mmap_mode="r+")
            except ValueError:  # torn header of a run killed while creating the file
                pass
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

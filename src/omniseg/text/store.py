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
from omniseg.atomic import atomic_write_text
from omniseg.text import cache_health as health
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
    try:
        return store.build(raw, encoder.dim, progress=progress), store.directory
    except OSError as exc:  # OMNISEG_CACHE names a file, a read-only or full disk: encode in memory
        health.warn_once(store.directory, f"cannot be used ({exc.strerror or exc}); running without the store")
        return _encode_in_memory(raw, texts, encoder.dim), None


def _encode_in_memory(encode: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], dim: int) -> np.ndarray:
    out = np.empty((len(texts), dim), np.float32)
    for lo in range(0, len(texts), DEFAULT_CHUNK):
        cancel.check()
        out[lo : lo + DEFAULT_CHUNK] = encode(list(texts[lo : lo + DEFAULT_CHUNK]))
    return out


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

    def load(self, dim: int | None = None) -> np.ndarray | None:
        """The [M, D] float32 embeddings, memory-mapped read-only; None until the store is complete,
        or when it is damaged (truncated, wrong shape or type, NaN rows: one warning, then ``build``
        encodes it again). Rows are checked for NaN once per version of the file (its size and
        mtime are recorded in meta.json), not on every load."""
        if not self.complete:
            return None
        try:
            vectors = np.load(self.vectors_path, mmap_mode="r")
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (ValueError, OSError, EOFError) as exc:
            return self._damaged(f"cannot be read ({exc})")
        wanted = (len(self.texts), meta.get("dim") if dim is None else dim)
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape != wanted:
            return self._damaged(f"holds {vectors.dtype} {vectors.shape}, not float32 {wanted}")
        stamp = _stamp(self.vectors_path)
        if meta.get("verified") != stamp:
            if not health.all_finite(vectors):
                return self._damaged("holds NaN or infinite values")
            try:
                atomic_write_text(self.meta_path, json.dumps({**meta, "verified": stamp}, indent=2))
            except OSError:  # a read-only store: checked again next time
                pass
        return vectors

    def _damaged(self, why: str) -> np.ndarray | None:
        """Say so, and mark the store incomplete so ``build`` encodes it again; returns None (no rows)."""
        health.warn_once(self.vectors_path, f"{why}; encoded again")
        self.meta_path.unlink(missing_ok=True)
        self.done_path.unlink(missing_ok=True)
        return None

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

        loaded = self.load(dim)
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
        if not health.all_finite(np.load(self.vectors_path, mmap_mode="r")):  # an encoder gave NaN: no store
            raise ValueError(f"the text encoder returned NaN or infinite embeddings ({self.vectors_path})")
        meta = {
            "encoder": self.encoder_id,
            "count": n,
            "dim": dim,
            "key": self.key,
            "seconds_this_run": round(time.perf_counter() - start_time, 1),
            "verified": _stamp(self.vectors_path),
        }
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2))
        result = self.load(dim)
        assert result is not None
        return result

    @staticmethod
    def _open(path: Path, shape: tuple[int, ...], dtype: type) -> np.memmap:
        if path.is_file():
            try:
                opened = np.load(path, mmap_mode="r+")
                assert isinstance(opened, np.memmap)  # a .npy file opened with mmap_mode is a memmap
                return opened
            except (ValueError, EOFError):  # torn header of a run killed while creating the file, or truncated
                pass
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]

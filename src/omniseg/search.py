"""Nearest-neighbour search of region embeddings among a vocabulary's prompt embeddings.

Small vocabularies (up to ``EXACT_MAX`` prompts) are searched exactly: one matrix product.
Larger ones get a FAISS index, chosen by size (ESSNet searches class embeddings with
FAISS so inference cost does not grow with the number of classes):

- HNSW (``IndexHNSWFlat``, inner product) up to ``HNSW_MAX`` prompts: graph search, ~log(M) per query;
- above, HNSW over 8-bit scalar-quantised vectors (``IndexHNSWSQ``, the default) or IVF with 8-bit
  codes (``IndexIVFScalarQuantizer``, ``large_kind="ivf"``): a quarter of the memory of flat vectors,
  which matters at 10^6 prompts x 384 dims. Measured at 10^6 (BENCHMARKS.md): IVF needs to probe an
  eighth of its lists (+0.2 s per image) to reach 0.99 top-1 agreement; HNSW-SQ8 with efSearch
  512 agrees on 0.998 of 3,072 regions with real MiniLM embeddings in ~30 ms per image (efSearch 256:
  0.992, and 0.987 on the benchmark's 8 images); IVF builds in seconds where HNSW-SQ8 takes 3 to 12
  minutes (once: the index is persisted).

Either way the approximate candidates (``rerank`` per query) are re-scored exactly against the
stored float32 embeddings, so a returned score is always the true cosine and the top-1 is wrong
only if the true best prompt was not among the candidates at all.

``kind="flat"`` is FAISS's exact inner-product index (``IndexFlatIP``), for callers that search
many queries at once against a vocabulary that changes every call: the ESS head's k nearest
negative classes in training (ESSNet), which the paper finds with FAISS.

Indexes are persisted next to the memory-mapped embeddings (text/store.py), one file per index
configuration, and loaded on the next run instead of being rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from omniseg.errors import MissingResourceError
from omniseg.text import cache_health as health

EXACT_MAX = 20_000
HNSW_MAX = 300_000


@dataclass(frozen=True)
class SearchConfig:
    exact_max: int = EXACT_MAX  # prompts; up to this many, exact search
    hnsw_max: int = HNSW_MAX  # prompts; up to this many HNSW, above IVF
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 32
    rerank: int = 128  # approximate candidates per query, re-scored exactly
    large_kind: str = "hnsw_sq8"  # above hnsw_max: "hnsw_sq8" (HNSW over 8-bit codes) or "ivf" (IVF, 8-bit codes)
    large_ef_search: int = 512  # efSearch of hnsw_sq8: 0.998 top-1 agreement at 10^6 real prompts (BENCHMARKS.md)

    def kind(self, size: int) -> str:
        if size <= self.exact_max:
            return "exact"
        return "hnsw" if size <= self.hnsw_max else self.large_kind

    def ivf_lists(self, size: int) -> int:
        """~sqrt(M) lists as a power of two (1024 at 10^6 prompts), at least 40 training points each.

        FAISS suggests 4 to 16 sqrt(M) for the best speed at scale; sqrt(M) keeps k-means training
        under a minute of one CPU core at 10^6 prompts, and a search (nprobe of 1024 lists, ~30k
        8-bit codes per region) stays a few milliseconds."""
        return max(1, min(int(2 ** round(np.log2(max(16.0, np.sqrt(size))))), size // 40))


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise MissingResourceError("large vocabularies need FAISS: pip install faiss-cpu") from exc
    faiss.omp_set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 2)))
    return faiss


def _float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int, block: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k ([Q,k] scores, ids, best first), in blocks of rows so a
    memory-mapped [M, D] array is streamed, never copied whole.

    The products run in torch, not numpy: numpy's BLAS keeps its own threads spinning after a call,
    and on a 2-core machine the model's next torch op then waits ~60 ms for a core (measured: one
    segment call in three at 10^3-10^4 classes), which made small vocabularies slower than 10^5."""
    import torch

    q = torch.from_numpy(_float32(queries))
    m = vectors.shape[0]
    k = min(k, m)
    best_s = q.new_full((q.shape[0], 0), float("-inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
    for lo in range(0, m, block):
        rows = _float32(vectors[lo : lo + block])
        with warnings.catch_warnings():  # a read-only memory map, only read here: no copy needed
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            sims = q @ torch.from_numpy(rows).T
        part_s, part_i = sims.topk(min(k, sims.shape[1]), dim=1)
        best_s, best_i = torch.cat([best_s, part_s], 1), torch.cat([best_i, part_i + lo], 1)
        if best_s.shape[1] > k:
            best_s, keep = best_s.topk(k, dim=1)
            best_i = best_i.gather(1, keep)
    order = torch.sort(-best_s, dim=1, stable=True).indices  # ties: the order torch.topk gave
    return best_s.gather(1, order).numpy(), best_i.gather(1, order).numpy()


class PromptIndex:
    """Top-k prompts for each query vector; exact or FAISS-backed (see module doc)."""

    def __init__(self, vectors: np.ndarray, kind: str, index=None, config: SearchConfig | None = None) -> None:
        self.vectors = vectors  # [M, D] float32, possibly memory-mapped
        self.kind = kind
        self.index = index
        self.config = config or SearchConfig()
        self.build_seconds = 0.0
        self.loaded_from: Path | None = None

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        directory: str | Path | None = None,
        config: SearchConfig | None = None,
        tag: str = "",
        kind: str | None = None,
    ) -> PromptIndex:
        """Index ``vectors`` (loading a persisted index from ``directory`` when one matches).

        tag tells indexes of different embeddings in one directory apart (e.g. averaged templates).
        """
        config = config or SearchConfig()
        kind = kind or config.kind(vectors.shape[0])
        if kind == "exact":
            return cls(vectors, "exact", None, config)
        faiss = _faiss()
        path = None
        if directory is not None:
            path = Path(directory) / f"index-{kind}-{_config_key(kind, vectors.shape, config, tag)}.faiss"
            persisted = _read_index(faiss, path, vectors.shape) if path.is_file() else None
            if persisted is not None:
                out = cls(vectors, kind, persisted, config)
                out.loaded_from = path
                out._tune()
                return out
        start = time.perf_counter()
        builders = {"flat": _build_flat, "hnsw": _build_hnsw, "hnsw_sq8": _build_hnsw_sq8, "ivf": _build_ivf}
        index = builders[kind](faiss, vectors, config)
        out = cls(vectors, kind, index, config)
        out.build_seconds = time.perf_counter() - start
        out._tune()
        if path is not None:
            meta = {"kind": kind, "count": int(vectors.shape[0]), "config": asdict(config), "tag": tag}
            meta["build_seconds"] = round(out.build_seconds, 1)
            _persist(faiss, index, path, meta)
        return out

    def _tune(self) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.kind == "hnsw_sq8":
            self.index.hnsw.efSearch = self.config.large_ef_search
        elif self.kind == "ivf":
            self.index.nprobe = self.config.ivf_nprobe

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[Q,k] scores (exact inner products, best first) and prompt ids; ids are -1 where fewer exist."""
        q = _float32(queries)
        if self.kind == "exact":
            return exact_topk(q, self.vectors, k)
        if self.kind == "flat":  # FAISS's exact scores: nothing to re-score
            scores, ids = self.index.search(q, min(k, len(self)))
            return scores, ids.astype(np.int64)
        candidates = min(len(self), max(k, self.config.rerank))
        _, ids = self.index.search(q, candidates)
        return self._rerank(q, ids, k)

    def _rerank(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        flat = ids.reshape(-1)
        valid = flat >= 0
        unique, inverse = np.unique(np.where(valid, flat, 0), return_inverse=True)
        rows = _float32(self.vectors[unique])  # sorted ids: sequential reads of a memory map
        sims = np.einsum("qcd,qcd->qc", rows[inverse].reshape(*ids.shape, -1), q[:, None, :])
        sims = np.where(ids >= 0, sims, -np.inf)
        k = min(k, ids.shape[1])
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def _read_index(faiss, path: Path, shape: tuple[int, ...]):  # noqa: ANN001, ANN202 - faiss objects
    """A persisted index, or None (one warning; it is rebuilt) when the file is damaged or does not
    index these vectors (another count or dimension)."""
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, OSError, MemoryError) as exc:  # FAISS raises RuntimeError for a corrupt file
        health.warn_once(path, f"damaged ({str(exc).splitlines()[0][:120]}); rebuilt")
        return None
    if index.ntotal != shape[0] or index.d != shape[1]:
        health.warn_once(path, f"indexes {index.ntotal} x {index.d}, not {shape[0]} x {shape[1]}; rebuilt")
        return None
    return index


def _persist(faiss, index, path: Path, meta: dict) -> None:  # noqa: ANN001 - faiss objects
    """Write the index next to its store (atomically); a store that cannot be written is only said."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        health.warn_once(path, f"cannot be written ({str(exc).splitlines()[0][:120]}); rebuilt next run")


def _config_key(kind: str, shape: tuple[int, ...], config: SearchConfig, tag: str) -> str:
    params: tuple[int, ...]
    if kind in ("hnsw", "hnsw_sq8"):
        params = (config.hnsw_m, config.hnsw_ef_construction)
    else:
        params = (config.ivf_lists(shape[0]),)
    text = json.dumps([kind, list(shape), params, tag])
    return f"n{shape[0]}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _add_in_blocks(index, vectors: np.ndarray, block: int = 65_536) -> None:
    for lo in range(0, vectors.shape[0], block):
        index.add(_float32(vectors[lo : lo + block]))


def _build_flat(faiss, vectors: np.ndarray, config: SearchConfig):
    index = faiss.IndexFlatIP(vectors.shape[1])
    _add_in_blocks(index, vectors)
    return index


def _build_hnsw(faiss, vectors: np.ndarray, config: SearchConfig):
    index = faiss.IndexHNSWFlat(vectors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    _add_in_blocks(index, vectors)
    return index


def _build_hnsw_sq8(faiss, vectors: np.ndarray, config: SearchConfig):
    """HNSW over 8-bit scalar-quantised vectors: a quarter of HNSW-flat's memory (the exact
    re-scoring reads the float32 rows of the candidates only)."""
    qtype, metric = faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWSQ(vectors.shape[1], qtype, config.hnsw_m, metric)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(vectors.shape[0], size=min(vectors.shape[0], 65_536), replace=False))
    index.train(_float32(vectors[sample]))
    _add_in_blocks(index, vectors)
    return index


def _build_ivf(faiss, vectors: np.ndarray, config: SearchConfig):
    m, d = vectors.shape
    lists = config.ivf_lists(m)
    quantizer = faiss.IndexFlatIP(d)
    qtype, metric = faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexIVFScalarQuantizer(quantizer, d, lists, qtype, metric)
    # k-means on a sample: 64 points per list is plenty for the centroids and keeps training short
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(m, size=min(m, 64 * lists), replace=False))
    index.train(_float32(vectors[sample]))
    _add_in_blocks(index, vectors)
    return index

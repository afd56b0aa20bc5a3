"""Exact nearest-neighbour search over class/prompt embeddings (FAISS inner product).

The one place omniseg calls FAISS: the ESS head's k nearest negative classes in training
(seeds/004) and nearest-class inference per pixel. Vectors are float32 rows; the score is the inner
product (cosine for unit vectors). Without faiss installed the same answer comes from torch.
"""

from __future__ import annotations

import numpy as np
import torch


class InnerProductIndex:
    """Exact maximum-inner-product search over the rows of ``vectors`` [M, D]."""

    def __init__(self, vectors: torch.Tensor | np.ndarray) -> None:
        data = np.ascontiguousarray(_numpy(vectors), dtype=np.float32)
        if data.ndim != 2:
            raise ValueError(f"index vectors must be [M, D], got shape {data.shape}")
        self.size, self.dim = data.shape
        self._vectors = data
        try:
            import faiss
        except ImportError:  # pragma: no cover - faiss-cpu is a dependency
            self._index = None
        else:
            self._index = faiss.IndexFlatIP(self.dim)
            self._index.add(data)

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [Q, k] and row ids [Q, k] (int64) of the k best rows per query, best first."""
        q = np.ascontiguousarray(_numpy(queries), dtype=np.float32)
        k = min(k, self.size)
        if self._index is not None:
            scores, ids = self._index.search(q, k)
            return torch.from_numpy(scores), torch.from_numpy(ids.astype(np.int64))
        scores, ids = torch.from_numpy(q @ self._vectors.T).topk(k, dim=1)  # pragma: no cover
        return scores, ids  # pragma: no cover


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

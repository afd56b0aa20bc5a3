"""The server's door: any source ``omniseg.load`` takes, behind a Regions cache, named without paths."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Literal

from omniseg.backends.caching import CachingSource
from omniseg.registry import load
from omniseg.segmenter import Segmenter
from omniseg.source import RegionSource
from omniseg.text.cache import MemoryEmbeddingCache
from omniseg.text.encoder import MiniLMTextEncoder

log = logging.getLogger("omniseg.server")

REGIONS_CACHE_SIZE = 8


def server_segmenter(
    model: str | Path | None,
    max_size: int,
    masks: str | None = None,
    embed: str | None = None,
    runtime: Literal["torch", "onnx"] = "torch",
    device: str = "cpu",
    boxes: str | None = None,
) -> Segmenter:
    """Load any source ``omniseg.load`` takes, for serving: text embeddings cached in memory, not in a file."""

    encoder = MiniLMTextEncoder(cache=MemoryEmbeddingCache("all-MiniLM-L6-v2"))
    return load(
        model,
        text_encoder=encoder,
        max_size=max_size,
        masks=masks,
        embed=embed,
        runtime=runtime,
        device=device,
        boxes=boxes,
    )


def public_name(model_id: str) -> str:
    """The model's name without directories: 'masks=sam:/a/b/sam,embed=native' -> 'masks=sam:sam,embed=native'."""
    parts = []
    for part in model_id.split(","):
        head, _, path = part.rpartition(":") if ":" in part else part.rpartition("=")
        parts.append(f"{head}{part[len(head)] if head else ''}{Path(path).name if '/' in path else path}")
    return ",".join(parts)


def serving_door(base: Segmenter, size: int = REGIONS_CACHE_SIZE) -> Segmenter:
    """The door the routes use: ``base``'s source behind a Regions cache of the last ``size`` images,
    named without the directories of its path (clients never see file-system paths). A source with no
    Regions of its own (a concept source such as SAM 3, which keeps its own image encodings; one task's
    model: SAM 2 clicks) has nothing to cache: the same model, under the public name."""
    if not isinstance(base.source, RegionSource):
        named = copy.copy(base.source)
        named.name = public_name(base.model_id)
        return Segmenter(named, base.text_encoder)
    door = Segmenter(CachingSource(base.region_source, size=size, name=public_name(base.model_id)), base.text_encoder)
    door.top_k, door.search = base.top_k, base.search
    return door

"""omniseg: universal, open-vocabulary image segmentation on an ordinary CPU.

import omniseg
seg = omniseg.load()
result = seg.segment("street.jpg", classes=["sky", "road", "red car"])
result.label_map, result.classes, result.overlay(), result.to_json()

The names below are imported on first use (PEP 562), so ``import omniseg`` (and ``omniseg
--help``) does not load torch; ``omniseg.load`` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from omniseg.errors import InputError, MissingResourceError, OmnisegError

if TYPE_CHECKING:
    from omniseg.regions import Regions
    from omniseg.registry import load
    from omniseg.results import SemanticResult
    from omniseg.segmenter import Segmenter
    from omniseg.source import RegionSource
    from omniseg.vocab import Vocabulary

__version__ = "0.1.0"

_LAZY = {
    "Regions": "omniseg.regions",
    "RegionSource": "omniseg.source",
    "SemanticResult": "omniseg.results",
    "Segmenter": "omniseg.segmenter",
    "Vocabulary": "omniseg.vocab",
    "load": "omniseg.registry",
}

__all__ = [
    "InputError",
    "MissingResourceError",
    "OmnisegError",
    "RegionSource",
    "Regions",
    "SemanticResult",
    "Segmenter",
    "Vocabulary",
    "__version__",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omniseg' has no attribute {name!r}")

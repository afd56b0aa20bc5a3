"""A region source that remembers the Regions of the last few images it saw, in front of any other.

The server puts one in front of its source, so a click, a new text query or a new phrase on the
image the web page already sent costs no model run. Images are keyed by their pixels (a hash of
the array and its shape), never by a file name.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from omniseg.regions import Regions
from omniseg.source import PromptableSource, RegionSource

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click


def image_key(array: np.ndarray) -> bytes:
    """A 16-byte digest of the pixels and the shape."""
    return hashlib.blake2b(array.tobytes(), digest_size=16, person=str(array.shape).encode()[:16]).digest()


class CachingSource:
    """``source`` with its ``regions()`` answers remembered for the last ``size`` images (thread-safe).

    ``name``: what results report (default: the source's). Every other attribute (text encoder,
    class temperature, label vocabulary) is the wrapped source's; prompted regions (clicks, boxes)
    depend on the prompts and are not cached.
    """

    def __init__(self, source: RegionSource, size: int, name: str | None = None) -> None:
        self.source = source
        self.name = name or source.name
        self.size = size
        self._cache: OrderedDict[bytes, Regions] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # only called for attributes this wrapper lacks
        if name == "source":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def regions(self, image: np.ndarray) -> Regions:
        key = image_key(image)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        regions = self.source.regions(image)
        with self._lock:
            self._cache[key] = regions
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return regions

    def prompt_regions(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions:
        if isinstance(self.source, PromptableSource):
            return self.source.prompt_regions(image, clicks, boxes)
        return self.regions(image)

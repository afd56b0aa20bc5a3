"""A region source that remembers the Regions of the last few images it saw, in front of any other.

The server puts one in front of its source, so a click, a new text query or a new phrase on the
image the web page already sent costs no model run. Images are keyed by their pixels (a hash of
the array and its shape), never by a file name.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from omniseg.regions import Regions
from omniseg.source import PromptableSource, RegionSource

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click


Value = TypeVar("Value")


def image_key(array: np.ndarray) -> bytes:
    """A 16-byte digest of the pixels and the shape."""
    return hashlib.blake2b(array.tobytes(), digest_size=16, person=str(array.shape).encode()[:16]).digest()


class Recent(Generic[Value]):
    """The values computed for the last ``size`` keys (thread-safe; a value is computed outside the lock,
    so two threads asking for one new key may both compute it, and the last one is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        found = self.peek(key)
        return found if found is not None else self.put(key, compute())

    def peek(self, key: Hashable) -> Value | None:
        """The value kept under ``key`` (now the most recent), or None."""
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def put(self, key: Hashable, value: Value) -> Value:
        """Keep ``value`` under ``key``, dropping the least recently used beyond ``size``; returns it."""
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


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
        self._cache: Recent[Regions] = Recent(size)

    def __getattr__(self, name: str) -> Any:  # only called for attributes this wrapper lacks
        if name == "source":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def regions(self, image: np.ndarray) -> Regions:
        return self._cache.get(image_key(image), lambda: self.source.regions(image))

    def prompt_regions(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions:
        if isinstance(self.source, PromptableSource):
            return self.source.prompt_regions(image, clicks, boxes)
        return self.regions(image)

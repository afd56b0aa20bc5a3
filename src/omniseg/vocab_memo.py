"""The door's memory of the vocabularies it built from names, strings or files (``VocabularyMemo``).

Passing the same 100,000-name list (or the same ``vocab=`` file) call after call would otherwise
parse, embed (a store lookup keyed by every text) and index it on every call; the memo makes the
natural call cost what a prebuilt Vocabulary costs.

How each form is recognised, and why it is safe:

- **a file**: by resolved path, size and modification time (an edited file is read again);
- **a string**: by itself (hashed once per string object);
- **a list of names**: hashing a tuple of every name on every call cost as much as a few
  semantic maps of 100 classes (the key was rebuilt and hashed per call), and a cheap fingerprint
  alone (length, ``id`` of the list, a sample of names) is not safe: a caller may edit the list
  in place, keep its length and ends, or drop it so that a new list reuses its ``id``. So the
  memo keeps **its own copy** of the names; the length and a few sampled names only pick the one
  entry to compare with, and a call matches it only when its names equal that copy element by
  element. The comparison stops at pointer equality for the same string objects (the usual case:
  the same list, or a copy of it), ~0.2 ms for 10^5 names, so an edit in place, or any other list,
  is always seen and rebuilt, never mistaken for the memoised one.

Vocabulary objects are never memoised: the caller owns them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from omniseg.backends.caching import Recent
from omniseg.vocab import Vocabulary

SAMPLED_NAMES = 8  # names in a list's fingerprint besides its length (the first, the last, evenly between)


@dataclass(frozen=True)
class _Entry:
    vocabulary: Vocabulary
    names: list[str] | None = None  # a list entry's own copy of the names it was built from


def _fingerprint(names: Sequence) -> tuple:
    """Length and a few sampled names: picks the entry to compare with, never decides a match alone."""
    n = len(names)
    positions = sorted({(n - 1) * i // (SAMPLED_NAMES - 1) for i in range(SAMPLED_NAMES)}) if n else []
    return ("names", n, *(str(names[i]) for i in positions))


class VocabularyMemo:
    """The last ``size`` vocabularies the door built (least recently used dropped first); thread-safe."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._built: Recent[_Entry] = Recent(size)

    def get(self, key: Hashable, build: Callable[[], Vocabulary]) -> Vocabulary:
        """The vocabulary memoised under ``key`` (a file's or a string's), else ``build()`` it and keep it."""
        return self._built.get(key, lambda: _Entry(build())).vocabulary

    def names(self, names: Sequence, build: Callable[[list[str]], Vocabulary]) -> Vocabulary:
        """The vocabulary of these names (compared element by element with the memo's own copy), else
        ``build(texts)`` from a fresh list of their ``str`` and keep that list as the copy."""
        given = names if isinstance(names, list) else list(names)
        key = _fingerprint(given)
        entry = self._built.peek(key)
        if entry is not None:
            if entry.names == given:  # the same string objects: pointer comparisons only
                return entry.vocabulary
        texts = [str(name) for name in given]  # a private copy: the caller's later edits cannot reach it
        if entry is not None and entry.names == texts:  # names that are not str, e.g. numpy strings
            return entry.vocabulary
        return self._built.put(key, _Entry(build(texts), texts)).vocabulary

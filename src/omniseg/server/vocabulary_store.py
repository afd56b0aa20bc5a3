"""The vocabularies a server accepts by name: the shipped ones, parsed and embedded once, shared by all requests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from omniseg import vocabularies
from omniseg.errors import InputError
from omniseg.segmenter import Segmenter
from omniseg.vocab import Vocabulary

log = logging.getLogger("omniseg.server")


def shipped_vocabularies() -> dict[str, Path]:
    """Name -> file of the vocabularies shipped with omniseg: the one place the server looks them up.

    The server accepts only these names, never a path from a client.
    """
    return {name: vocabularies.vocabulary_path(name) for name in vocabularies.names()}


class VocabularyStore:
    """Shipped vocabularies by name, parsed and embedded once, then shared by all requests."""

    def __init__(self, files: Mapping[str, Path], max_classes: int) -> None:
        self.files = dict(files)
        self.max_classes = max_classes
        self._loaded: dict[str, Vocabulary] = {}
        self._lock = threading.Lock()

    def _parse(self, name: str) -> Vocabulary:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Vocabulary.from_file(self.files[name])
            return self._loaded[name]

    def listing(self) -> list[dict]:
        out = []
        for name in sorted(self.files):
            vocab = self._parse(name)
            if len(vocab) <= self.max_classes:
                out.append({"name": name, "classes": len(vocab), "preview": vocab.classes[:12]})
        return out

    def get(self, name: str, segmenter: Segmenter) -> Vocabulary:
        if name not in self.files:
            known = ", ".join(sorted(self.files)) or "none on this server"
            raise InputError(f"unknown vocabulary {name!r} (shipped: {known})")
        vocab = self._parse(name)
        if len(vocab) > self.max_classes:
            raise InputError(f"vocabulary {name!r} has {len(vocab)} classes, over this server's {self.max_classes}")
        with self._lock:  # embed once; later requests share the embedded vocabulary
            return segmenter.vocabulary(vocab)

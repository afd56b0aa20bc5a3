"""The concepts a model knows (its training names): what an answer must beat to be more than "unknown".

An answer is "unknown" when another known concept explains the pixels (or the region) better than
the asked class (tasks.semantic confidence). The alternatives are the model's training names minus
those that are the asked class under another name: text near-duplicates (tasks.semantic
.SAME_CONCEPT_COSINE, "aeroplane" / "airplane") and WordNet relatives ("woman" asked: "person" is
no alternative, a woman *is* a person; "animal" asked: "dog" is a kind of animal). The relatives
ship with the model (``trained_classes.json``: kinds and ancestors per name,
scripts/make_trained_classes.py). "background" is never an alternative: COCO trained it as the
catch-all of unannotated pixels, and every region resembles it a little.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from omniseg.recognition.wordnet import base_forms

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

NO_OBJECT_NAME = "background"


def name_forms(text: str) -> set[str]:
    """WordNet-style lemma keys a name or phrase may stand for: its words, their suffix runs ("red car"
    -> "red_car", "car") and pairs, with noun base forms ("women" -> "woman")."""
    words = re.findall(r"[a-z][a-z0-9-]*", text.lower())
    runs = {"_".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + 3) + 1)}
    runs |= {"_".join(words[i:]) for i in range(len(words))}
    return runs | {form for run in runs for form in base_forms(run)}


@dataclass
class KnownConcepts:
    names: list[str]
    related: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> its kinds and ancestors
    _embeddings: torch.Tensor | None = field(default=None, repr=False)
    # Per name, once: the lemma forms whose asking makes it no alternative (its own forms, its kinds
    # and ancestors); alternatives() runs per image.
    _blocked_by: list[frozenset[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._blocked_by = [frozenset(name_forms(name)) | self.related.get(name, frozenset()) for name in self.names]

    def embeddings(self, encoder: TextEncoder) -> torch.Tensor:
        if self._embeddings is None:
            self._embeddings = torch.from_numpy(np.asarray(encoder.encode(self.names), np.float32))
        return self._embeddings

    def alternatives(self, encoder: TextEncoder, asked: Iterable[str] = ()) -> torch.Tensor | None:
        """[R', D]: the known concepts that are alternatives to every asked name (see the module doc)."""
        forms: set[str] = set()
        for text in asked:
            forms |= name_forms(text)
        keep = [
            i
            for i, name in enumerate(self.names)
            if name.casefold() != NO_OBJECT_NAME and not (self._blocked_by[i] & forms)
        ]
        if not keep:
            return None
        return self.embeddings(encoder)[keep]

    def no_object(self, encoder: TextEncoder) -> torch.Tensor | None:
        """[1, D] the "background" concept when the model trained it: what an instance must beat."""
        rows = [i for i, name in enumerate(self.names) if name.casefold() == NO_OBJECT_NAME]
        return self.embeddings(encoder)[rows[:1]] if rows else None


def read_known(data: dict) -> KnownConcepts:
    """``trained_classes.json`` -> KnownConcepts (kinds and ancestors merged per name)."""
    names: Sequence[str] = data["classes"]
    related = {
        name: frozenset(data.get("kinds", {}).get(name, ())) | frozenset(data.get("ancestors", {}).get(name, ()))
        for name in names
    }
    return KnownConcepts(list(names), related)

"""Vocabulary classes -> the ImageNet-1k classes they cover, for the frozen recognizer.

A class is scored by the frozen ImageNet head as the probability mass of the ImageNet classes that
fall under it in WordNet (``imagenet_concepts.json``, built by scripts/make_imagenet_concepts.py):
"dog" covers the 120 dog breeds, "shoes" sandal / loafer / clog / running shoe / cowboy boot.
A name is looked up as a WordNet lemma together with its base forms by WordNet's noun morphology
("jeans" -> "jean", "pants" -> "pant"), else by its last words ("red car" -> "car"). Names WordNet
does not know at all fall back to text similarity with the ImageNet class names
(``TEXT_FALLBACK_MIN_COSINE``). Classes with no cover ("sky", "road", "skin") keep the trained
score alone. A class with synonyms covers the union of its synonyms' covers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omniseg.recognition.wordnet import base_forms

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

NUM_IMAGENET_CLASSES = 1000
TABLE_PATH = Path(__file__).with_name("imagenet_concepts.json")
IMAGENET_NAMES_PATH = Path(__file__).parents[1] / "vocabularies" / "imagenet1k.txt"
# WordNet lexicographer files of things one can see; other senses ("shoes" as in "in his shoes",
# noun.state) are ignored when a name is resolved.
VISUAL_LEXNAMES = frozenset(
    {
        "noun.Tops",
        "noun.animal",
        "noun.artifact",
        "noun.body",
        "noun.food",
        "noun.location",
        "noun.object",
        "noun.person",
        "noun.phenomenon",
        "noun.plant",
        "noun.substance",
    }
)
# Text fallback: a name WordNet does not know at all borrows the ImageNet classes whose names are at
# least this close in the text encoder's space (MiniLM: "hoodie" ~ "sweatshirt" 0.71 is below it;
# known nouns never fall back: "water" ~ "water bottle" 0.72, "hair" ~ "hair wig" 0.74).
TEXT_FALLBACK_MIN_COSINE = 0.8
INHERITED_WEIGHT = 0.5


class ConceptTable:
    """The shipped lemma -> ImageNet classes table, with WordNet-style lookup of free-text names."""

    def __init__(self, path: Path = TABLE_PATH) -> None:
        table = json.loads(path.read_text(encoding="utf-8"))
        self.wnids: list[str] = table["wnids"]
        self.covering: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in table["covering"].items()}
        self.inherited: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in table["inherited"].items()}
        self.visual: frozenset[str] = frozenset(table["visual"])

    def lookup(self, name: str) -> dict[int, float] | None:
        """ImageNet classes a name covers, with weights (1 = below the name in WordNet, INHERITED_WEIGHT
        = a sibling under its parent); {} for a visual WordNet noun that covers none (e.g. "sky");
        None when WordNet does not know the name at all."""
        words = name.strip().lower().replace("-", " ").split()
        for start in range(len(words)):  # "red car" -> "car"; "the dog" -> "dog"
            found = self._lookup_lemma("_".join(words[start:]))
            if found is not None:
                return found
        return None

    def _lookup_lemma(self, lemma: str) -> dict[int, float] | None:
        """The union over the lemma and its base forms: "pants" alone is bloomers in WordNet, its base
        form "pant" is trousers (and covers jeans). A class both covered and inherited counts as covered."""
        known = False
        found: dict[int, float] = {}
        borrowed: dict[int, float] = {}
        for candidate in (lemma, *base_forms(lemma)):
            found.update(dict.fromkeys(self.covering.get(candidate, ()), 1.0))
            borrowed.update(dict.fromkeys(self.inherited.get(candidate, ()), INHERITED_WEIGHT))
            known = known or candidate in self.covering or candidate in self.visual
        if not known:
            return None
        return {**borrowed, **found}


# An ImageNet class is named in a large vocabulary by the lemmas that cover at most this many
# classes ("tabby", "cat"), not by its far ancestors ("animal", "entity").
SPECIFIC_MAX_CLASSES = 8


@functools.lru_cache(maxsize=1)
def specific_lemmas() -> tuple[tuple[str, ...], ...]:
    """Per ImageNet class, the WordNet lemmas (spaces, lower case) specific to it, plus its readable name."""
    table = concept_table()
    names: list[set[str]] = [{name.lower()} for name in imagenet_names()]
    for lemma, classes in table.covering.items():
        if len(classes) <= SPECIFIC_MAX_CLASSES:
            for j in classes:
                names[j].add(lemma.replace("_", " ").lower())
    return tuple(tuple(sorted(n)) for n in names)


@functools.lru_cache(maxsize=1)
def concept_table() -> ConceptTable:
    return ConceptTable()


@functools.lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    lines = IMAGENET_NAMES_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


class ConceptMapper:
    """Names -> rows of a [K, 1000] 0/1 cover matrix, memoised per name (a vocabulary of 10^6 names
    maps only the classes an image's regions propose, so the cost per image stays flat)."""

    def __init__(self, text_encoder: TextEncoder | None = None, min_cosine: float = TEXT_FALLBACK_MIN_COSINE) -> None:
        self.table = concept_table()
        self.text_encoder = text_encoder
        self.min_cosine = min_cosine
        self._memo: dict[str, dict[int, float]] = {}
        self._imagenet_embeddings: np.ndarray | None = None

    def classes_of(self, name: str) -> dict[int, float]:
        """ImageNet class -> weight for one name (see ConceptTable.lookup), text fallback included."""
        if name not in self._memo:
            found = self.table.lookup(name)
            if found is None and self.text_encoder is not None:
                found = dict.fromkeys(self._text_fallback(name), 1.0)
            self._memo[name] = found or {}
        return self._memo[name]

    def _text_fallback(self, name: str) -> tuple[int, ...]:
        assert self.text_encoder is not None
        if self._imagenet_embeddings is None:
            self._imagenet_embeddings = self.text_encoder.encode(list(imagenet_names()))
        query = self.text_encoder.encode([name])[0]
        cos = self._imagenet_embeddings @ query
        return tuple(int(i) for i in np.flatnonzero(cos >= self.min_cosine))

    def cover_matrix(self, synonyms: Sequence[Sequence[str]]) -> np.ndarray:
        """[K, 1000] float32: the weight (max over class k's synonyms) with which k covers ImageNet class j."""
        out = np.zeros((len(synonyms), NUM_IMAGENET_CLASSES), np.float32)
        for k, names in enumerate(synonyms):
            for name in names:
                for j, weight in self.classes_of(name).items():
                    out[k, j] = max(out[k, j], weight)
        return out

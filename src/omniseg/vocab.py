"""Vocabulary: K classes, each with one or more prompts (synonyms x templates).

File format (as OpenSeg and FC-CLIP publish): one class per line, synonyms comma-separated;
the first synonym names the class. Blank lines and lines starting with '#' are skipped.
Scoring takes the max over a class's prompts (OpenSeg's synonym ensembling, seeds/003 sec. 4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omniseg.errors import InputError

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

DEFAULT_TEMPLATES: tuple[str, ...] = ("{}",)


@dataclass
class Vocabulary:
    synonyms: list[list[str]]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    embeddings: np.ndarray | None = field(default=None, repr=False)  # [M, D] one row per prompt
    prompt_to_class: np.ndarray | None = field(default=None, repr=False)  # [M] class index

    def __post_init__(self) -> None:
        cleaned = [[s.strip() for s in names if s.strip()] for names in self.synonyms]
        if not cleaned or any(not names for names in cleaned):
            raise InputError("vocabulary is empty or has a class with no name")
        self.synonyms = cleaned

    @property
    def classes(self) -> list[str]:
        return [names[0] for names in self.synonyms]

    def __len__(self) -> int:
        return len(self.synonyms)

    @classmethod
    def from_names(cls, names: Sequence[str], templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> Vocabulary:
        """Each name is one class; a name may itself hold synonyms separated by '|'."""
        return cls([str(n).split("|") for n in names], templates)

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
            raise InputError(f"vocabulary file not found: {path}")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: Windows editors add a BOM
        except UnicodeDecodeError as exc:
            raise InputError(f"vocabulary file is not UTF-8 text: {path}") from exc
        rows = [line.split(",") for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not rows:
            raise InputError(f"vocabulary file has no classes: {path}")
        return cls(rows, templates)

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

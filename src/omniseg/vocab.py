"""Vocabulary: K classes, each with one or more prompts (synonyms x templates).

File format (as OpenSeg and FC-CLIP publish): one class per line, synonyms comma-separated;
the first synonym names the class. Blank lines and lines starting with '#' are skipped.
Scoring takes the max over a class's prompts (OpenSeg's synonym ensembling, sec. 4.4).

Templates (OMG-Seg, ViLD): each name can be put into several templates ("a photo of a
{}."). With ``template_mode="average"`` (the default) a name's template embeddings are averaged
into one vector (renormalised), then synonyms are max-ensembled; with ``"max"`` every
(synonym, template) prompt is its own row and the max runs over all of them. A file sets both for
itself with setting lines ``#! templates: a photo of a {}. | a {} in the scene`` and
``#! template_mode: max``; callers (``--templates``) can override. TEMPLATE_SETS names a few sets.

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
from omniseg.search import PromptIndex
from omniseg.text.names import MAX_NAME_CHARS, name_problem
from omniseg.text.store import embed_texts
from omniseg.vocabularies import resolve

if TYPE_CHECKING:
    from omniseg.search import PromptIndex, SearchConfig
    from omniseg.text.encoder import TextEncoder

DEFAULT_TEMPLATES: tuple[str, ...] = ("{}",)
TEMPLATE_MODES = ("average", "max")
# Named template sets for --templates. "scene": short prompts in the spirit of ViLD/OMG-Seg's
# ensembles, worded for regions of a scene rather than whole-image classification.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "plain": DEFAULT_TEMPLATES,
    "photo": ("a photo of a {}.",),
    "scene": (
        "{}",
        "a photo of a {}.",
        "a photo of the {}.",
        "there is a {} in the scene.",
        "a {} in the scene.",
        "a close-up photo of a {}.",
        "a photo of a small {}.",
        "a photo of a large {}.",
    ),
}
_MARKER = re.compile(r"\s*\[(stuff|thing)\]\s*$", re.IGNORECASE)
_SETTING = re.compile(r"^#!\s*([a-z_]+)\s*:\s*(.*)$")


def parse_templates(text: str) -> tuple[str, ...]:
    """'scene' (a TEMPLATE_SETS name) or 'a photo of a {}. | {}' ('|'-separated, each with one '{}')."""
    text = text.strip()
    if text in TEMPLATE_SETS:
        return TEMPLATE_SETS[text]
    templates = tuple(t.strip() for t in text.split("|") if t.strip())
    if not templates or not all(_one_slot(t) for t in templates):
        raise InputError(
            f"templates must be one of {', '.join(TEMPLATE_SETS)} or '|'-separated texts with one '{{}}' each: {text!r}"
        )
    return templates


def _one_slot(template: str) -> bool:
    try:
        return template.count("{}") == 1 and template.format("\0").count("\0") == 1
    except (IndexError, KeyError, ValueError):
        return False


def check_template_mode(mode: str) -> str:
    if mode not in TEMPLATE_MODES:
        raise InputError(f"template mode must be one of {', '.join(TEMPLATE_MODES)}, got {mode!r}")
    return mode


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
    """Bounded length, no control or invisible characters (omniseg.text.names); no two classes with
    the same name (any case). One pass over all the text first: a 10^6-name vocabulary is checked in
    well under a second."""
    joined = " ".join(" ".join(names) for names in synonyms)
    if not joined.isprintable() or max(len(n) for names in synonyms for n in names) > MAX_NAME_CHARS:
        for k, names in enumerate(synonyms):
            for name in names:
                problem = name_problem(name)
                if problem:
                    raise InputError(f"vocabulary class {k + 1} {problem}")
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
    template_mode: str = "average"  # "average": a name's templates averaged; "max": every prompt its own row
    store_dir: Path | None = field(default=None, repr=False, compare=False)  # where large embeddings (+ index) live
    _index: PromptIndex | None = field(default=None, repr=False, compare=False)
    _offsets: np.ndarray | None = field(default=None, repr=False, compare=False)
    _classes: list[str] | None = field(default=None, repr=False, compare=False)
    # Tables computed from the vocabulary once and reused by every image (e.g. the frozen recognizer's
    # ImageNet cover, omniseg.recognition.fusion).
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_template_mode(self.template_mode)
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
        """First synonym of each class (cached: a 10^6-class vocabulary asks for it on every image)."""
        if self._classes is None or len(self._classes) != len(self.synonyms):
            self._classes = [names[0] for names in self.synonyms]
        return self._classes

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
        names = [n for n in text.removeprefix("\ufeff").split(",") if n.strip()]  # a pasted BOM is not a name
        if not names:
            raise InputError("--classes is empty: give comma-separated class names, e.g. 'sky,road,car'")
        return cls.from_names(names, templates)

    @classmethod
    def from_file(
        cls, path: str | Path, templates: tuple[str, ...] | None = None, template_mode: str | None = None
    ) -> Vocabulary:
        """Read a vocabulary file. templates / template_mode override the file's ``#!`` settings."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"vocabulary file {'is not a regular file' if path.exists() else 'not found'}: {path}")
        try:
            # -sig: Windows editors add a BOM. Lines end at \n (or \r\n) only: splitlines() would also
            # split at U+2028, U+0085, ... inside a line, and class i would no longer be line i.
            lines = path.read_text(encoding="utf-8-sig").split("\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"vocabulary file is not UTF-8 text: {path}") from exc
        except OSError as exc:  # permission denied, an I/O error
            raise InputError(f"vocabulary file cannot be read ({exc.strerror or exc}): {path}") from exc
        with _bulk():
            return cls._parse_lines(lines, path, templates, template_mode)

    @classmethod
    def _parse_lines(
        cls, lines: list[str], path: str | Path, templates: tuple[str, ...] | None, template_mode: str | None
    ) -> Vocabulary:
        settings: dict[str, str] = {}
        synonyms: list[list[str]] = []
        stuff: list[bool] = []
        for line in lines:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                match = _SETTING.match(stripped)
                if match:
                    settings[match.group(1)] = match.group(2)
                continue
            text, flag = split_marker(line) if "[" in line else (line, False)
            synonyms.append(text.split(","))
            stuff.append(flag)
        if not synonyms:
            raise InputError(f"vocabulary file has no classes: {path}")
        unknown = set(settings) - {"templates", "template_mode"}
        if unknown:
            raise InputError(f"unknown setting in {path}: #! {sorted(unknown)[0]} (known: templates, template_mode)")
        if templates is None:
            templates = parse_templates(settings["templates"]) if "templates" in settings else DEFAULT_TEMPLATES
        mode = template_mode or settings.get("template_mode", "average").strip()
        return cls(synonyms, templates, stuff=stuff, template_mode=check_template_mode(mode))

    @classmethod
    def load(
        cls, name_or_path: str | Path, templates: tuple[str, ...] | None = None, template_mode: str | None = None
    ) -> Vocabulary:
        """A shipped vocabulary by name (``ade150``, see ``omniseg vocab list``) or a vocabulary file."""

        return cls.from_file(resolve(name_or_path), templates, template_mode)

    def prompts(self) -> tuple[list[str], np.ndarray]:
        """Every (synonym, template) text, class by class, synonym by synonym, template by template."""
        counts = np.fromiter((len(names) for names in self.synonyms), np.int64, len(self.synonyms))
        if self.templates == DEFAULT_TEMPLATES:  # fast path for 10^6-name vocabularies
            texts = [name for names in self.synonyms for name in names]
            return texts, np.repeat(np.arange(len(self.synonyms), dtype=np.int64), counts)
        texts = [template.format(name) for names in self.synonyms for name in names for template in self.templates]
        owner = np.repeat(np.arange(len(self.synonyms), dtype=np.int64), counts * len(self.templates))
        return texts, owner

    def embed(self, encoder: TextEncoder, progress: bool = True) -> Vocabulary:
        """Fill embeddings [M, D] and prompt_to_class [M].

        M = number of synonyms (template_mode "average": a name's templates averaged and
        renormalised) or synonyms x templates ("max"). Up to omniseg.text.store.LARGE_PROMPTS
        texts go through the SQLite cache; larger vocabularies through a memory-mapped store
        (encoded once, with a progress bar, resumable).
        """

        texts, owner = self.prompts()
        vectors, self.store_dir = embed_texts(encoder, texts, progress=progress)
        t = len(self.templates)
        if self.template_mode == "average" and t > 1:
            mean = np.asarray(vectors, np.float32).reshape(-1, t, vectors.shape[1]).mean(axis=1)
            vectors = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            owner = owner[::t]
        self.embeddings = vectors
        self.prompt_to_class = owner
        self._index = None
        return self

    def index(self, config: SearchConfig | None = None) -> PromptIndex:
        """The search index over the prompt embeddings (exact or FAISS by size), built once per
        Vocabulary and persisted next to a large vocabulary's embedding store."""

        assert self.embeddings is not None, "embed() the vocabulary first"
        if self._index is None or (config is not None and self._index.config != config):
            tag = f"{self.template_mode}:{'|'.join(self.templates)}" if len(self.templates) > 1 else ""
            self._index = PromptIndex.build(self.embeddings, self.store_dir, config, tag=tag)
        return self._index

    def class_prompt_offsets(self) -> np.ndarray:
        """[K+1]: class k's prompts are rows offsets[k]:offsets[k+1] (prompts are grouped by class)."""
        assert self.prompt_to_class is not None, "embed() the vocabulary first"
        if self._offsets is None or self._offsets.shape[0] != len(self) + 1:
            self._offsets = np.searchsorted(self.prompt_to_class, np.arange(len(self) + 1), side="left")
        return self._offsets

    def restricted(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prompt embeddings [m, D] of the given classes and their owner [m] as an index into ``classes``."""
        assert self.embeddings is not None
        offsets = self.class_prompt_offsets()
        starts, ends = offsets[classes], offsets[classes + 1]
        counts = ends - starts
        rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return np.asarray(self.embeddings[rows], np.float32), np.repeat(np.arange(len(classes)), counts)

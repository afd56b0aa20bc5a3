"""Vocabularies shipped with omniseg: ``<name>.txt`` files in this folder (the vocabulary file format
of omniseg.vocab). ``--vocab NAME`` and ``Vocabulary.load(NAME)`` find them by name; a path works too.

A file's first comment line describes it (``omniseg vocab list`` shows it). ``#!`` lines are
settings (see omniseg.vocab): ``#! templates: ...`` and ``#! template_mode: average|max``.
Variants named ``<name>-pe`` are prompt-engineered (OpenSeg appendix I): synonyms and
short context for polysemous or terse names, e.g. ``fan`` -> ``ceiling fan, floor fan``.
"""

from __future__ import annotations

import random
from pathlib import Path

from omniseg.errors import InputError

VOCAB_DIR = Path(__file__).parent

# Modifiers of the synthetic large vocabularies: colour, material, size, age, state, place.
_MODIFIERS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "golden",
    "silver", "wooden", "metal", "plastic", "glass", "stone", "paper", "leather", "woollen", "concrete", "small",
    "large", "tiny", "huge", "tall", "short", "long", "round", "square", "flat", "old", "new", "ancient", "modern",
    "broken", "wet", "dry", "dirty", "clean", "striped", "spotted", "painted", "folded", "open", "closed", "empty",
    "full", "outdoor", "indoor", "kitchen", "garden", "street", "toy", "antique", "electric", "frozen", "burnt",
    "shiny",
)  # fmt: skip


def names() -> list[str]:
    """Names of the shipped vocabularies, sorted."""
    return sorted(p.stem for p in VOCAB_DIR.glob("*.txt"))


def description(name: str) -> str:
    """The first comment line of a shipped vocabulary file."""
    with vocabulary_path(name).open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") and not line.startswith("#!"):
                return line.lstrip("#").strip()
            if line.strip() and not line.startswith("#"):
                break
    return ""


def vocabulary_path(name: str) -> Path:
    path = VOCAB_DIR / f"{name}.txt"
    if not path.is_file():
        raise InputError(f"unknown vocabulary {name!r}: use a file path or one of {', '.join(names())}")
    return path


def resolve(name_or_path: str | Path) -> Path:
    """A shipped vocabulary's name (``ade150``) or a path to a vocabulary file -> the file's path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith(".txt"):
        return vocabulary_path(text)
    raise InputError(f"vocabulary file not found: {path} (shipped vocabularies: {', '.join(names())})")


def wordnet_nouns() -> list[str]:
    """The 69,953 visual, non-offensive WordNet 3.0 noun lemmas of the shipped ``wordnet_nouns`` vocabulary."""
    lines = vocabulary_path("wordnet_nouns").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def synthetic_names(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct class names for scale tests: WordNet nouns, then '<modifier> <noun>' pairs.

    Deterministic for a given seed; the first n names of a larger list are the list for n, so a
    benchmark can encode the largest list once and take prefixes. Up to ~7 million names.
    """
    nouns = wordnet_nouns()
    rng = random.Random(seed)
    order = nouns[:]
    rng.shuffle(order)
    out = order[:count]
    if len(out) >= count:
        return out
    seen = set(out)
    pairs = len(_MODIFIERS) * len(nouns)
    if count > len(nouns) + pairs:
        raise InputError(f"at most {len(nouns) + pairs:,} synthetic names, asked for {count:,}")
    # a fixed odd stride through the modifier x noun grid visits every pair once, in a scrambled order
    stride = 1_000_003 if pairs % 1_000_003 else 999_983
    index = rng.randrange(pairs)
    while len(out) < count:
        index = (index + stride) % pairs
        name = f"{_MODIFIERS[index % len(_MODIFIERS)]} {order[index // len(_MODIFIERS)]}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out

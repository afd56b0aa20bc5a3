"""The door's vocabulary memo (omniseg.vocab_memo): what it returns again, and what it must rebuild."""

from __future__ import annotations

import numpy as np

from omniseg.vocab import Vocabulary
from omniseg.vocab_memo import VocabularyMemo, _fingerprint


class Builds:
    """A build function that records every list of names it was asked to build."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, names: list[str]) -> Vocabulary:
        self.calls.append(list(names))
        return Vocabulary.from_names(names)


def memoised(count: int) -> tuple[VocabularyMemo, Builds, list[str], Vocabulary]:
    """A memo that has built the vocabulary of ``count`` names once: (memo, build, names, vocabulary)."""
    memo, build = VocabularyMemo(), Builds()
    names = [f"thing {i}" for i in range(count)]
    return memo, build, names, memo.names(names, build)


def unsampled_position(names: list[str]) -> int:
    """A position the fingerprint does not look at: an edit there keeps the fingerprint."""
    sampled = set(_fingerprint(names)[2:])
    return next(i for i, name in enumerate(names) if name not in sampled)


def test_the_same_list_or_a_copy_is_built_once() -> None:
    memo, build, names, first = memoised(1000)
    assert memo.names(names, build) is first
    assert memo.names(list(names), build) is first  # a copy: same string objects
    assert memo.names(tuple(names), build) is first
    assert memo.names([f"thing {i}" for i in range(1000)], build) is first  # equal, other string objects
    assert len(build.calls) == 1


def test_a_list_edited_in_place_is_rebuilt() -> None:
    memo, build, names, first = memoised(1000)
    position = unsampled_position(names)
    names[position] = "lighthouse"  # same length, same ends, same sampled names: same fingerprint
    assert _fingerprint(names) == _fingerprint(build.calls[0])
    edited = memo.names(names, build)
    assert edited is not first and edited.classes[position] == "lighthouse"
    names.append("harbour")  # grown in place
    grown = memo.names(names, build)
    assert grown is not edited and grown.classes[-1] == "harbour" and len(grown) == 1001
    assert len(build.calls) == 3


def test_the_memo_keeps_its_own_copy_of_the_names() -> None:
    memo, build, names, first = memoised(50)
    position = unsampled_position(names)
    names[position] = "lighthouse"
    assert memo.names(names, build) is not first  # the edit is seen: the copy was not edited with the list
    names[position] = f"thing {position}"
    assert memo.names(names, build).classes == [f"thing {i}" for i in range(50)]
    assert len(build.calls) == 3  # the original came back under the same fingerprint, built again: correct


def test_names_that_are_not_python_strings() -> None:
    memo, build = VocabularyMemo(), Builds()
    names = np.array(["sky", "road", "car"])
    first = memo.names(names, build)
    assert memo.names(np.array(["sky", "road", "car"]), build) is first
    assert memo.names(["sky", "road", "car"], build) is first
    assert build.calls == [["sky", "road", "car"]] and all(type(n) is str for n in build.calls[0])


def test_least_recently_used_is_dropped() -> None:
    memo, build = VocabularyMemo(size=2), Builds()
    a, b, c = ["sky"], ["road"], ["car"]
    va = memo.names(a, build)
    memo.names(b, build)
    assert memo.names(a, build) is va  # a is now the most recent
    memo.names(c, build)  # drops b
    assert memo.names(a, build) is va
    memo.names(b, build)
    assert [call[0] for call in build.calls] == ["sky", "road", "car", "road"]


def test_strings_and_files_by_key() -> None:
    memo = VocabularyMemo()
    built = []

    def build() -> Vocabulary:
        built.append(1)
        return Vocabulary.from_string("sky, road")

    first = memo.get(("string", "sky, road"), build)
    assert memo.get(("string", "sky, road"), build) is first and len(built) == 1

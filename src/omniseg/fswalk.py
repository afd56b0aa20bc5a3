"""Walking input directories and matching globs, safely: each real directory is visited once.

``os.walk`` with a symbolic link loop inside an input folder ended in an internal error (resolving
the looping path raises), and ``glob('**')`` followed a directory linking to itself until the
kernel's 40-link limit: one image was segmented 41 times into nested folders (issue 13). Here a
directory is entered only if its (st_dev, st_ino) has not been seen, so a link to a directory
already walked (a loop, or a second name for it) is skipped with one warning line, and so is a
link that loops or points nowhere; everything else is processed.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from omniseg.errors import SkippedInputWarning


def _skip(path: Path, why: str) -> None:
    warnings.warn(f"skipped {path}: {why}", SkippedInputWarning, stacklevel=3)


def walk(root: Path, exclude: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """(path, is_dir) of every entry under ``root`` (not root itself), following links to
    directories but entering each real directory once; hidden entries and ``exclude`` are skipped.
    Per directory: its files sorted by name, then its subdirectories (depth first, sorted)."""
    seen: set[tuple[int, int]] = set()
    stat = os.stat(root)
    seen.add((stat.st_dev, stat.st_ino))
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            _skip(directory, f"cannot be listed ({exc.strerror or exc})")
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                target = os.stat(entry.path) if entry.is_symlink() else None
            except OSError as exc:  # ELOOP: a link that loops; ENOENT: a dangling link
                _skip(path, f"a symbolic link that loops or points nowhere ({exc.strerror or exc})")
                continue
            if not is_dir:
                if entry.is_file():
                    yield path, False
                else:  # a FIFO would block the run, a device never end
                    _skip(path, "not a regular file")
                continue
            info = target or entry.stat(follow_symlinks=False)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                _skip(path, "a link to a directory already walked (a symbolic link loop?)")
                continue
            seen.add(key)
            if exclude is not None and path.resolve() == exclude:
                continue
            subdirs.append(path)
            yield path, True
        stack.extend(reversed(subdirs))


def walk_files(root: Path, exclude: Path | None = None) -> Iterator[Path]:
    """The files of ``walk``."""
    return (path for path, is_dir in walk(root, exclude) if not is_dir)


def glob_base(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard: 'data/**/*.jpg' -> 'data'."""
    fixed = []
    for part in Path(pattern).parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _has_magic(text: str) -> bool:
    return re.search(r"[*?[]", text) is not None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The part of ``pattern`` after its base as a regex over '/'-joined relative paths: '**'
    matches any number of directories (none included), other parts one name each (fnmatch)."""
    base_parts = len(glob_base(pattern).parts) if glob_base(pattern) != Path(".") else 0
    parts = Path(pattern).parts[base_parts:]
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment_regex(part) + ("" if last else "/")
    return re.compile(f"(?s:{regex})\\Z")


def _segment_regex(part: str) -> str:
    """One path segment of a glob: '*' and '?' never match '/', '[...]' is a class ('[!...]' negated)."""
    out, i = "", 0
    while i < len(part):
        char = part[i]
        end = part.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif end > 0:
            body = part[i + 1 : end]
            negate, body = body.startswith("!"), body.removeprefix("!").replace("\\", "\\\\")
            out += "[" + ("^" if negate else "") + ("\\" if body.startswith("^") else "") + body + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out


def glob_matches(pattern: str, exclude: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """(path, is_dir) of the entries matching ``pattern``, found by ``walk`` (loop-safe), sorted by walk."""
    base = glob_base(pattern)
    if not base.is_dir():
        return
    regex = glob_regex(pattern)
    for path, is_dir in walk(base, exclude):
        if regex.match(path.relative_to(base).as_posix()):
            yield path, is_dir

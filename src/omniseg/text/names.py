"""What a class name may hold: a bounded length, no control or format characters, something visible.

Why each rule:

- Length (``MAX_NAME_CHARS``): a name is a few words. A 900 KB name made the overlay legend as wide
  as the name (3.6 GB RSS on a 160x120 image) and the text encoder reads 128 tokens of it anyway.
- Control and format characters (Unicode Cc, Cf, Zl, Zp; the ordinary space is Zs and allowed):
  NUL would reach the SQLite cache, U+2028 / U+0085 split lines in other tools, bidi overrides and
  zero-width spaces make two names that look alike differ. The zero-width joiner and non-joiner
  (emoji sequences, Persian) and emoji tag characters (subdivision flags) stay allowed inside a name.
- Something visible: a name made only of zero-width or space characters names nothing.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 1000
_REFUSED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
_ALLOWED_FORMAT = {"\u200c", "\u200d"} | {chr(c) for c in range(0xE0020, 0xE0080)}
_INVISIBLE_CATEGORIES = ("Cf", "Zs")  # what is left after the refusals: joiners, tags, spaces


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name ('has ...', for a message), or None if it can."""
    if len(name) > MAX_NAME_CHARS:
        return f"has a name of {len(name):,} characters (at most {MAX_NAME_CHARS:,}): {name[:40]!r}..."
    if not name.isprintable():  # fast path: printable names hold none of the refused characters
        for char in name:
            if unicodedata.category(char) in _REFUSED_CATEGORIES and char not in _ALLOWED_FORMAT:
                return f"has an invisible control character (U+{ord(char):04X}) in {name[:80]!r}"
    if all(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in name):
        return f"has no visible character: {name[:80]!r}"
    return None

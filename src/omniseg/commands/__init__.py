"""Subcommands of `omniseg`, one module each. A module exposes ``register(subparsers)``.

Modules parse arguments and call the library; the library never imports them.
"""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2

# Order = order in `omniseg --help`.
COMMAND_MODULES = ("segment", "batch", "refer", "click", "incontext", "video", "evaluate", "train")


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def image_size_arg(text: str) -> int:
    return _whole_number_at_least(text, 32)


def positive_int(text: str) -> int:
    return _whole_number_at_least(text, 1)

"""Subcommands of `omniseg`, one module each. A module exposes ``register(subparsers)``.

Modules parse arguments and call the library; the library never imports them.
"""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2

# Order = order in `omniseg --help`.
COMMAND_MODULES = ("segment", "refer", "click", "incontext", "video", "evaluate", "train", "vocab", "bench")


def image_size_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32, got {value}")
    return value

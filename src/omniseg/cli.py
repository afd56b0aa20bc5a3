"""The `omniseg` command. Subcommands parse arguments and call the library, never the reverse.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
Warnings (input accepted with a caveat, e.g. the first frame of a GIF) are one line each on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from omniseg.commands import COMMAND_MODULES, EXIT_INPUT, EXIT_INTERNAL, EXIT_OK
from omniseg.errors import OmnisegError, OmnisegWarning

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_OK", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other input error
        self.exit(EXIT_INPUT, f"omniseg: error: {message} (see '{self.prog} --help')\n")


def _quiet_libraries() -> None:
    """Quiet transformers and the hub through their environment variables: importing transformers
    here would cost every command about a second, also those that never use it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def build_parser() -> argparse.ArgumentParser:
    from omniseg import __version__

    parser = _Parser(prog="omniseg", description="Open-vocabulary image segmentation on the CPU.")
    parser.add_argument("--version", action="version", version=f"omniseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"omniseg.commands.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """OmnisegWarning -> one 'omniseg: warning: ...' line; other warnings as Python shows them."""
    if issubclass(category, OmnisegWarning):
        print(f"omniseg: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    with warnings.catch_warnings():
        warnings.simplefilter("always", OmnisegWarning)  # one line per file, every run
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except OmnisegError as exc:
        print(f"omniseg: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("omniseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, exit 1
        if os.environ.get("OMNISEG_DEBUG"):
            raise
        print(
            f"omniseg: internal error: {exc.__class__.__name__}: {exc} (set OMNISEG_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

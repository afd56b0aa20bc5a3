"""Subcommands of `omniseg`, one module each. A module exposes ``register(subparsers)``.

Modules parse arguments and call the library; the library never imports them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from omniseg.errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2

# Order = order in `omniseg --help`.
COMMAND_MODULES = (
    "segment",
    "batch",
    "refer",
    "click",
    "incontext",
    "video",
    "evaluate",
    "train",
    "pseudo_label",
    "export",
    "serve",
    "vocab",
    "bench",
)
# Files refer and click write per image (omniseg.tasks.common.save_binary_mask).
BINARY_MASK_SUFFIXES = (".png", ".json", "_overlay.png")


# One meaning of --threshold for every command (issue 15): the minimum confidence of an answer.
THRESHOLD_HELP = (
    "minimum confidence (0..1) of an answer; below it the answer is 'unknown'. semantic: unlabeled pixels "
    "(confidence = how much better the class fits than any other concept the model knows; default 0.1 "
    "with the default model, 0 labels every pixel); instance/panoptic: dropped objects (score = class "
    "probability x objectness x confidence against background; default 0.2); refer: 'not found', an "
    "empty mask; click: no name for the clicked object. --model sam3: SAM 3's detection score (class x "
    "presence probability) an instance must exceed, for every task (default 0.3, transformers'; --boxes: "
    "Grounding DINO's box score, default 0.25; clipseg: a class's mean probability, default 0); semantic "
    "pixels no kept instance covers are unlabeled"
)


def finite_float(text: str) -> float:
    """A float argument; 'nan' and 'inf' are refused (every comparison with NaN is False)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def require_files(paths: Sequence[str | Path], what: str) -> list[Path]:
    """The paths as Path objects; InputError naming the first missing one (and how many more)."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        problem = "is not a regular file" if Path(missing[0]).exists() else "not found"
        raise InputError(f"{what} {problem}: {missing[0]}{more}")
    return [Path(p) for p in paths]


def refuse_protected_out_dir(out_dir: str | Path, model: str | Path | None) -> None:
    """An --out inside the model directory or the embedding cache/store would overwrite their files
    (``segment config.png --model M --out M`` replaced M/config.json): refused before any work."""
    from omniseg.models import DEFAULT_MODEL_DIR
    from omniseg.registry import is_spec, parse_spec
    from omniseg.text.cache import default_cache_dir

    out = Path(out_dir).resolve()
    model_dir = DEFAULT_MODEL_DIR
    if model:
        spec = is_spec(str(model), None)  # KIND:PATH of any kind is parsed by the registry
        path = parse_spec(str(model))[1] if spec else str(model)
        model_dir = Path(path) if path else DEFAULT_MODEL_DIR
    guarded = [("the model directory", model_dir)]
    guarded.append(("the embedding cache (OMNISEG_CACHE)", default_cache_dir()))
    for what, directory in guarded:
        directory = directory.resolve()
        if out == directory or directory in out.parents:
            raise InputError(f"--out {out_dir} is inside {what} {directory}: its files would be overwritten")


def plan_outputs(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    suffixes: Sequence[str],
    protected: Sequence[str | Path] = (),
    model: str | Path | None = None,
) -> list[str]:
    """The output stem of each input (its file name without extension), after checking that no two
    inputs write the same output file and that no output would overwrite an input (``inputs`` and
    ``protected``, e.g. example masks or the vocabulary file), the model or the cache: all would
    lose data silently."""
    from omniseg.atomic import output_path

    refuse_protected_out_dir(out_dir, model)
    keep = {Path(p).resolve() for p in [*inputs, *protected]}
    written: dict[Path, Path] = {}
    stems = []
    for source in map(Path, inputs):
        for suffix in suffixes:
            target = output_path(out_dir, source.stem, suffix)
            resolved = target.resolve()
            if resolved in written:
                raise InputError(
                    f"{written[resolved]} and {source} would both write {target}: rename one or run them separately"
                )
            if resolved in keep:
                raise InputError(f"the output {target} would overwrite an input file: choose another --out directory")
            written[resolved] = source
        stems.append(source.stem)
    return stems


def image_size_arg(text: str) -> int:
    return _whole_number_at_least(text, 32)


def add_max_size_argument(parser: argparse.ArgumentParser) -> None:
    """--max-size, the same for every command that runs the model."""
    parser.add_argument(
        "--max-size", type=image_size_arg, default=512, help="longest side the model sees (default: %(default)s)"
    )


def tracked_names(text: str) -> list[str]:
    """The names ``--classes 'a, b'`` asks ``video`` / ``eval --task video`` to track; an empty one is
    an InputError (a stray comma would otherwise track nothing under an empty label)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise InputError(f"--classes {text!r} has an empty name")
    return names


def positive_int(text: str) -> int:
    return _whole_number_at_least(text, 1)

"""The `omniseg` command. Subcommands parse arguments and call the library, never the reverse.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from omniseg.errors import InputError, OmnisegError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other input error
        self.exit(EXIT_INPUT, f"omniseg: error: {message} (see '{self.prog} --help')\n")


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers is a dependency; stay quiet if it changes
        pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32, got {value}")
    return value


def _cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import omniseg
    from omniseg.vocab import Vocabulary

    if args.classes is None and args.vocab is None:
        raise InputError("give the classes: --classes 'sky,road,car' or --vocab FILE")
    vocab = Vocabulary.from_string(args.classes) if args.classes is not None else Vocabulary.from_file(args.vocab)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise InputError(
            f"image not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    stems = [Path(p).stem for p in args.images]
    if len(set(stems)) != len(stems):
        raise InputError("two input images share a file name; outputs would overwrite each other")
    segmenter = omniseg.load(args.model, max_size=args.max_size)
    segmenter.vocabulary(vocab)
    out = Path(args.out)
    failed = 0
    for path in tqdm(args.images, desc="segment", disable=len(args.images) < 2 or args.quiet, dynamic_ncols=True):
        stem = Path(path).stem
        if args.skip_existing and all((out / f"{stem}{s}").is_file() for s in (".png", "_overlay.png", ".json")):
            continue
        try:
            result = segmenter.segment(path, classes=vocab, threshold=args.threshold)
        except InputError as exc:
            print(f"omniseg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        result.save(out, stem)
        if not args.quiet:
            top = sorted(result.fractions().items(), key=lambda kv: -kv[1])[:5]
            summary = ", ".join(f"{k} {v:.0%}" for k, v in top)
            tqdm.write(f"{path} -> {out / stem}.png  [{summary}]  {result.timings['total_s']:.2f}s")
    return EXIT_INPUT if failed else EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    import omniseg
    from omniseg.eval.semantic import evaluate_semantic, format_table
    from omniseg.io import atomic_write_text

    if not Path(args.dataset).is_dir():
        raise InputError(f"dataset directory not found: {args.dataset}")
    segmenter = omniseg.load(args.model, max_size=args.max_size)
    report = evaluate_semantic(
        segmenter,
        args.dataset,
        grounding=args.grounding,
        limit=args.limit,
        split=args.split,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        progress=not args.quiet,
    )
    print(format_table(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from omniseg.train.config import TrainConfig
    from omniseg.train.loop import train

    cfg = TrainConfig.from_yaml(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.out is not None:
        cfg.out_dir = args.out
    final = train(cfg, resume=not args.no_resume)
    print(f"model written to {final}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from omniseg import __version__

    parser = _Parser(prog="omniseg", description="Open-vocabulary image segmentation on the CPU.")
    parser.add_argument("--version", action="version", version=f"omniseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    seg = sub.add_parser("segment", help="label every pixel with one of the given classes")
    seg.add_argument("images", nargs="+", metavar="IMAGE")
    group = seg.add_mutually_exclusive_group()
    group.add_argument("--classes", help="comma-separated class names, e.g. 'sky,road,red car'")
    group.add_argument("--vocab", help="vocabulary file: one class per line, synonyms comma-separated")
    seg.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    seg.add_argument("--model", help="model directory (default: the embedded default model)")
    seg.add_argument("--threshold", type=float, help="mark pixels whose best score (cosine) is below this unlabeled")
    seg.add_argument(
        "--max-size", type=_positive_int, default=512, help="longest side the model sees (default: %(default)s)"
    )
    seg.add_argument("--skip-existing", action="store_true", help="resume: skip images whose outputs exist")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=_cmd_segment)

    ev = sub.add_parser("eval", help="mIoU / grounding mIoU on a dataset in the uniform format")
    ev.add_argument("dataset", metavar="DATASET_DIR")
    ev.add_argument("--grounding", action="store_true", help="per image, only the classes in its ground truth")
    ev.add_argument("--json", help="write the report as JSON here")
    ev.add_argument("--limit", type=int, help="evaluate the first N images only")
    ev.add_argument(
        "--split",
        choices=("all", "train", "val"),
        default="all",
        help="which part of the fixed-seed split to evaluate (default: %(default)s)",
    )
    ev.add_argument("--val-fraction", type=float, default=0.2)
    ev.add_argument("--split-seed", type=int, default=0)
    ev.add_argument("--model", help="model directory (default: the embedded default model)")
    ev.add_argument("--max-size", type=_positive_int, default=512)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_cmd_eval)

    tr = sub.add_parser("train", help="train the native model from a YAML config (resumes by default)")
    tr.add_argument("config", metavar="CONFIG")
    tr.add_argument("--steps", type=int, help="override the number of steps")
    tr.add_argument("--out", help="override the output directory")
    tr.add_argument("--no-resume", action="store_true", help="start from scratch even if a checkpoint exists")
    tr.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
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

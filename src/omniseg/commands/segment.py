"""`omniseg segment`: label every pixel of each image with one of the given classes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omniseg.commands import EXIT_INPUT, EXIT_OK, image_size_arg
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    seg = sub.add_parser("segment", help="label every pixel with one of the given classes")
    seg.add_argument("images", nargs="+", metavar="IMAGE")
    group = seg.add_mutually_exclusive_group()
    group.add_argument("--classes", help="comma-separated class names, e.g. 'sky,road,red car'")
    group.add_argument("--vocab", help="vocabulary file: one class per line, synonyms comma-separated")
    seg.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    seg.add_argument("--model", help="model directory (default: the embedded default model)")
    seg.add_argument("--threshold", type=float, help="mark pixels whose best score (cosine) is below this unlabeled")
    seg.add_argument(
        "--max-size", type=image_size_arg, default=512, help="longest side the model sees (default: %(default)s)"
    )
    seg.add_argument("--skip-existing", action="store_true", help="resume: skip images whose outputs exist")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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

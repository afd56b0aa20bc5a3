"""`omniseg refer IMAGE PHRASE`: the region(s) a phrase refers to, as a mask PNG + JSON."""

from __future__ import annotations

import argparse

from omniseg.commands import (
    BINARY_MASK_SUFFIXES,
    EXIT_OK,
    THRESHOLD_HELP,
    finite_float,
    plan_outputs,
    require_files,
)
from omniseg.commands.backend_args import add_model_arguments, load_segmenter
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    ref = sub.add_parser("refer", help="segment what a phrase refers to, e.g. 'the dog on the left'")
    ref.add_argument("image", metavar="IMAGE")
    ref.add_argument("phrase", metavar="PHRASE")
    ref.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    ref.add_argument(
        "--margin",
        type=finite_float,
        default=0.03,
        help="merge every region whose similarity is within this of the best (cosine; default: %(default)s; "
        "--model sam3: not used, the best instance is the answer)",
    )
    ref.add_argument("--no-spatial", action="store_true", help="ignore words like 'left' or 'top' in the phrase")
    ref.add_argument("--threshold", type=finite_float, help=THRESHOLD_HELP)
    add_model_arguments(ref, boxes=True)
    ref.add_argument("--quiet", action="store_true")
    ref.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omniseg.tasks.refer import refer

    (image,) = require_files([args.image], "image")
    (stem,) = plan_outputs([image], args.out, BINARY_MASK_SUFFIXES, model=args.model)
    if not args.phrase.strip():
        raise InputError("the phrase is empty: say what to segment, e.g. 'the dog on the left'")
    if args.margin < 0:
        raise InputError(f"--margin must be >= 0, got {args.margin}")
    segmenter = load_segmenter(args)
    result = refer(
        segmenter,
        args.image,
        args.phrase,
        margin=args.margin,
        use_spatial=not args.no_spatial,
        threshold=args.threshold,
    )
    paths = result.save(args.out, stem)
    if not args.quiet:
        concepts = segmenter.concept_source is not None  # SAM 3: the phrase's best instance
        if result.found:
            score = f"instance {result.selected[0]}, score {result.confidence:.2f}"
            what = score if concepts else f"regions {result.selected}"
            print(f"{args.image} -> {paths['mask']}  [{what}, {result.mask.mean():.0%} of the image]")
        else:
            why = "no instance scores above the threshold" if concepts else "another known concept fits better"
            how = "" if concepts else f" (confidence {result.confidence:.2f})"
            print(f"{args.image} -> {paths['mask']}  [not found: {why}{how}; the mask is empty]")
    return EXIT_OK

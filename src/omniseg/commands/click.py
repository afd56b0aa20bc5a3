"""`omniseg click IMAGE --point X,Y[,1|0] ... [--box X0,Y0,X1,Y1]`: the object under clicks / in a box."""

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


def point_arg(text: str) -> tuple[float, float, bool]:
    """'X,Y' or 'X,Y,1' (on the object) or 'X,Y,0' (not on it), in image pixels."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,1 or X,Y,0, got {text!r}")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"point coordinates must be numbers, got {text!r}") from None
    if len(parts) == 3 and parts[2] not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"the third value of a point is 1 (positive) or 0 (negative), got {text!r}")
    return x, y, len(parts) == 2 or parts[2] == "1"


def box_arg(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' in image pixels, X0 < X1 and Y0 < Y1."""
    parts = text.split(",")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (four numbers), got {text!r}") from None
    if not (x0 < x1 and y0 < y1):
        raise argparse.ArgumentTypeError(f"a box needs X0 < X1 and Y0 < Y1, got {text!r}")
    return x0, y0, x1, y1


def register(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser("click", help="segment the object under positive/negative points or in a box")
    cl.add_argument("image", metavar="IMAGE")
    cl.add_argument(
        "--point",
        type=point_arg,
        action="append",
        default=[],
        metavar="X,Y[,1|0]",
        help="a click in image pixels; 1 (default) = on the object, 0 = not on it; repeat for more",
    )
    cl.add_argument("--box", type=box_arg, action="append", default=[], metavar="X0,Y0,X1,Y1", help="a box around it")
    cl.add_argument("--threshold", type=finite_float, help=THRESHOLD_HELP)
    cl.add_argument("--classes", help="comma-separated class names to name the object with, e.g. 'dog,cat,person'")
    cl.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    add_model_arguments(cl, task="click")
    cl.add_argument("--quiet", action="store_true")
    cl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omniseg.tasks.interactive import Click, click
    from omniseg.vocab import Vocabulary

    (image,) = require_files([args.image], "image")
    (stem,) = plan_outputs([image], args.out, BINARY_MASK_SUFFIXES, model=args.model)
    if not any(p[2] for p in args.point) and not args.box:
        raise InputError("give at least one positive --point X,Y or a --box X0,Y0,X1,Y1")
    vocab = Vocabulary.from_string(args.classes) if args.classes is not None else None
    segmenter = load_segmenter(args, task="click")
    clicks = [Click(x, y, positive) for x, y, positive in args.point]
    result = click(segmenter, args.image, clicks, args.box, classes=vocab, threshold=args.threshold)
    paths = result.save(args.out, stem)
    if not args.quiet:
        named = f", {result.label} ({result.label_score:.2f})" if result.label is not None else ""
        if vocab is not None and result.label is None:
            named = f", unknown: no given class fits (confidence {result.label_confidence:.2f})"
        print(
            f"{args.image} -> {paths['mask']}  [region {result.region}{named}, {result.mask.mean():.0%} of the image]"
        )
    return EXIT_OK

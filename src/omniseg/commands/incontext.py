"""`omniseg incontext --example IMAGE MASK ... TARGET ...`: segment in the targets what the example masks mark."""

from __future__ import annotations

import argparse
from pathlib import Path

from omniseg.commands import EXIT_OK, image_size_arg
from omniseg.commands.backend_args import add_backend_arguments, load_segmenter, seggpt_from_args
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    ic = sub.add_parser("incontext", help="segment in the targets what example masks mark (by example)")
    ic.add_argument(
        "--example",
        nargs=2,
        action="append",
        required=True,
        metavar=("IMAGE", "MASK"),
        help="an example image and its id mask (0 = background, other values = what to find); repeat for more",
    )
    ic.add_argument("targets", nargs="+", metavar="TARGET")
    ic.add_argument(
        "--level",
        choices=("category", "instance"),
        default="category",
        help="category: everything that looks like the example; instance: the one best-matching part per id",
    )
    ic.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    ic.add_argument(
        "--model",
        help="model directory (default: the embedded default model), or seggpt:PATH to run SegGPT "
        "(a save_pretrained directory or a hub id in the local cache)",
    )
    ic.add_argument(
        "--max-size", type=image_size_arg, default=512, help="longest side the model sees (default: %(default)s)"
    )
    add_backend_arguments(ic)
    ic.add_argument("--quiet", action="store_true")
    ic.set_defaults(func=run)


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) as the image is shown (EXIF rotation applied), from the file header only,
    so bad input fails before the model loads."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees when loaded
                width, height = height, width
            return width, height
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc.__class__.__name__}") from exc


def check_mask_size(image: Path, mask: Path, what: str) -> None:
    (w, h), (mw, mh) = header_size(image), header_size(mask)
    if (w, h) != (mw, mh):
        raise InputError(f"{what} is {mw}x{mh} but its image is {w}x{h}: {mask}")


def check_inputs(examples: list[list[str]], targets: list[str]) -> None:
    for n, (image, mask) in enumerate(examples, start=1):
        for path, what in ((image, "example image"), (mask, "example mask")):
            if not Path(path).is_file():
                raise InputError(f"{what} {n} not found: {path}")
        check_mask_size(Path(image), Path(mask), f"example mask {n}")
    missing = [t for t in targets if not Path(t).is_file()]
    if missing:
        raise InputError(
            f"target not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    stems = [Path(t).stem for t in targets]
    if len(set(stems)) != len(stems):
        raise InputError("two targets share a file name; outputs would overwrite each other")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from omniseg.io import atomic_save_png
    from omniseg.tasks.common import image_regions
    from omniseg.tasks.incontext import prototypes_from_examples, segment_with_prototypes

    check_inputs(args.example, args.targets)
    examples = [(Path(i), Path(m)) for i, m in args.example]
    seggpt = seggpt_from_args(args)
    if seggpt is not None:

        def predict(target: str):
            return seggpt.incontext(examples, [target], level=args.level)[0]
    else:
        segmenter = load_segmenter(args)
        prototypes = prototypes_from_examples(segmenter, examples)

        def predict(target: str):
            return segment_with_prototypes(image_regions(segmenter, target)[1], prototypes, level=args.level)

    out = Path(args.out)
    bar = tqdm(args.targets, desc="incontext", disable=len(args.targets) < 2 or args.quiet, dynamic_ncols=True)
    for target in bar:
        label = predict(target)
        path = out / f"{Path(target).stem}.png"
        atomic_save_png(path, label)
        if not args.quiet:
            found = ", ".join(f"id {i}: {(label == i).mean():.0%}" for i in np.unique(label) if i != 0)
            tqdm.write(f"{target} -> {path}  [{found or 'nothing found'}]")
    return EXIT_OK

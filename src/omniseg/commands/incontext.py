"""`omniseg incontext --example IMAGE MASK ... TARGET ...`: segment in the targets what the example masks mark."""

from __future__ import annotations

import argparse
from pathlib import Path

from omniseg.commands import EXIT_OK, plan_outputs, require_files
from omniseg.commands.backend_args import add_model_arguments, load_segmenter
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
    add_model_arguments(ic, task="incontext")
    ic.add_argument("--quiet", action="store_true")
    ic.set_defaults(func=run)


def check_mask_size(image: Path, mask: Path, what: str) -> None:
    """From the file headers only, so bad input fails before the model loads."""
    from omniseg.images import image_size

    (w, h), (mw, mh) = image_size(image, "image"), image_size(mask, what, exif=False)
    if (w, h) != (mw, mh):
        raise InputError(f"{what} is {mw}x{mh} but its image is {w}x{h}: {mask}")


def check_inputs(examples: list[list[str]], targets: list[str], out: str, model: str | None = None) -> list[str]:
    """The targets' output stems, after checking every input file and output name."""
    for n, (image, mask) in enumerate(examples, start=1):
        require_files([image], f"example image {n}")
        require_files([mask], f"example mask {n}")
        check_mask_size(Path(image), Path(mask), f"example mask {n}")
    from omniseg.results import OUTPUT_SUFFIXES

    protected = [p for pair in examples for p in pair]
    return plan_outputs(require_files(targets, "target"), out, OUTPUT_SUFFIXES["ids"], protected, model=model)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omniseg.images import load_image
    from omniseg.results import IdMapResult
    from omniseg.source import ExampleSource, RegionSource
    from omniseg.tasks.common import image_regions
    from omniseg.tasks.incontext import prototypes_from_examples, segment_with_prototypes

    stems = check_inputs(args.example, args.targets, args.out, args.model)
    examples = [(Path(i), str(m)) for i, m in args.example]
    segmenter = load_segmenter(args, task="incontext")
    model_id = segmenter.model_id
    if isinstance(segmenter.source, ExampleSource) and not isinstance(segmenter.source, RegionSource):
        source = segmenter.source  # SegGPT paints, SAM 3 decodes exemplar prompts: the model answers itself

        def predict(target: str):
            return source.incontext(examples, [target], level=args.level)[0]
    else:
        prototypes = prototypes_from_examples(segmenter, examples)

        def predict(target: str):
            return segment_with_prototypes(image_regions(segmenter, target)[1], prototypes, level=args.level)

    bar = tqdm(args.targets, desc="incontext", disable=len(args.targets) < 2 or args.quiet, dynamic_ncols=True)
    for target, stem in zip(bar, stems, strict=True):
        result = IdMapResult(load_image(target), predict(target), model_id)
        paths = result.save(args.out, stem)
        if not args.quiet:
            fractions = result.fractions()
            found = ", ".join(f"id {i}: {fractions[str(i)]:.0%}" for i in result.ids())
            tqdm.write(f"{target} -> {paths['ids']}  [{found or 'nothing found'}]")
    return EXIT_OK

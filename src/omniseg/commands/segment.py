"""`omniseg segment`: label every pixel of each image with one of the given classes
(--task semantic, the default), or find the objects (--task instance) or both (--task panoptic).

Inputs may be files, directories (recursive) or globs; the work is a batch job (omniseg.batch):
--workers processes, atomic writes, --skip-existing/--resume after a kill."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omniseg.commands import (
    EXIT_INPUT,
    EXIT_OK,
    THRESHOLD_HELP,
    finite_float,
    positive_int,
    refuse_protected_out_dir,
)
from omniseg.commands.backend_args import add_model_arguments, load_segmenter
from omniseg.commands.vocab import add_vocab_options, apply_vocab_options
from omniseg.errors import InputError, MissingResourceError, OutputError

if TYPE_CHECKING:  # the CLI imports torch lazily, only when a command runs
    from omniseg.batch import BatchItem, BatchJob, BatchStats, Outcome


def register(sub: argparse._SubParsersAction) -> None:
    seg = sub.add_parser(
        "segment",
        help="semantic, instance or panoptic segmentation with the given classes",
        description="Segment images: files, directories (walked recursively; sub-paths are kept under --out) "
        "or globs such as 'photos/**/*.jpg'.",
    )
    add_job_arguments(seg)
    seg.set_defaults(func=run)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a segmentation job, shared by `segment` and `batch`."""
    parser.add_argument("images", nargs="+", metavar="IMAGE_DIR_OR_GLOB")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--classes", help="comma-separated class names, e.g. 'sky,road,red car'")
    group.add_argument(
        "--vocab",
        help="a shipped vocabulary (ade150, coco80, ... : see 'omniseg vocab list') or a vocabulary file: "
        "one class per line, synonyms comma-separated",
    )
    add_vocab_options(parser)
    parser.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--task",
        choices=("semantic", "instance", "panoptic"),
        default="semantic",
        help="semantic: <stem>.png label map; instance: <stem>_instances.json (COCO results, RLE); "
        "panoptic: <stem>_panoptic.png + .json (COCO panoptic). All write <stem>_overlay.png (default: %(default)s)",
    )
    parser.add_argument(
        "--stuff",
        help="comma-separated classes that are stuff (merged per class, never instances), "
        "e.g. 'sky,road'; a vocabulary line can also end with [stuff]",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float,
        help=THRESHOLD_HELP,
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="processes (or Ray actors), each loading the model once; outputs do not depend on it (default: 1)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads per worker (default: 1, or all cores for a single image); outputs are byte-identical "
        "for a given value whatever --workers, Ray or a resume (other values round floats differently)",
    )
    parser.add_argument(
        "--skip-existing",
        "--resume",
        dest="skip_existing",
        action="store_true",
        help="resume: skip images finished by an earlier run of the same job (an image cut off by a kill is redone)",
    )
    add_model_arguments(parser, boxes=True)
    parser.add_argument("--quiet", action="store_true")


def prepare(args: argparse.Namespace) -> tuple[list[BatchItem], BatchJob]:
    """Check the inputs and build the job (vocabulary embedded once, here) before any work starts."""
    from omniseg.batch import BatchJob, collect_images
    from omniseg.registry import is_spec
    from omniseg.source import LabelledSource
    from omniseg.text.encoder import default_text_encoder
    from omniseg.vocab import Vocabulary

    native = not (
        args.masks or args.embed or args.boxes or args.runtime != "torch" or (args.model and is_spec(args.model, None))
    )
    if args.classes is None and args.vocab is None and native:
        raise InputError("give the classes: --classes 'sky,road,car' or --vocab FILE")
    vocab = None
    if args.classes is not None or args.vocab is not None:
        vocab = Vocabulary.from_string(args.classes) if args.classes is not None else Vocabulary.load(args.vocab)
        apply_vocab_options(vocab, args)
    if native and args.model is not None and not Path(args.model).is_dir():
        raise MissingResourceError(f"no model at {args.model}: expected a directory with config.json and weights")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise OutputError(f"cannot write to {args.out}: it exists and is not a directory")
    refuse_protected_out_dir(args.out, args.model)
    items = collect_images(args.images, exclude=args.out)
    refuse_overwriting_inputs(items, args)
    if native:
        assert vocab is not None
        vocab.embed(default_text_encoder(), progress=not args.quiet)  # --quiet: no encoding bar either
    else:
        # the vocabulary must be embedded by the source's own text encoder (CLIP/SigLIP), or be the
        # Mask2Former/OneFormer label set: the driver loads the source once to know it
        segmenter = load_segmenter(args)
        if vocab is None:
            if not isinstance(segmenter.source, LabelledSource):
                raise InputError("give the classes: --classes 'sky,road,car' or --vocab FILE")
            vocab = segmenter.source.label_vocabulary()
        vocab = segmenter.vocabulary(vocab)
    if args.stuff is not None:
        vocab.mark_stuff(args.stuff)
    job = BatchJob(
        vocab,
        task=args.task,
        threshold=args.threshold,
        model=args.model,
        max_size=args.max_size,
        masks=args.masks,
        embed=args.embed,
        runtime=args.runtime,
        device=args.device,
        boxes=args.boxes,
    )
    if args.threads is None and (len(items) > 1 or (args.workers or 1) > 1 or getattr(args, "ray", None)):
        args.threads = 1
    return items, job


def refuse_overwriting_inputs(items: list[BatchItem], args: argparse.Namespace) -> None:
    """Outputs that would replace an input image or the vocabulary file, or each other (x.png's
    overlay and an input named x_overlay.png), lose data silently: refuse before any work."""
    from omniseg.atomic import output_path
    from omniseg.results import OUTPUT_SUFFIXES

    inputs = {item.path.resolve() for item in items}
    if args.vocab:
        inputs.add(Path(args.vocab).resolve())
    out = Path(args.out)
    written: dict[Path, Path] = {}
    for item in items:
        for suffix in OUTPUT_SUFFIXES[args.task]:
            try:  # every output name is checked before the first image: an odd one cannot stop a run midway
                output_path(out, Path(item.key).name, suffix)
            except InputError as exc:
                raise InputError(f"input {str(item.path)!r}: {exc}") from None
            target = out / f"{item.key}{suffix}"
            resolved = target.resolve()
            if resolved in inputs:
                raise InputError(f"the output {target} would overwrite an input file: choose another --out directory")
            if resolved in written:
                raise InputError(f"{written[resolved]} and {item.path} would both write {target}: rename one")
            written[resolved] = item.path


def report_progress(args: argparse.Namespace) -> Callable[[BatchItem, Outcome], None]:
    """What each finished image prints: its first output and a summary, or its error (stderr)."""
    from tqdm import tqdm

    out = Path(args.out)

    def show(item: BatchItem, outcome: Outcome) -> None:
        if outcome.error is not None:
            tqdm.write(f"omniseg: error: {outcome.error}", file=sys.stderr)
        elif not args.quiet:
            first = out / next(iter(outcome.files))
            tqdm.write(f"{item.path} -> {first}  [{outcome.summary}]  {outcome.seconds:.2f}s")

    return show


def finish(args: argparse.Namespace, stats: BatchStats) -> int:
    if not args.quiet and stats.total > 1:
        rate = f", {stats.images_per_second:.2f} images/s" if stats.done else ""
        print(
            f"{stats.done} segmented, {stats.skipped} already done, {stats.failed} failed "
            f"in {stats.seconds:.1f} s{rate} -> {args.out}",
            file=sys.stderr,
        )
    return EXIT_INPUT if stats.failed else EXIT_OK


def run(args: argparse.Namespace) -> int:
    args.ray = None  # `segment` is the local batch
    return run_job(args)


def run_job(args: argparse.Namespace) -> int:
    """The job of `segment` and `batch`: locally (--workers processes) or on Ray Data (args.ray set)."""
    from omniseg.batch import run_batch, run_local

    items, job = prepare(args)
    if args.ray is None:
        workers = args.workers or 1

        def runner(pending, j):
            return run_local(pending, j, workers=workers, threads=args.threads)
    else:
        from omniseg.batch_ray import run_ray

        address = None if args.ray == "local" else args.ray

        def runner(pending, j):
            return run_ray(pending, j, address=address, workers=args.workers, threads=args.threads)

    stats = run_batch(
        items,
        job,
        args.out,
        resume=args.skip_existing,
        progress=not args.quiet,
        runner=runner,
        on_outcome=report_progress(args),
    )
    return finish(args, stats)

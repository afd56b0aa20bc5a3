"""`omniseg segment`: label every pixel of each image with one of the given classes
(--task semantic, the default), or find the objects (--task instance) or both (--task panoptic)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from omniseg.commands import EXIT_INPUT, EXIT_OK, image_size_arg
from omniseg.commands.vocab import add_vocab_options, apply_vocab_options
from omniseg.errors import InputError

if TYPE_CHECKING:  # the CLI imports torch lazily, only when a command runs
    from omniseg.results import InstanceResult, PanopticResult
    from omniseg.segmenter import SemanticResult


def register(sub: argparse._SubParsersAction) -> None:
    seg = sub.add_parser("segment", help="semantic, instance or panoptic segmentation with the given classes")
    seg.add_argument("images", nargs="+", metavar="IMAGE")
    group = seg.add_mutually_exclusive_group()
    group.add_argument("--classes", help="comma-separated class names, e.g. 'sky,road,red car'")
    group.add_argument(
        "--vocab",
        help="a shipped vocabulary (ade150, coco80, ... : see 'omniseg vocab list') or a vocabulary file: "
        "one class per line, synonyms comma-separated",
    )
    add_vocab_options(seg)
    seg.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    seg.add_argument("--model", help="model directory (default: the embedded default model)")
    seg.add_argument(
        "--task",
        choices=("semantic", "instance", "panoptic"),
        default="semantic",
        help="semantic: <stem>.png label map; instance: <stem>_instances.json (COCO results, RLE); "
        "panoptic: <stem>_panoptic.png + .json (COCO panoptic). All write <stem>_overlay.png (default: %(default)s)",
    )
    seg.add_argument(
        "--stuff",
        help="comma-separated classes that are stuff (merged per class, never instances), "
        "e.g. 'sky,road'; a vocabulary line can also end with [stuff]",
    )
    seg.add_argument(
        "--threshold",
        type=float,
        help="semantic: mark pixels whose best score (cosine) is below this unlabeled; "
        "instance/panoptic: drop regions whose score (class probability x objectness) is below this",
    )
    seg.add_argument(
        "--max-size", type=image_size_arg, default=512, help="longest side the model sees (default: %(default)s)"
    )
    seg.add_argument("--skip-existing", action="store_true", help="resume: skip images whose outputs exist")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import omniseg
    from omniseg.results import OUTPUT_SUFFIXES
    from omniseg.vocab import Vocabulary

    if args.classes is None and args.vocab is None:
        raise InputError("give the classes: --classes 'sky,road,car' or --vocab FILE")
    vocab = Vocabulary.from_string(args.classes) if args.classes is not None else Vocabulary.load(args.vocab)
    apply_vocab_options(vocab, args)
    if args.stuff is not None:
        vocab.mark_stuff(args.stuff)
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
        if args.skip_existing and all((out / f"{stem}{s}").is_file() for s in OUTPUT_SUFFIXES[args.task]):
            continue
        try:
            result = segmenter.segment(path, classes=vocab, threshold=args.threshold, task=args.task)
        except InputError as exc:
            print(f"omniseg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        paths = result.save(out, stem)
        if not args.quiet:
            tqdm.write(
                f"{path} -> {next(iter(paths.values()))}  [{_summary(result)}]  {result.timings['total_s']:.2f}s"
            )
    return EXIT_INPUT if failed else EXIT_OK


def _summary(result: SemanticResult | InstanceResult | PanopticResult) -> str:
    """One line per image: the largest classes (semantic) or the best objects/segments."""
    from omniseg.results import InstanceResult
    from omniseg.segmenter import SemanticResult

    if isinstance(result, SemanticResult):
        top = sorted(result.fractions().items(), key=lambda kv: -kv[1])[:5]
        return ", ".join(f"{k} {v:.0%}" for k, v in top)
    items = result.instances if isinstance(result, InstanceResult) else result.segments
    best = ", ".join(f"{result.classes[i.label]} {i.score:.2f}" for i in items[:5])
    noun = "instances" if isinstance(result, InstanceResult) else "segments"
    return f"{len(items)} {noun}" + (f": {best}" if best else "")

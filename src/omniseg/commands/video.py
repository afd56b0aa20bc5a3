"""`omniseg video FRAMES_DIR --first-mask MASK.png`: follow the first mask's objects through the frames;
`omniseg video FRAMES_DIR --classes "car,person" --model sam3:PATH`: track every instance of the names."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from omniseg.commands import EXIT_OK, plan_outputs, tracked_names
from omniseg.commands.backend_args import add_model_arguments, example_model_from_args, load_segmenter
from omniseg.errors import InputError

if TYPE_CHECKING:
    from omniseg.results import IdMapResult


def register(sub: argparse._SubParsersAction) -> None:
    vd = sub.add_parser(
        "video", help="propagate the objects of the first frame's mask through the frames, or track named concepts"
    )
    vd.add_argument("frames", metavar="FRAMES_DIR", help="a folder of frames; file names sort in time order")
    vd.add_argument("--first-mask", metavar="MASK.png", help="id mask of the first frame (0 = background)")
    vd.add_argument(
        "--classes",
        help="instead of --first-mask: comma-separated names whose every instance is found and tracked "
        "(needs --model sam3:PATH, a SAM 3 video checkpoint); the JSON names each object id",
    )
    vd.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    vd.add_argument(
        "--context",
        type=int,
        default=3,
        help="previous frames (with their predicted masks) used as extra examples (default: %(default)s)",
    )
    add_model_arguments(vd, task="video")
    vd.add_argument("--quiet", action="store_true")
    vd.set_defaults(func=run)


def list_frames(directory: str | Path) -> list[Path]:
    from omniseg.data.uniform import IMAGE_EXTS

    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"frames directory not found: {folder}")
    frames = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not frames:
        raise InputError(f"no frames (images) in {folder}")
    return frames


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omniseg.commands.incontext import check_mask_size
    from omniseg.images import load_image
    from omniseg.results import OUTPUT_SUFFIXES, IdMapResult
    from omniseg.tasks.common import as_id_mask
    from omniseg.tasks.video import VideoConfig

    frames = list_frames(args.frames)
    if (args.first_mask is None) == (args.classes is None):
        raise InputError("give --first-mask MASK.png (propagate its objects) or --classes 'a,b' (track them)")
    protected = [args.first_mask] if args.first_mask else []
    stems = plan_outputs(frames, args.out, OUTPUT_SUFFIXES["ids"], protected=protected, model=args.model)
    if args.context < 0:
        raise InputError(f"--context must be >= 0, got {args.context}")
    if args.classes is not None:
        names = tracked_names(args.classes)
        segmenter = load_segmenter(args, task="track")
        results: Iterator[IdMapResult] = segmenter.video(frames, classes=names)
    else:
        first_mask = as_id_mask(args.first_mask, "first mask")
        check_mask_size(frames[0], Path(args.first_mask), "first mask")
        seggpt = example_model_from_args(args)
        if seggpt is not None:
            labels = seggpt.video(frames, first_mask, context=args.context)
            results = (
                IdMapResult(load_image(f), label, args.model, frame=i)
                for i, (f, label) in enumerate(zip(frames, labels, strict=False))
            )
        else:
            segmenter = load_segmenter(args, task="video")
            results = segmenter.video(frames, first_mask, VideoConfig(context=args.context))
    bar = tqdm(zip(stems, results, strict=False), total=len(frames), desc="video", disable=args.quiet)
    for stem, result in bar:
        result.save(args.out, stem)
    if not args.quiet:
        print(f"{len(frames)} frames -> {args.out}")
    return EXIT_OK

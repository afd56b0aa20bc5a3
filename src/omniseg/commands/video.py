"""`omniseg video FRAMES_DIR --first-mask MASK.png`: follow the first mask's objects through the frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from omniseg.commands import EXIT_OK, plan_outputs
from omniseg.commands.backend_args import add_model_arguments, example_model_from_args, load_segmenter
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    vd = sub.add_parser("video", help="propagate the objects of the first frame's mask through the frames")
    vd.add_argument("frames", metavar="FRAMES_DIR", help="a folder of frames; file names sort in time order")
    vd.add_argument(
        "--first-mask", required=True, metavar="MASK.png", help="id mask of the first frame (0 = background)"
    )
    vd.add_argument("--out", default="omniseg_out", help="output directory (default: %(default)s)")
    vd.add_argument(
        "--context",
        type=int,
        default=3,
        help="previous frames (with their predicted masks) used as extra examples (default: %(default)s)",
    )
    add_model_arguments(vd, examples=True)
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
    from omniseg.io import load_image
    from omniseg.results import OUTPUT_SUFFIXES, IdMapResult
    from omniseg.tasks.common import as_id_mask
    from omniseg.tasks.video import VideoConfig, video

    frames = list_frames(args.frames)
    stems = plan_outputs(frames, args.out, OUTPUT_SUFFIXES["ids"], protected=[args.first_mask], model=args.model)
    first_mask = as_id_mask(args.first_mask, "first mask")
    check_mask_size(frames[0], Path(args.first_mask), "first mask")
    if args.context < 0:
        raise InputError(f"--context must be >= 0, got {args.context}")
    seggpt = example_model_from_args(args)
    if seggpt is not None:
        model_id = args.model
        labels = seggpt.video(frames, first_mask, context=args.context)
    else:
        segmenter = load_segmenter(args)
        model_id = segmenter.model_id
        labels = video(segmenter, frames, first_mask, VideoConfig(context=args.context))
    bar = tqdm(zip(frames, stems, strict=True), total=len(frames), desc="video", disable=args.quiet, dynamic_ncols=True)
    for position, ((frame, stem), label) in enumerate(zip(bar, labels, strict=False)):
        IdMapResult(load_image(frame), label, model_id, frame=position).save(args.out, stem)
    if not args.quiet:
        print(f"{len(frames)} frames -> {args.out}")
    return EXIT_OK

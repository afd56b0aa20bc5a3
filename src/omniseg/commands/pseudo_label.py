"""`omniseg pseudo-label MODEL IMAGES_DIR... --out DIR`: a teacher model annotates unlabeled images
with class-agnostic masks (OpenSeg sec. 3.3); the output is a dataset for `task: pseudo`."""

from __future__ import annotations

import argparse

from omniseg.commands import EXIT_OK, add_max_size_argument


def register(sub: argparse._SubParsersAction) -> None:
    pl = sub.add_parser(
        "pseudo-label",
        help="annotate unlabeled images with a trained model's class-agnostic masks (teacher -> student)",
    )
    pl.add_argument("model", metavar="MODEL", help="teacher model directory ('default' = the embedded model)")
    pl.add_argument("images", metavar="IMAGES_DIR", nargs="+", help="folders of images (one level of subfolders)")
    pl.add_argument("--out", required=True, help="output dataset directory (images/, masks/, classes.json)")
    pl.add_argument(
        "--min-score", type=float, default=0.3, help="regions below this objectness are dropped (default: %(default)s)"
    )
    pl.add_argument(
        "--min-area",
        type=float,
        default=0.002,
        help="segments smaller than this fraction of the image become unlabeled (default: %(default)s)",
    )
    pl.add_argument("--limit", type=int, help="at most N images per folder")
    add_max_size_argument(pl)
    pl.add_argument("--quiet", action="store_true")
    pl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omniseg.registry import load
    from omniseg.train.pseudo import pseudo_label_folders

    segmenter = load(None if args.model == "default" else args.model, max_size=args.max_size)
    report = pseudo_label_folders(
        segmenter,
        args.images,
        args.out,
        min_score=args.min_score,
        min_area=args.min_area,
        limit=args.limit,
        progress=not args.quiet,
    )
    print(f"{report['images']} images, {report['mean_segments']:.1f} segments per image -> {args.out}")
    return EXIT_OK

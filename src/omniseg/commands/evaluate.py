"""`omniseg eval`: metrics of a model on a dataset in the uniform format.

--task semantic (default): mIoU / grounding mIoU; --task panoptic: PQ, SQ, RQ (all/things/stuff,
panopticapi's rules); --task instance: mask AP, AP50, AP75 (pycocotools COCOeval).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omniseg.commands import EXIT_OK, image_size_arg
from omniseg.commands.vocab import add_vocab_options, apply_vocab_options
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="mIoU, grounding mIoU, PQ or mask AP on a dataset in the uniform format")
    ev.add_argument("dataset", metavar="DATASET_DIR")
    ev.add_argument(
        "--task",
        choices=("semantic", "panoptic", "instance"),
        default="semantic",
        help="semantic: mIoU; panoptic: PQ/SQ/RQ; instance: mask AP (needs instances/) (default: %(default)s)",
    )
    ev.add_argument("--grounding", action="store_true", help="per image, only the classes in its ground truth")
    ev.add_argument(
        "--stuff",
        help="panoptic/instance: comma-separated dataset classes to treat as stuff (default: with instances/ "
        "every class is a thing, without every class is stuff; 'background' is void)",
    )
    ev.add_argument(
        "--vocab",
        help="semantic: prompts for the dataset's classes, a shipped vocabulary (e.g. camvid11-pe) or a file "
        "with one line per dataset class in the dataset's order (synonyms comma-separated)",
    )
    add_vocab_options(ev)
    ev.add_argument("--json", help="write the report as JSON here")
    ev.add_argument("--limit", type=int, help="evaluate the first N images only")
    ev.add_argument(
        "--split",
        choices=("all", "train", "val"),
        default="all",
        help="which part of the fixed-seed split to evaluate (default: %(default)s)",
    )
    ev.add_argument("--val-fraction", type=float, default=0.2)
    ev.add_argument("--split-seed", type=int, default=0)
    ev.add_argument("--model", help="model directory (default: the embedded default model)")
    ev.add_argument("--max-size", type=image_size_arg, default=512)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import omniseg
    from omniseg.io import atomic_write_text

    if not Path(args.dataset).is_dir():
        raise InputError(f"dataset directory not found: {args.dataset}")
    if args.grounding and args.task != "semantic":
        raise InputError("--grounding applies to --task semantic only")
    if args.stuff is not None and args.task == "semantic":
        raise InputError("--stuff applies to --task panoptic and --task instance only")
    prompting = args.vocab is not None or args.templates is not None or args.template_mode is not None
    if prompting and args.task != "semantic":
        raise InputError("--vocab, --templates and --template-mode apply to --task semantic only")
    stuff = tuple(n.strip() for n in (args.stuff or "").split(",") if n.strip())
    split = {"split": args.split, "val_fraction": args.val_fraction, "split_seed": args.split_seed}
    segmenter = omniseg.load(args.model, max_size=args.max_size)
    if args.task == "panoptic":
        from omniseg.eval import panoptic

        report = panoptic.evaluate_panoptic(
            segmenter, args.dataset, stuff=stuff, limit=args.limit, progress=not args.quiet, **split
        )
        table = panoptic.format_table(report)
    elif args.task == "instance":
        from omniseg.eval import instance

        report = instance.evaluate_instances(
            segmenter, args.dataset, stuff=stuff, limit=args.limit, progress=not args.quiet, **split
        )
        table = instance.format_table(report)
    else:
        from omniseg.data.uniform import UniformDataset
        from omniseg.eval.semantic import evaluate_semantic, format_table
        from omniseg.vocab import Vocabulary

        vocabulary = None
        if prompting:
            vocabulary = (
                Vocabulary.load(args.vocab)
                if args.vocab is not None
                else Vocabulary.from_names(UniformDataset(args.dataset).classes)
            )
            apply_vocab_options(vocabulary, args)
        report = evaluate_semantic(
            segmenter,
            args.dataset,
            grounding=args.grounding,
            limit=args.limit,
            progress=not args.quiet,
            vocabulary=vocabulary,
            **split,
        )
        table = format_table(report)
    print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return EXIT_OK

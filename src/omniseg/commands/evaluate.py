"""`omniseg eval`: metrics of a model on a dataset in the uniform format.

--task semantic (default): mIoU / grounding mIoU; --task panoptic: PQ, SQ, RQ (all/things/stuff,
panopticapi's rules); --task instance: mask AP, AP50, AP75 (pycocotools COCOeval); --task incontext:
few-shot mIoU (FSS episodes); --task video: J&F (DAVIS) with the copy-first-mask baseline;
--task interactive: NoC@85/90 with simulated clicks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from omniseg.commands import EXIT_OK, tracked_names
from omniseg.commands.backend_args import add_model_arguments, load_segmenter
from omniseg.commands.vocab import add_vocab_options, apply_vocab_options
from omniseg.errors import InputError

if TYPE_CHECKING:  # the CLI loads torch only once a command runs
    from omniseg.segmenter import Segmenter


LOAD_TASKS = {"interactive": "click", "video": "video", "incontext": "incontext"}  # eval task -> load(task=)


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="mIoU, grounding mIoU, PQ or mask AP on a dataset in the uniform format")
    ev.add_argument("dataset", metavar="DATASET_DIR")
    ev.add_argument(
        "--task",
        choices=("semantic", "panoptic", "instance", "incontext", "video", "interactive"),
        default="semantic",
        help="semantic: mIoU; panoptic: PQ/SQ/RQ; instance: mask AP (needs instances/); incontext: few-shot "
        "mIoU; video: J&F on images/<sequence>/<frame>; interactive: NoC@85/90 (default: %(default)s)",
    )
    ev.add_argument(
        "--shots",
        default="1",
        help="incontext: support images per episode, or a comma-separated list to compare, e.g. 1,2,4,8 "
        "(the same episodes for every K) (default: %(default)s)",
    )
    ev.add_argument("--episodes", type=int, default=40, help="incontext: episodes (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=0, help="incontext: episode sampling seed (default: %(default)s)")
    ev.add_argument(
        "--level",
        choices=("category", "instance"),
        default="category",
        help="incontext: SegGPT's category or instance prompt (default: %(default)s)",
    )
    ev.add_argument(
        "--method",
        choices=("knn", "prototype"),
        default="knn",
        help="incontext: match target pixels to the examples' feature memory (knn) or to the ensemble "
        "prototypes (default: %(default)s)",
    )
    ev.add_argument(
        "--metric",
        choices=("default", "recall"),
        default="default",
        help="recall: class-agnostic mask recall at IoU 0.5/0.7/0.9 of the top --proposals masks over the "
        "ground-truth segments (OpenSeg Table 1); default: the task's own metric",
    )
    ev.add_argument("--proposals", type=int, default=100, help="recall: proposals per image (default: %(default)s)")
    ev.add_argument(
        "--proposals-from",
        choices=("model", "superpixels"),
        default="model",
        help="recall: the model's proposals (its masks, their connected components and a hierarchy over its "
        "pixel features; see omniseg.eval.proposals), or the multi-scale superpixel hierarchy baseline",
    )
    ev.add_argument(
        "--work-size", type=int, default=320, help="recall: longer image side scored at (default: %(default)s)"
    )
    ev.add_argument(
        "--pixel-weight",
        type=float,
        help="semantic: weight of the per-pixel (ESS) logits against eq. 6; 1 = nearest class per pixel "
        "(default: the model's own)",
    )
    ev.add_argument("--max-clicks", type=int, default=20, help="interactive: click budget (default: %(default)s)")
    ev.add_argument("--grounding", action="store_true", help="per image, only the classes in its ground truth")
    ev.add_argument(
        "--classes",
        help="video: track these names without a first mask (comma-separated; a concept tracker such as "
        "--model sam3:DIR with a SAM 3 video checkpoint) instead of propagating each sequence's first mask",
    )
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
    ev.add_argument(
        "--report",
        metavar="DIR",
        help="semantic: write DIR/report.html (metrics, per-class IoU chart, row-normalised confusion matrix, "
        "best/worst example overlays; pictures embedded and beside it as PNGs)",
    )
    ev.add_argument(
        "--report-examples", type=int, default=4, help="--report: best and worst images shown (default: %(default)s)"
    )
    ev.add_argument("--limit", type=int, help="evaluate the first N images (video: sequences) only")
    ev.add_argument("--images", metavar="DIR", help="a COCO JSON dataset's image folder, when not beside the JSON")
    ev.add_argument(
        "--split",
        choices=("all", "train", "val"),
        help="which part of the fixed-seed split to evaluate (default: all; incontext and interactive: val, "
        "few-shot supports then come from the rest)",
    )
    ev.add_argument("--val-fraction", type=float, default=0.2)
    ev.add_argument("--split-seed", type=int, default=0)
    add_model_arguments(ev, boxes=True)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=run)


def set_pixel_weight(segmenter: Segmenter, weight: float) -> None:
    """--pixel-weight: the native model's per-pixel share of the semantic logits (ESS / lseg heads)."""
    from omniseg.backends.native import NativeSource

    source = segmenter.source
    config = getattr(getattr(source, "network", None), "config", None)
    if (
        not isinstance(source, NativeSource)
        or config is None
        or not 0 <= weight <= 1
        or not hasattr(config, "pixel_head")
    ):
        raise InputError("--pixel-weight must be in [0, 1] and applies to the native model (PyTorch runtime)")
    if weight > 0 and not config.pixel_head:
        raise InputError("--pixel-weight > 0 needs a model with a pixel head (ESS or lseg)")
    source.pixel_weight = weight


def parse_shots(text: str) -> list[int]:
    try:
        shots = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--shots takes whole numbers, e.g. 1 or 1,2,4,8; got {text!r}") from None
    if not shots or min(shots) < 1:
        raise InputError(f"--shots must be at least 1, got {text!r}")
    return sorted(set(shots))


def run(args: argparse.Namespace) -> int:
    from omniseg.data.dataset import open_dataset

    if not Path(args.dataset).is_dir() and not (args.dataset.endswith(".json") and Path(args.dataset).is_file()):
        raise InputError(f"dataset not found: {args.dataset} (a dataset directory or a COCO JSON file)")
    if args.images is not None and not args.dataset.endswith(".json"):
        raise InputError("--images applies to a COCO JSON dataset only")
    if args.grounding and args.task != "semantic":
        raise InputError("--grounding applies to --task semantic only")
    if args.stuff is not None and args.task == "semantic":
        raise InputError("--stuff applies to --task panoptic and --task instance only")
    if args.report is not None and args.task != "semantic":
        raise InputError(
            f"--report supports --task semantic only (metrics, per-class IoU, confusion matrix, best/worst "
            f"overlays); for --task {args.task} use --json"
        )
    prompting = args.vocab is not None or args.templates is not None or args.template_mode is not None
    if prompting and args.task != "semantic":
        raise InputError("--vocab, --templates and --template-mode apply to --task semantic only")
    stuff = tuple(n.strip() for n in (args.stuff or "").split(",") if n.strip())
    default_split = "val" if args.task in ("incontext", "interactive") else "all"
    split = {"split": args.split or default_split, "val_fraction": args.val_fraction, "split_seed": args.split_seed}
    shots = parse_shots(args.shots) if args.task == "incontext" else [1]
    if args.task == "incontext" and args.limit is not None:
        raise InputError("--limit does not apply to --task incontext: use --episodes")
    if args.task == "video" and args.split:
        raise InputError("--split does not apply to --task video (every sequence of the dataset is scored)")
    from omniseg.extras import require

    if args.report is not None:
        require("matplotlib", "report", "--report")
    if args.metric == "recall" and args.proposals_from == "superpixels":
        require("skimage", "report", "the superpixel proposals")
    if args.metric == "recall":
        from omniseg.eval import proposals

        if args.task != "semantic" or args.proposals < 1:
            raise InputError("--metric recall takes no --task and needs --proposals >= 1")
        if args.proposals_from == "superpixels":
            proposer, source = proposals.superpixel_proposer(args.seed), "superpixels"
        else:
            segmenter = load_segmenter(args)
            proposer, source = proposals.model_proposer(segmenter), segmenter.model_id
        report = proposals.evaluate_recall(
            proposer,
            open_dataset(args.dataset, args.images),
            source,
            proposals=args.proposals,
            work_size=args.work_size,
            limit=args.limit,
            progress=not args.quiet,
            **split,
        )
        return _finish(args, report, proposals.format_recall(report))
    # the role a kind plays for the evaluated task (registry.TASK_ROLES): sam2:DIR is a click model for
    # NoC, a video checkpoint for J&F; sam3:DIR its exemplar prompts for few-shot
    tracked = video_classes(args)
    segmenter = load_segmenter(args, task="track" if tracked else LOAD_TASKS.get(args.task))
    if args.pixel_weight is not None:
        set_pixel_weight(segmenter, args.pixel_weight)
    if args.task == "video":  # the video layout (images/<sequence>/<frame>), read by eval.video
        from omniseg.eval.video import evaluate_video, format_video

        report = evaluate_video(segmenter, args.dataset, limit=args.limit, progress=not args.quiet, classes=tracked)
        return _finish(args, report, format_video(report))
    dataset = open_dataset(args.dataset, args.images)
    if args.task == "incontext":
        from omniseg.eval.fewshot import evaluate_incontext, format_fewshot

        report = evaluate_incontext(
            segmenter,
            dataset,
            shots=shots if len(shots) > 1 else shots[0],
            episodes=args.episodes,
            seed=args.seed,
            level=args.level,
            method=args.method,
            progress=not args.quiet,
            **split,
        )
        table = format_fewshot(report)
    elif args.task == "interactive":
        from omniseg.eval.interactive import evaluate_interactive, format_interactive

        report = evaluate_interactive(
            segmenter, dataset, limit=args.limit, max_clicks=args.max_clicks, progress=not args.quiet, **split
        )
        table = format_interactive(report)
    elif args.task == "panoptic":
        from omniseg.eval import panoptic

        report = panoptic.evaluate_panoptic(
            segmenter, dataset, stuff=stuff, limit=args.limit, progress=not args.quiet, **split
        )
        table = panoptic.format_table(report)
    elif args.task == "instance":
        from omniseg.eval import instance

        report = instance.evaluate_instances(
            segmenter, dataset, stuff=stuff, limit=args.limit, progress=not args.quiet, **split
        )
        table = instance.format_table(report)
    else:
        from omniseg.data.uniform import IGNORE
        from omniseg.eval.report import ReportCollector, write_report
        from omniseg.eval.semantic import evaluate_semantic, format_table
        from omniseg.vocab import Vocabulary

        classes = dataset.classes
        collector = ReportCollector(len(classes), IGNORE, args.report_examples) if args.report else None
        vocabulary = None
        if prompting:
            vocabulary = Vocabulary.load(args.vocab) if args.vocab is not None else Vocabulary.from_names(classes)
            apply_vocab_options(vocabulary, args)
        report = evaluate_semantic(
            segmenter,
            dataset,
            grounding=args.grounding,
            limit=args.limit,
            progress=not args.quiet,
            collector=collector,
            vocabulary=vocabulary,
            **split,
        )
        table = format_table(report)
        if collector is not None:
            table += f"\nreport: {write_report(report, collector, classes, args.report)}"
    return _finish(args, report, table)


def _finish(args: argparse.Namespace, report: dict, table: str) -> int:
    """Print the table; write the JSON report when asked."""
    from omniseg.atomic import atomic_write_text

    print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return EXIT_OK


def video_classes(args: argparse.Namespace) -> list[str] | None:
    """The names ``--classes`` asks ``--task video`` to track (None: propagate the first masks)."""
    if args.classes is None:
        return None
    if args.task != "video":
        raise InputError("--classes applies to --task video (tracking names); other tasks read the dataset's classes")
    return tracked_names(args.classes)

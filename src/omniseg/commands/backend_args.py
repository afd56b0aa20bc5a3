"""The --model / --masks / --embed / --runtime / --device options shared by every command that runs a model
(not a subcommand itself: COMMAND_MODULES does not list it). What the specs mean is decided in one
place, omniseg.registry; these options only carry them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from omniseg.commands import add_max_size_argument

if TYPE_CHECKING:
    from omniseg.backends.seggpt import SegGptBackend
    from omniseg.segmenter import Segmenter

MODEL_HELP = (
    "model: a native model directory (default: the embedded default model) or KIND:PATH of a complete "
    "source (onnx:DIR, mask2former:PATH, oneformer:PATH, sam3:PATH, clipseg:PATH; PATH: a save_pretrained "
    "directory or a hub id in the local cache)"
)
DEVICE_HELP = (
    "where the model runs: cpu, cuda, cuda:N or mps (what this machine's torch has; every model but "
    "mask2former/oneformer, clip/siglip, sam and seggpt, which run on the CPU) (default: %(default)s)"
)
# what --model may also be, per command (a kind answering that command's task by itself)
TASK_MODEL_HELP = {
    "click": ", or sam2:PATH, sam3-tracker:PATH, edgetam:PATH (the model answers the clicks and boxes)",
    "incontext": ", or seggpt:PATH (SegGPT paints the targets) or sam3:PATH (SAM 3's exemplar prompts)",
    "video": ", or seggpt:PATH, or a video checkpoint sam2:PATH / sam3-tracker:PATH / edgetam:PATH (its own "
    "memory), or with --classes sam3:PATH (a SAM 3 video checkpoint tracks the names)",
}


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device, the same for every command that runs a model (checked by backends.device when it loads)."""
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)


def add_model_arguments(parser: argparse.ArgumentParser, task: str | None = None, boxes: bool = False) -> None:
    """--model, --masks, --embed, --runtime, --device and --max-size. ``task``: the command's task when
    --model may also be a kind answering it by itself (TASK_MODEL_HELP); ``boxes``: also --boxes
    (Grounded-SAM: a concept source for the commands that name classes)."""
    parser.add_argument("--model", help=MODEL_HELP + TASK_MODEL_HELP.get(task or "", ""))
    if boxes:
        parser.add_argument(
            "--boxes",
            metavar="KIND:PATH",
            help="boxes for the names from grounding-dino:PATH, turned into masks by --masks sam:PATH, sam2:PATH "
            "or sam3-tracker:PATH (Grounded-SAM)",
        )
    parser.add_argument(
        "--masks",
        metavar="KIND:PATH",
        help="where the masks come from: native, sam:PATH, sam2:PATH (answers clicks and boxes only), "
        "mask2former:PATH or oneformer:PATH "
        "(PATH: a save_pretrained directory or a hub id in the local cache; default: the native model)",
    )
    parser.add_argument(
        "--embed",
        metavar="KIND:PATH",
        help="where region embeddings and the text encoder come from: native, clip:PATH or siglip:PATH "
        "(default: the native model, or the Mask2Former/OneFormer labels of --masks)",
    )
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="run the native model with PyTorch or ONNX Runtime (exported once, cached; "
        "see `omniseg export onnx`) (default: %(default)s)",
    )
    add_device_argument(parser)
    add_max_size_argument(parser)


def load_segmenter(args: argparse.Namespace, task: str | None = None) -> Segmenter:
    """The Segmenter the arguments ask for: composed backends, the ONNX runtime, the native model, or a
    kind answering ``task`` (registry.TASK_ROLES) by itself."""
    from omniseg.registry import load_specs

    return load_specs(args, task=task)


def example_model_from_args(args: argparse.Namespace) -> SegGptBackend | None:
    """The painter when --model is seggpt:PATH (video paints with it), else None."""
    from omniseg.errors import InputError
    from omniseg.registry import load_example_model

    painter = load_example_model(args.model, device=args.device)
    if painter is not None and (args.masks or args.embed or args.runtime != "torch"):
        raise InputError("--model seggpt:PATH paints the targets itself: drop --masks/--embed/--runtime")
    return painter

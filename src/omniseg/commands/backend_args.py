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
    "source (onnx:DIR, mask2former:PATH, oneformer:PATH, sam3:PATH; PATH: a save_pretrained directory or a hub "
    "id in the local cache)"
)
DEVICE_HELP = (
    "where the model runs: cpu, cuda, cuda:N or mps (what this machine's torch has; native and sam3 models) "
    "(default: %(default)s)"
)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device, the same for every command that runs a model (checked by backends.device when it loads)."""
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)


def add_model_arguments(parser: argparse.ArgumentParser, examples: bool = False) -> None:
    """--model, --masks, --embed, --runtime, --device and --max-size. ``examples``: --model may also be
    seggpt:PATH (incontext, video: SegGPT paints the targets itself)."""
    help_text = MODEL_HELP + (", or seggpt:PATH to run SegGPT" if examples else "")
    parser.add_argument("--model", help=help_text)
    parser.add_argument(
        "--masks",
        metavar="KIND:PATH",
        help="where the masks come from: native, sam:PATH, mask2former:PATH or oneformer:PATH "
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


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter the arguments ask for: composed backends, the ONNX runtime or the native model."""
    from omniseg.registry import load

    return load(
        args.model, max_size=args.max_size, masks=args.masks, embed=args.embed, runtime=args.runtime, device=args.device
    )


def example_model_from_args(args: argparse.Namespace) -> SegGptBackend | None:
    """The painter when --model is seggpt:PATH (example-based commands), else None."""
    from omniseg.errors import InputError
    from omniseg.registry import load_example_model

    painter = load_example_model(args.model)
    if painter is not None and (args.masks or args.embed or args.runtime != "torch"):
        raise InputError("--model seggpt:PATH paints the targets itself: drop --masks/--embed/--runtime")
    return painter

"""The --masks / --embed / --runtime options shared by the commands that build a Segmenter
(not a subcommand itself: COMMAND_MODULES does not list it)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter


def add_backend_arguments(parser: argparse.ArgumentParser, runtime: bool = False) -> None:
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
    if runtime:
        parser.add_argument(
            "--runtime",
            choices=("torch", "onnx"),
            default="torch",
            help="run the native model with PyTorch or ONNX Runtime (exported once, cached; "
            "see `omniseg export onnx`) (default: %(default)s)",
        )


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter the arguments ask for: composed backends, the ONNX runtime or the native model."""
    import omniseg
    from omniseg.errors import InputError

    masks, embed = getattr(args, "masks", None), getattr(args, "embed", None)
    onnx = getattr(args, "runtime", "torch") == "onnx"
    if onnx and (masks or embed):
        raise InputError("--runtime onnx runs the native model only: drop --masks/--embed or use --runtime torch")
    return omniseg.load(
        args.model, max_size=args.max_size, masks=masks, embed=embed, runtime="onnx" if onnx else "torch"
    )


def seggpt_from_args(args: argparse.Namespace):
    """The SegGPT backend when --model is seggpt:PATH (example-based commands), else None."""
    from omniseg.errors import InputError

    if not (args.model or "").lower().startswith("seggpt:"):
        return None
    if getattr(args, "masks", None) or getattr(args, "embed", None):
        raise InputError("--model seggpt:PATH paints the targets itself: drop --masks/--embed")
    from omniseg.backends import parse_spec
    from omniseg.backends.seggpt import SegGptBackend

    return SegGptBackend(parse_spec(args.model, ("seggpt",), "--model")[1])  # type: ignore[arg-type]


def add_example_model_argument(parser: argparse.ArgumentParser) -> None:
    """--model of the example-based commands (incontext, video), which can also run SegGPT."""
    parser.add_argument(
        "--model",
        help="model directory (default: the embedded default model), or seggpt:PATH to run SegGPT "
        "(a save_pretrained directory or a hub id in the local cache)",
    )

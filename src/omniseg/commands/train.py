"""`omniseg train CONFIG`: train the native model (resumes from its checkpoint)."""

from __future__ import annotations

import argparse
import os

from omniseg.commands import EXIT_OK
from omniseg.commands.backend_args import add_device_argument


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train the native model from a YAML config (resumes by default)")
    tr.add_argument("config", metavar="CONFIG")
    tr.add_argument("--steps", type=int, help="override the number of steps")
    tr.add_argument("--out", help="override the output directory")
    tr.add_argument("--no-resume", action="store_true", help="start from scratch even if a checkpoint exists")
    add_device_argument(tr)
    tr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omniseg.backends.device import resolve_device
    from omniseg.errors import InputError
    from omniseg.extras import require

    device = resolve_device(args.device)  # unknown or absent: one line, exit 2
    if device.type != "cpu":
        raise InputError(f"training runs on the CPU only so far (its losses build CPU tensors): drop --device {device}")

    for module in ("yaml", "matplotlib"):
        require(module, "train", "omniseg train")
    from omniseg.train.config import TrainConfig
    from omniseg.train.loop import train

    cfg = TrainConfig.from_yaml(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.out is not None:
        cfg.out_dir = args.out
    final = train(cfg, resume=not args.no_resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the whole job
        print(f"model written to {final}")
    return EXIT_OK

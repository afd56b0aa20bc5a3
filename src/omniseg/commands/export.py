"""`omniseg export onnx --out DIR`: the native model as an ONNX graph for ONNX Runtime."""

from __future__ import annotations

import argparse

from omniseg.commands import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="export the native model (onnx) for `--runtime onnx`")
    ex.add_argument("format", choices=("onnx",), help="export format")
    ex.add_argument("--out", required=True, help="output directory: model.onnx and config.json")
    ex.add_argument("--model", help="model directory (default: the embedded default model)")
    ex.add_argument("--check", action="store_true", help="also compare ONNX Runtime with PyTorch on a random image")
    ex.add_argument("--quiet", action="store_true")
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omniseg.export.onnx import compare_with_torch, export_onnx

    path = export_onnx(args.out, args.model)
    if not args.quiet:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.check:
        diffs = compare_with_torch(path.parent, args.model)
        if not args.quiet:
            print("max |onnx - torch|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return EXIT_OK

"""`omniseg bench vocab`: per-image latency, peak RSS and approximate-search agreement from 10^2 to
10^6 classes in one run (omniseg.eval.scale)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from omniseg.commands import EXIT_OK, add_max_size_argument, positive_int
from omniseg.errors import InputError


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 100,1000,1e6; got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: 'bench vocab' times segmentation from 10^2 to 10^6 classes")
    kinds = bench.add_subparsers(dest="benchmark", required=True)
    vocab = kinds.add_parser("vocab", help="latency, peak RSS and search agreement per vocabulary size")
    vocab.add_argument("--sizes", type=_sizes, default=_sizes("100,1000,10000,100000,1000000"))
    vocab.add_argument("--images", nargs="*", metavar="IMAGE", help="images to segment (default: 8 CamVid frames)")
    vocab.add_argument("--num-images", type=positive_int, default=8, help="default images timed (default: %(default)s)")
    vocab.add_argument("--repeats", type=positive_int, default=1, help="passes over the images (default: %(default)s)")
    vocab.add_argument("--top-k", type=int, default=None, help="classes per region from the index (default: 5)")
    vocab.add_argument("--exact-max", type=int, help="largest vocabulary (prompts) searched exactly")
    vocab.add_argument("--hnsw-max", type=int, help="largest vocabulary (prompts) with an HNSW index; IVF above")
    vocab.add_argument("--ef-search", type=int, help="HNSW efSearch (up to --hnsw-max)")
    vocab.add_argument("--large-ef-search", type=int, help="efSearch of the HNSW-SQ8 index above --hnsw-max")
    vocab.add_argument("--nprobe", type=int, help="IVF lists probed per query")
    vocab.add_argument("--large-index", choices=("hnsw_sq8", "ivf"), help="index above --hnsw-max (default: hnsw_sq8)")
    vocab.add_argument("--no-agreement", action="store_true", help="skip the exact-search comparison")
    vocab.add_argument(
        "--agreement-images",
        type=positive_int,
        metavar="N",
        help="compare approximate with exact search on the first N default images (default: the timed images)",
    )
    vocab.add_argument("--model", help="model directory (default: the embedded default model)")
    add_max_size_argument(vocab)
    vocab.add_argument("--json", help="write the report as JSON here")
    vocab.set_defaults(func=run_vocab)


def run_vocab(args: argparse.Namespace, vocabulary=None, extra: dict | None = None) -> int:
    """vocabulary / extra: for benchmarks/bench_vocab.py (a pre-embedded vocabulary, notes for the JSON)."""

    import numpy as np
    from PIL import Image

    from omniseg.atomic import atomic_write_text
    from omniseg.eval.scale import default_images, run_vocab_benchmark
    from omniseg.registry import load
    from omniseg.search import SearchConfig

    if args.images:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in args.images]
    else:
        images = default_images(args.num_images)
    if not images:
        raise InputError("no images to benchmark")
    overrides = {
        "exact_max": args.exact_max,
        "hnsw_max": args.hnsw_max,
        "hnsw_ef_search": args.ef_search,
        "ivf_nprobe": args.nprobe,
        "large_kind": args.large_index,
        "large_ef_search": args.large_ef_search,
    }
    config = replace(SearchConfig(), **{k: v for k, v in overrides.items() if v is not None})
    segmenter = load(args.model, max_size=args.max_size)
    if args.top_k is not None:
        segmenter.top_k = args.top_k
    report = run_vocab_benchmark(
        segmenter,
        args.sizes,
        images,
        repeats=args.repeats,
        config=config,
        agreement=not args.no_agreement,
        vocabulary=vocabulary,
        agreement_images=default_images(args.agreement_images) if args.agreement_images else None,
    )
    report.update(extra or {})
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return EXIT_OK

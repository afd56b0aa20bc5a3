"""End-to-end `segment` latency of the default model: 512 px image, 20 classes, model loaded once.

    .venv/bin/python benchmarks/bench_segment.py [--repeats 30] [--model DIR] [--compare-recognizer] [--json OUT]

Reports the median (and p10/p90) of Segmenter.segment() wall time, which includes reading the
image, the model forward pass, eq. 6 at full resolution and building the uint8 label map; writing
PNGs is excluded (disk, not model). Vocabulary embeddings are cached after the first call, as in a
server or batch job.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

import omniseg

CLASSES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
    "grass",
    "water",
    "person",
    "dog",
    "cat",
    "chair",
    "table",
    "boat",
    "mountain",
]


def test_image(size: int) -> np.ndarray:
    """scikit-image's astronaut photo resized to size x size (random pixels without scikit-image)."""
    try:
        import skimage.data
        from PIL import Image

        return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size)))
    except ImportError:
        return np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--model", help="a native model directory (default: the embedded default)")
    parser.add_argument(
        "--compare-recognizer",
        action="store_true",
        help="also time every call without the frozen recognizer (interleaved, same run) and report the ratio",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = test_image(args.size)
    t0 = time.perf_counter()
    seg = omniseg.load(args.model)
    load_s = time.perf_counter() - t0
    vocab = seg.vocabulary(CLASSES)
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        seg.segment(image, classes=vocab)
    times, without = [], []
    recognizer, fusion = seg.source.network.recognizer, seg.fusion
    for _ in range(args.repeats):
        t = time.perf_counter()
        seg.segment(image, classes=vocab)
        times.append(time.perf_counter() - t)
        if args.compare_recognizer:  # the same call with the recognizer switched off
            seg.source.network.recognizer, seg.fusion = None, None
            t = time.perf_counter()
            seg.segment(image, classes=vocab)
            without.append(time.perf_counter() - t)
            seg.source.network.recognizer, seg.fusion = recognizer, fusion
    q = statistics.quantiles(times, n=10)
    report = {
        "benchmark": "segment end-to-end",
        "model": seg.model_id,
        "image": f"{args.size}x{args.size}",
        "classes": len(CLASSES),
        "threads": args.threads,
        "repeats": args.repeats,
        "median_s": round(statistics.median(times), 4),
        "p10_s": round(q[0], 4),
        "p90_s": round(q[-1], 4),
        "load_s": round(load_s, 2),
        **(
            {
                "median_without_recognizer_s": round(statistics.median(without), 4),
                "recognizer_ratio": round(statistics.median(times) / statistics.median(without), 3),
            }
            if without
            else {}
        ),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

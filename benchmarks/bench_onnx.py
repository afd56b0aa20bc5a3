"""ONNX Runtime vs PyTorch eager for the default model, in the same run (issue 6, goal ONNX <= 0.6x eager).

    .venv/bin/python benchmarks/bench_onnx.py [--repeats 30] [--threads 2] [--json OUT]

Two figures, each the median over ``--repeats`` runs after 3 warm-ups, the two runtimes alternating
run by run so that a change in machine load hits both alike:
- model: the forward pass alone on a 512x512 image (what the runtime changes);
- segment: Segmenter.segment() end to end (image conversion, forward, eq. 6 at full size, label
  map; 20 classes, vocabulary cached), as benchmarks/bench_segment.py measures it.
The ONNX model is exported once into the cache (omniseg.export.onnx.cached_export); its export
time is reported apart. Outputs are compared too (max |onnx - torch|).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from bench_segment import CLASSES, test_image

import omniseg
from omniseg.export.onnx import OUTPUTS, OnnxOpenSeg, cached_export


def _alternate(a, b, repeats: int) -> tuple[list[float], list[float]]:
    for _ in range(3):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return ta, tb


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=10)
    return {"median_s": round(statistics.median(times), 4), "p10_s": round(q[0], 4), "p90_s": round(q[-1], 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    onnx_dir = cached_export()
    export_s = time.perf_counter() - t0
    eager = omniseg.load(max_size=args.size)
    onnx = omniseg.load(max_size=args.size, runtime="onnx")
    assert isinstance(onnx.model, OnnxOpenSeg) and onnx.model.session.get_session_options().intra_op_num_threads
    load_before = os.getloadavg()[0]
    image = test_image(args.size)
    vocab = eager.vocabulary(CLASSES)
    x = eager._prepare(image)

    with torch.inference_mode():
        expected, got = eager.model(x), onnx.model(x)
        max_diff = {k: float((expected[k] - got[k]).abs().max()) for k in OUTPUTS}
        model_eager, model_onnx = _alternate(lambda: eager.model(x), lambda: onnx.model(x), args.repeats)
        seg_eager, seg_onnx = _alternate(
            lambda: eager.segment(image, classes=vocab), lambda: onnx.segment(image, classes=vocab), args.repeats
        )
    labels_equal = float(
        (eager.segment(image, classes=vocab).label_map == onnx.segment(image, classes=vocab).label_map).mean()
    )
    report = {
        "benchmark": "ONNX Runtime vs PyTorch eager, default model",
        "image": f"{args.size}x{args.size}",
        "classes": len(CLASSES),
        "threads": args.threads,
        "repeats": args.repeats,
        "model_forward": {"eager": _stats(model_eager), "onnx": _stats(model_onnx)},
        "segment": {"eager": _stats(seg_eager), "onnx": _stats(seg_onnx)},
        "ratio_model_onnx_over_eager": round(statistics.median(model_onnx) / statistics.median(model_eager), 3),
        "ratio_segment_onnx_over_eager": round(statistics.median(seg_onnx) / statistics.median(seg_eager), 3),
        "max_abs_diff": {k: float(f"{v:.3g}") for k, v in max_diff.items()},
        "label_map_agreement": round(labels_equal, 6),
        "export_s": round(export_s, 1),
        "onnx_dir": str(onnx_dir),
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

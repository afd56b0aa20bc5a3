"""Tiny-model plumbing of issue 16's promptable, video and exemplar kinds through the existing evaluators.

Builds the tiny random checkpoints of tests/tiny_hf16.py, loads each through ``omniseg.load`` as its
registered kind, and runs the NoC (click), J&F (video) and few-shot (incontext) evaluators on a small
synthetic scene set written here (4 images of a red and a green block moving 2 px each). Random weights:
the numbers mean nothing about the models, they prove the kind reaches the evaluator and comes back
with finite numbers in range (the same checks as tests/test_issue16_kinds.py).

    PYTHONPATH=src:tests nice -n 10 python benchmarks/plumbing_issue16.py --out benchmarks/results/plumbing_issue16.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tiny_hf16
from omniseg import registry
from omniseg.eval.fewshot import evaluate_incontext
from omniseg.eval.interactive import evaluate_interactive
from omniseg.eval.video import evaluate_video
from tiny_hf16 import write_scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uniform = write_scenes(root / "uniform", "", ["background", "red", "green"])
        video = write_scenes(root / "video", "seq")
        ckpt = {k: getattr(tiny_hf16, f"make_{k}")(root / k) for k in ("sam2", "sam3_tracker", "sam2_video")}
        ckpt.update({k: getattr(tiny_hf16, f"make_{k}")(root / k) for k in ("sam3_tracker_video", "sam3")})
        ckpt["sam3_combined"] = tiny_hf16.make_sam3_combined(root / "sam3_combined")

        def run(name: str, spec: str, evaluate, keys: tuple[str, ...]) -> None:
            t0 = time.perf_counter()
            report = evaluate()
            figures = {k: report[k] for k in keys}
            assert all(np.isfinite(v) and 0 <= v <= 100 for v in figures.values()), figures
            rows.append({"evaluator": name, "kind": spec, **figures, "seconds": round(time.perf_counter() - t0, 2)})
            print(rows[-1], flush=True)

        for kind, key in (("sam2", "sam2"), ("sam3-tracker", "sam3_tracker")):
            door = registry.load(f"{kind}:{ckpt[key]}", task="click")
            run(
                "NoC (click)",
                f"{kind}:",
                lambda door=door: evaluate_interactive(door, uniform, split="all", max_clicks=5, progress=False),
                ("NoC@85", "NoC@90", "mIoU@1", "mIoU@5"),
            )
        for kind, key in (("sam2", "sam2_video"), ("sam3-tracker", "sam3_tracker_video")):
            door = registry.load(f"{kind}:{ckpt[key]}", task="video")
            run(
                "J&F (video)",
                f"{kind}: (video checkpoint)",
                lambda door=door: evaluate_video(door, video, progress=False),
                ("J&F", "J_mean", "F_mean"),
            )
        tracker = registry.load(f"sam3:{ckpt['sam3_combined']}", task="track")
        tracker.source.model.score_threshold_detection = 0.0  # random weights score ~0.25: keep them
        tracker.source.model.new_det_thresh = 0.0
        tracker.source.model.hotstart_delay = 0
        run(
            "J&F (video --classes)",
            "sam3: (sam3_video checkpoint)",
            lambda: evaluate_video(tracker, video, classes=["red", "green"], progress=False),
            ("J&F", "J_mean", "F_mean"),
        )
        examples = registry.load(f"sam3:{ckpt['sam3']}", task="incontext")
        examples.source.threshold = 0.2
        fewshot: dict = {}

        def few() -> dict:
            fewshot.update(evaluate_incontext(examples, uniform, [1, 2], episodes=4, split="all", progress=False))
            return {f"mIoU {k}-shot": v for k, v in fewshot["mIoU_by_shots"].items()}

        run("few-shot (incontext)", "sam3: (exemplars)", few, ("mIoU 1-shot", "mIoU 2-shot"))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""CLI start-up and load times: what a user waits for before the first answer.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--json benchmarks/results/startup.json]

Each figure is the median of ``--repeats`` fresh processes (nothing cached in memory between
them; the OS file cache is warm after the first):

- ``help_s``: ``omniseg --help`` (goal: <= 0.5 s on a quiet machine; loads no torch);
- ``argument_error_s``: ``omniseg segment`` with no image (exit 2, loads no torch);
- ``first_image_s``: ``omniseg segment IMAGE --classes ... --out DIR``, one 512 px image, until the
  process exits with its files written (goal: <= 3 s on a quiet machine);
- ``load_s``: ``omniseg.load()`` inside a fresh Python process (import included), and
  ``import_s``: ``import omniseg`` alone.

Say in BENCHMARKS.md whether the machine was shared while it ran (2 cores, other jobs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_report import emit
from PIL import Image

CLASSES = "sky,building,road,tree,car,person"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - start, done.returncode


def median_of(argv: list[str], env: dict[str, str], repeats: int, expect: int) -> float:
    times = []
    for _ in range(repeats):
        seconds, code = timed(argv, env)
        if code != expect:
            raise SystemExit(f"{' '.join(argv)} exited {code}, expected {expect}")
        times.append(seconds)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cli = [sys.executable, "-m", "omniseg"]
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "street.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)).save(image)
        timed([*cli, "segment", str(image), "--classes", CLASSES, "--out", f"{tmp}/warm", "--quiet"], env)  # caches
        report = {
            "help_s": median_of([*cli, "--help"], env, args.repeats, 0),
            "argument_error_s": median_of([*cli, "segment"], env, args.repeats, 2),
            "first_image_s": median_of(
                [*cli, "segment", str(image), "--classes", CLASSES, "--out", f"{tmp}/out", "--quiet"],
                env,
                args.repeats,
                0,
            ),
            "import_s": median_of([sys.executable, "-c", "import omniseg"], env, args.repeats, 0),
            "load_s": median_of([sys.executable, "-c", "import omniseg; omniseg.load()"], env, args.repeats, 0),
        }
    report |= {
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "goals": {"help_s": 0.5, "first_image_s": 3.0},
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()

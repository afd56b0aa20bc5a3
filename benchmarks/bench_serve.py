"""Load benchmark of `omniseg serve` on loopback: N concurrent clients for a fixed time against
POST /v1/segment with 512 px images; errors, latency percentiles, throughput, peak RSS of the server.

    .venv/bin/python benchmarks/bench_serve.py [--clients 32] [--duration 60] [--json OUT]
        [--concurrency 1] [--queue 16] [--timeout 60] [--model DIR]

The server is started here as a subprocess (`python -m omniseg serve` on 127.0.0.1, a free port)
and stopped at the end; nothing leaves the machine. Each client posts an image, waits for the
answer and posts the next one; a 503 (queue full: the server's deliberate load shedding) is counted
apart and the client waits for its Retry-After before the next request. Any other non-200 answer
or a transport failure is an error. Images: 64 distinct 512x512 JPEGs (CamVid photos when
../shared/data is there, else synthetic scenes) taken in turn, so the server's cache of recent
images' regions never answers (every request runs the model). Peak RSS is the server process's
VmHWM from /proc after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from omniseg.server.launch import live_server

sys.path.insert(0, str(Path(__file__).parent))
from bench_report import emit  # noqa: E402
from bench_segment import CLASSES  # noqa: E402  (the same 20 classes as the latency benchmark)

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "data" / "camvid" / "images"


def test_images(count: int, size: int) -> tuple[list[bytes], str]:
    files = sorted(SHARED_IMAGES.glob("*.jpg"))[:count] if SHARED_IMAGES.is_dir() else []
    source = "camvid" if len(files) == count else "synthetic"
    out = []
    rng = np.random.default_rng(0)
    for i in range(count):
        if source == "camvid":
            with Image.open(files[i]) as im:
                picture = im.convert("RGB").resize((size, size))
        else:
            arr = np.zeros((size, size, 3), np.float32)
            horizon = int(rng.integers(size // 3, size // 2))
            arr[:horizon] = (90, 150, 230)
            arr[horizon:] = (110, 110, 110)
            x, y = int(rng.integers(0, size - 120)), int(rng.integers(horizon, size - 60))
            arr[y : y + 50, x : x + 110] = (200, 30, 30)
            arr += rng.normal(0, 8, arr.shape)
            picture = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out, source


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


async def sample_rss(pid: int, end: float, every: float = 2.0) -> list[tuple[float, float]]:
    """(seconds into the run, VmRSS in MB) every ``every`` s until ``end``: shows growth, not just the peak."""
    start, samples = time.monotonic(), []
    while time.monotonic() < end:
        samples.append((round(time.monotonic() - start, 1), round(proc_status(pid)["VmRSS"] / 2**20, 1)))
        await asyncio.sleep(every)
    return samples


def rss_growth(samples: list[tuple[float, float]]) -> dict:
    """Max RSS of the first and the last quarter of the run: bounded memory means no growth between them."""
    rss = [mb for _, mb in samples]
    quarter = max(1, len(rss) // 4)
    first, last = max(rss[:quarter]), max(rss[-quarter:])
    return {"first_quarter_max_mb": first, "last_quarter_max_mb": last, "growth_mb": round(last - first, 1)}


async def load(
    base: str, images: list[bytes], clients: int, duration: float, pid: int | None = None, warm_up: bool = True
) -> dict:
    import httpx

    counter = itertools.count()
    latencies: list[float] = []
    compute: list[float] = []  # the server's own timings.total_s: latency minus queueing and transfer
    counts = {"ok": 0, "busy_503": 0, "errors": 0}
    error_samples: list[str] = []
    data = {"classes": ",".join(CLASSES)}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0)) as client:
        # one request first: the server is warm (vocabulary embedded, first-call costs paid) before timing
        if warm_up:  # (bench_serve_hostile warms the server up itself, before its hostile clients start)
            warm = await client.post(f"{base}/v1/segment", files={"image": ("w.jpg", images[0])}, data=data)
            warm.raise_for_status()
        end = time.monotonic() + duration

        async def worker() -> None:
            while time.monotonic() < end:
                image = images[next(counter) % len(images)]
                t0 = time.monotonic()
                try:
                    r = await client.post(f"{base}/v1/segment", files={"image": ("i.jpg", image)}, data=data)
                except httpx.HTTPError as exc:
                    counts["errors"] += 1
                    error_samples.append(f"{exc.__class__.__name__}: {exc}"[:200])
                    continue
                if r.status_code == 200:
                    counts["ok"] += 1
                    latencies.append(time.monotonic() - t0)
                    compute.append(r.json()["timings"]["total_s"])
                elif r.status_code == 503:
                    counts["busy_503"] += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                else:
                    counts["errors"] += 1
                    error_samples.append(f"{r.status_code}: {r.text[:200]}")

        t_start = time.monotonic()
        sampler = asyncio.create_task(sample_rss(pid, end)) if pid is not None else None
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.monotonic() - t_start
        samples = await sampler if sampler is not None else []
        health = (await client.get(f"{base}/healthz")).json()

    def pct(values: list[float], q: float) -> float | None:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None

    return {
        **counts,
        "error_samples": error_samples[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(counts["ok"] / wall, 3),
        "latency_s": {
            "p50": pct(latencies, 0.50),
            "p95": pct(latencies, 0.95),
            "p99": pct(latencies, 0.99),
            "max": pct(latencies, 1.0),
            "mean": round(statistics.fmean(latencies), 3) if latencies else None,
        },
        "server_compute_s": {"p50": pct(compute, 0.50), "p95": pct(compute, 0.95)},
        "server_rejected_503": health["rejected"],
        "server_rss_samples_mb": samples,
        **({"server_rss_growth": rss_growth(samples)} if samples else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (after one warm-up request)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=1, help="the server's --concurrency")
    parser.add_argument("--queue", type=int, default=16, help="the server's --queue")
    parser.add_argument("--timeout", type=float, default=60.0, help="the server's --timeout")
    parser.add_argument("--model", help="model directory (default: the embedded default model)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    images, source = test_images(64, args.size)
    server_args = ["--log-level", "warning", "--concurrency", str(args.concurrency), "--queue", str(args.queue)]
    server_args += ["--timeout", str(args.timeout)] + (["--model", args.model] if args.model else [])
    log_path = Path(tempfile.gettempdir()) / f"omniseg_bench_serve_{os.getpid()}.log"
    load_before = os.getloadavg()
    with live_server(server_args, log_path, startup_s=900, env={"PYTHONUNBUFFERED": "1"}) as server:
        idle = proc_status(server.process.pid)
        result = asyncio.run(load(server.base_url, images, args.clients, args.duration, server.process.pid))
        memory = proc_status(server.process.pid)
        startup = server.startup_s
    report = {
        "benchmark": "serve_load",
        "command": "benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
        "clients": args.clients,
        "duration_s": args.duration,
        "image": f"{args.size}x{args.size} JPEG ({source}, 64 distinct)",
        "classes": len(CLASSES),
        "server": {"concurrency": args.concurrency, "queue": args.queue, "timeout_s": args.timeout},
        **result,
        "server_startup_s": round(startup, 1),
        "server_rss_idle_mb": round(idle["VmRSS"] / 2**20, 1),
        "server_peak_rss_mb": round(memory["VmHWM"] / 2**20, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    emit(report, args.json)
    if result["errors"]:
        print(f"server log: {log_path}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

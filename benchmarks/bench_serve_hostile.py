"""Hostile-client benchmark of `omniseg serve` on loopback: normal clients' latency and 503s while
other clients trickle their uploads a byte at a time and others leave in the middle of theirs.

    .venv/bin/python benchmarks/bench_serve_hostile.py [--clients 4] [--tricklers 17] [--duration 60]
        [--interval 1] [--body-timeout 10] [--json OUT]

Issue 13: 17 trickling connections (concurrency 1 + queue 16) held every admission ticket and every
other client got 503 for the whole run. The server (default model, --concurrency 1 --queue 16) is
started here on 127.0.0.1 (nothing leaves the machine); ``--tricklers`` clients each announce a
100 kB body and send one byte every ``--interval`` s (reconnecting when answered), one client
abandons an upload every second, and ``--clients`` normal clients post 512 px JPEGs one after the
other (bench_serve.load). Reported: the normal clients' answers (200 / 503 / other), latency p50 /
p95, the status lines the tricklers got (408 after the body deadline) and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from omniseg.server.hostile_clients import abandon, start_tricklers
from omniseg.server.launch import live_server

sys.path.insert(0, str(Path(__file__).parent))
from bench_segment import CLASSES  # noqa: E402
from bench_serve import load, proc_status, test_images  # noqa: E402


def abandoners(base_url: str, stop: threading.Event, every_s: float = 1.0) -> tuple[threading.Thread, list[int]]:
    """One upload abandoned mid-way every ``every_s`` until ``stop``; returns the thread and a count."""
    count = [0]

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                abandon(base_url)
                count[0] += 1
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, count


def warm_up(base_url: str, image: bytes) -> None:
    import httpx

    data = {"classes": ",".join(CLASSES)}
    httpx.post(f"{base_url}/v1/segment", files={"image": ("w.jpg", image)}, data=data, timeout=300).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="normal clients")
    parser.add_argument("--tricklers", type=int, default=17, help="clients trickling their upload")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a trickler's bytes")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--body-timeout", type=float, default=10.0, help="the server's --body-timeout (0: not passed)")
    parser.add_argument("--model", help="model directory (default: the embedded default model)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    images, source = test_images(64, 512)
    server_args = ["--log-level", "warning", "--concurrency", "1", "--queue", "16"]
    if args.body_timeout > 0:  # 0: leave the flag out (a version of omniseg before issue 13, for comparison)
        server_args += ["--body-timeout", str(args.body_timeout)]
    server_args += ["--model", args.model] if args.model else []
    log_path = Path(tempfile.gettempdir()) / f"omniseg_bench_serve_hostile_{os.getpid()}.log"
    load_before = os.getloadavg()
    with live_server(server_args, log_path, startup_s=900, env={"PYTHONUNBUFFERED": "1"}) as server:
        warm_up(server.base_url, images[0])  # the vocabulary embedded, first-call costs paid
        stop, tricklers, answers = start_tricklers(server.base_url, args.tricklers, args.interval)
        quitters, abandoned = abandoners(server.base_url, stop)
        try:
            time.sleep(min(5.0, args.interval * 3))  # every trickler is connected and sending
            result = asyncio.run(
                load(server.base_url, images, args.clients, args.duration, server.process.pid, warm_up=False)
            )
        finally:
            stop.set()
            for thread in [*tricklers, quitters]:
                thread.join(args.interval + 10)
        memory = proc_status(server.process.pid)
    result.pop("server_rss_samples_mb", None)
    report = {
        "benchmark": "serve_hostile",
        "command": "benchmarks/bench_serve_hostile.py " + " ".join(sys.argv[1:]),
        "normal_clients": args.clients,
        "tricklers": args.tricklers,
        "trickle_interval_s": args.interval,
        "body_timeout_s": args.body_timeout,
        "abandoned_uploads": abandoned[0],
        "trickler_answers": dict(Counter(a or "(closed)" for a in answers)),
        "duration_s": args.duration,
        "image": f"512x512 JPEG ({source}, 64 distinct)",
        **result,
        "server_peak_rss_mb": round(memory["VmHWM"] / 2**20, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()

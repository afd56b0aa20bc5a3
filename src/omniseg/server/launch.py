"""Run ``omniseg serve`` in a subprocess on a free loopback port and wait until it answers: for the
browser tests and the load benchmark (standard library only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen
    startup_s: float
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read()).get("status") == "ok"
    except (OSError, ValueError):
        return False


@contextmanager
def live_server(
    args: Sequence[str], log_path: Path, startup_s: float = 600, env: dict | None = None
) -> Iterator[LiveServer]:
    """``python -m omniseg serve ARGS`` on 127.0.0.1:<free port>; RuntimeError (with the log's tail) if it
    exits or does not answer /healthz within ``startup_s``; stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "omniseg", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = LiveServer(f"http://127.0.0.1:{port}", process, 0.0, Path(log_path))
    try:
        while not _healthy(f"{server.base_url}/healthz"):
            if process.poll() is not None:
                raise RuntimeError(f"omniseg serve exited with {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() - started > startup_s:
                raise RuntimeError(f"omniseg serve did not answer within {startup_s:g} s:\n{server.log_tail()}")
            time.sleep(0.5)
        server.startup_s = time.monotonic() - started
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

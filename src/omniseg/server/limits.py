"""What keeps a server up under load: an upload size limit (413), a bounded number of running and
waiting requests (503 when full, rather than running out of memory) and a request timeout (504).

Only the standard library and ASGI here: the FastAPI app (app.py) plugs these in.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ServerLimits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a whole request body
    max_pixels: int = 16_000_000  # per image, read from the header before decoding
    timeout_s: float = 60.0  # from arrival to answer, waiting in the queue included
    concurrency: int = 1  # requests computing at once (each uses all torch threads)
    queue: int = 16  # requests waiting for a slot; one more gets 503
    max_classes: int = 2000  # per request (a text query or a shipped vocabulary)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "concurrency", "max_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.queue < 0 or self.timeout_s <= 0:
            raise ValueError("queue must be >= 0 and timeout_s > 0")


class ServerBusy(Exception):
    """Every slot runs and the queue is full: 503."""


class RequestTimeout(Exception):
    """The request did not finish within the timeout: 504."""


class Gate:
    """Runs blocking jobs in ``concurrency`` threads with at most ``queue`` jobs waiting.

    A job that times out keeps its thread (Python cannot stop it) and its slot until it ends, so
    the number of computations in memory never exceeds ``concurrency``; it also still counts
    against the queue bound until then.
    """

    def __init__(self, concurrency: int, queue: int, timeout_s: float) -> None:
        self.concurrency, self.queue, self.timeout_s = concurrency, queue, timeout_s
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="omniseg-worker")
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self.admitted = 0  # running + waiting
        self.rejected = 0

    def _leave(self) -> None:
        with self._lock:
            self.admitted -= 1

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self.admitted >= self.concurrency + self.queue:
                self.rejected += 1
                raise ServerBusy(f"server busy: {self.concurrency} running and {self.queue} waiting; retry later")
            self.admitted += 1
        if self._slots is None:  # made in the event loop that uses it
            self._slots = asyncio.Semaphore(self.concurrency)
        slots = self._slots
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            await asyncio.wait_for(slots.acquire(), self.timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            self._leave()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise RequestTimeout(f"request timed out after {self.timeout_s:g} s waiting in the queue") from None

        def finished(_: object) -> None:
            slots.release()
            self._leave()

        future = loop.run_in_executor(self._executor, job, *args)
        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise RequestTimeout(f"request timed out after {self.timeout_s:g} s") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def json_error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 {"error": ...}.

    A declared Content-Length is checked before anything is read; a body without one (chunked) is
    counted as it arrives, reading stops past the limit and whatever the app answers is replaced.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body too large (limit {self.max_bytes / 2**20:.1f} MB)"

    async def _send_413(self, send: Callable) -> None:
        body = json_error_body(self._message())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._send_413(send)
            return
        state = {"received": 0, "exceeded": False, "replaced": False}

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise ValueError(self._message())
            return message

        async def guarded_send(message: dict) -> None:
            if state["exceeded"]:
                if not state["replaced"]:
                    state["replaced"] = True
                    await self._send_413(send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
            if not state["replaced"]:
                state["replaced"] = True
                await self._send_413(send)

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


class Ticket:
    """One admitted request. It holds its place in the queue bound until the request has left and
    its job (which may outlive a timed-out request: Python cannot stop a thread) has ended."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._refs = 1

    def hold(self) -> None:
        with self._gate._lock:
            self._refs += 1

    def release(self) -> None:
        with self._gate._lock:
            self._refs -= 1
            if self._refs == 0:
                self._gate.admitted -= 1


class Gate:
    """Admits at most ``concurrency + queue`` requests (``admit``; more: ServerBusy) and runs their
    blocking jobs in ``concurrency`` threads (``run``), each request within ``timeout_s``.

    A job that times out keeps its thread and its slot until it ends, so the number of computations
    in memory never exceeds ``concurrency``.
    """

    def __init__(self, concurrency: int, queue: int, timeout_s: float) -> None:
        self.concurrency, self.queue, self.timeout_s = concurrency, queue, timeout_s
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="omniseg-worker")
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self.admitted = 0  # requests running or waiting (+ jobs still running after their request timed out)
        self.rejected = 0

    def admit(self) -> Ticket:
        with self._lock:
            if self.admitted >= self.concurrency + self.queue:
                self.rejected += 1
                raise ServerBusy(f"server busy: {self.concurrency} running and {self.queue} waiting; retry later")
            self.admitted += 1
        return Ticket(self)

    async def run(self, job: Callable[..., T], *args: Any, ticket: Ticket | None = None) -> T:
        """``job(*args)`` in a worker thread, once a slot is free; ``ticket``: the request's admission
        (taken by AdmissionControl before the body was read), else one is taken here."""
        own = ticket is None
        ticket = ticket or self.admit()
        try:
            return await self._run(job, args, ticket)
        finally:
            if own:
                ticket.release()

    async def _run(self, job: Callable[..., T], args: tuple, ticket: Ticket) -> T:
        if self._slots is None:  # made in the event loop that uses it
            self._slots = asyncio.Semaphore(self.concurrency)
        slots = self._slots
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            await asyncio.wait_for(slots.acquire(), self.timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"request timed out after {self.timeout_s:g} s waiting in the queue") from None
        ticket.hold()

        def finished(_: object) -> None:
            slots.release()
            ticket.release()

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


async def send_json_error(send: Callable, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A whole JSON error response, at the ASGI level (before any app code ran)."""
    body = json_error_body(message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


TICKET_KEY = "omniseg_ticket"  # in the ASGI scope's "state": request.state.omniseg_ticket


class AdmissionControl:
    """ASGI middleware: a POST under ``prefix`` is admitted by the gate before its body is read (so
    a flood of uploads is refused with 503 rather than buffered), and its ticket released when the
    answer has been sent."""

    def __init__(self, app: Any, gate: Gate, prefix: str = "/v1/") -> None:
        self.app, self.gate, self.prefix = app, gate, prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        try:
            ticket = self.gate.admit()
        except ServerBusy as exc:
            await send_json_error(send, 503, str(exc), {"Retry-After": "1"})
            return
        scope.setdefault("state", {})[TICKET_KEY] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()


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
        await send_json_error(send, 413, self._message())

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

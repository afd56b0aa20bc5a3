"""What keeps a server up under load: an upload size limit (413), a deadline for receiving a body
(408: a client trickling its upload byte by byte cannot hold anything for long), a bounded number
of bodies being received (503), a bounded number of running and waiting requests (503 when full,
rather than running out of memory) and a request timeout (504) that also stops the timed-out
computation at its next check point (omniseg.cancel).

A request is admitted to the compute queue only once its whole body has arrived: slow uploads
spend the upload budget, never a compute ticket (issue 13: 17 trickling clients held every ticket).

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

from omniseg.cancel import CancelToken, running

T = TypeVar("T")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerLimits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a whole request body
    max_pixels: int = 16_000_000  # per image, read from the header before decoding
    timeout_s: float = 60.0  # from arrival to answer, waiting in the queue included
    concurrency: int = 1  # requests computing at once (each uses all torch threads)
    queue: int = 16  # requests waiting for a slot; one more gets 503
    max_classes: int = 2000  # per request (a text query or a shipped vocabulary)
    body_timeout_s: float = 30.0  # the whole body must arrive within this; more: 408
    max_uploads: int = 32  # bodies being received at once (before admission); one more: 503
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host header names answered (DNS rebinding); "*": any

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "concurrency", "max_classes", "max_uploads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.queue < 0 or self.timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("queue must be >= 0, timeout_s and body_timeout_s > 0")


class ServerBusy(Exception):
    """Every slot runs and the queue is full: 503."""


class RequestTimeout(Exception):
    """The request did not finish within the timeout: 504."""


class Ticket:
    """One admitted request. It holds its place in the queue bound until the request has left and
    its job has ended; ``token`` stops the job at its next check point when the request times out
    or its client disconnects (Python cannot stop a thread from outside)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._refs = 1
        self.token = CancelToken()

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

    A job that times out is cancelled (its token) and keeps its thread and its slot until it reaches
    a check point, so the number of computations in memory never exceeds ``concurrency``.
    """

    def __init__(self, concurrency: int, queue: int, timeout_s: float) -> None:
        self.concurrency, self.queue, self.timeout_s = concurrency, queue, timeout_s
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="omniseg-worker")
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self.admitted = 0  # requests running or waiting (+ jobs still running after their request timed out)
        self.rejected = 0

    def full(self) -> bool:
        return self.admitted >= self.concurrency + self.queue

    def count_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def admit(self) -> Ticket:
        with self._lock:
            if self.full():
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

        def finished(done: asyncio.Future) -> None:
            slots.release()
            ticket.release()
            if not done.cancelled():
                done.exception()  # retrieved: a cancelled job's Cancelled is expected, not "never retrieved"

        def guarded() -> T:
            with running(ticket.token):
                return job(*args)

        if ticket.token.cancelled:  # the client left while waiting for a slot
            slots.release()
            ticket.release()
            raise RequestTimeout("request cancelled: the client disconnected")
        future = loop.run_in_executor(self._executor, guarded)
        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            ticket.token.cancel("timed out")
            raise RequestTimeout(f"request timed out after {self.timeout_s:g} s") from None
        except asyncio.CancelledError:
            ticket.token.cancel("request cancelled")
            raise

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


class BodyTimeout(Exception):
    """The body did not arrive within the body deadline: 408."""


class AdmissionControl:
    """ASGI middleware for a POST under ``prefix``: (1) refused at once (503) when the compute queue
    is already full, or when ``max_uploads`` bodies are being received; (2) the whole body is read
    within ``body_timeout_s`` (408 otherwise; a client that disconnects mid-upload is simply
    dropped); (3) only then admitted by the gate (503 when full), the body replayed to the app, and
    the ticket released when the answer has been sent. A disconnect after admission cancels the
    request's computation (its ticket's token)."""

    def __init__(
        self, app: Any, gate: Gate, prefix: str = "/v1/", body_timeout_s: float = 30.0, max_uploads: int = 32
    ) -> None:
        self.app, self.gate, self.prefix = app, gate, prefix
        self.body_timeout_s, self.max_uploads = body_timeout_s, max_uploads
        self.uploads = 0  # bodies being received now (one event loop: no lock needed)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        busy = {"Retry-After": "1"}
        if self.gate.full() or self.uploads >= self.max_uploads:
            self.gate.count_rejected()
            what = "receiving uploads" if self.uploads >= self.max_uploads else "running and waiting"
            await send_json_error(send, 503, f"server busy: too many requests {what}; retry later", busy)
            return
        self.uploads += 1
        try:
            body = await self._read_body(receive)
        except BodyTimeout:
            await send_json_error(send, 408, f"request body not received within {self.body_timeout_s:g} s")
            return
        finally:
            self.uploads -= 1
        if body is None:  # the client left mid-upload: nobody to answer
            return
        try:
            ticket = self.gate.admit()
        except ServerBusy as exc:
            await send_json_error(send, 503, str(exc), busy)
            return
        scope.setdefault("state", {})[TICKET_KEY] = ticket
        replay, watcher = self._replay(body, receive, ticket)
        try:
            await self.app(scope, replay, send)
        finally:
            watcher.cancel()
            ticket.release()

    async def _read_body(self, receive: Callable) -> list[dict] | None:
        """Every http.request message of the body, within the deadline; None if the client left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        messages: list[dict] = []
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BodyTimeout() from None
            if message["type"] == "http.disconnect":
                return None
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages

    @staticmethod
    def _replay(body: list[dict], receive: Callable, ticket: Ticket) -> tuple[Callable, asyncio.Task]:
        """A receive() that gives the buffered body, then the client's next message (a disconnect),
        which is awaited from the start so a client leaving cancels its computation."""

        async def wait_for_disconnect() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                ticket.token.cancel("client disconnected")
            return message

        watcher = asyncio.ensure_future(wait_for_disconnect())
        pending = list(body)

        async def replay() -> dict:
            if pending:
                return pending.pop(0)
            return await asyncio.shield(watcher)

        return replay, watcher


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

"""Two small ASGI middlewares at the edge of the server: the Host allow-list and HEAD on GET routes.

Host: a page on another site can make a browser talk to 127.0.0.1 under a name that resolves
there (DNS rebinding); answering only the names the server is known by (loopback names by
default, ``--allowed-hosts`` to add more) closes that door. Anything else gets 400 JSON.

HEAD: HTTP says every GET resource answers HEAD too (monitors and caches probe with it); FastAPI
routes declared with GET answered 405. A HEAD runs the GET route and the body is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from omniseg.server.limits import send_json_error


def host_name(value: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'; lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class AllowedHosts:
    """ASGI middleware: a request whose Host header names none of ``hosts`` gets 400 JSON (``"*"``: any)."""

    def __init__(self, app: Any, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = {host_name(h) for h in hosts}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or "*" in self.hosts:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(header) not in self.hosts:
            shown = header[:100] if header.isprintable() else "(unprintable)"
            await send_json_error(send, 400, f"host {shown!r} is not served here (serve --allowed-hosts to allow it)")
            return
        await self.app(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: HEAD runs as GET and the answer's body is dropped (headers kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

"""Misbehaving HTTP clients for the server's robustness test and benchmark (standard library only):
one that trickles its upload a byte at a time, one that leaves in the middle of its upload.

Loopback only: they open plain sockets to the address they are given, which the tests and the
benchmark take from ``live_server`` (127.0.0.1).
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

BOUNDARY = "omnisegtrickle"


def _request_head(base_url: str, path: str, length: int) -> bytes:
    """Request line, headers and the start of a well-formed multipart body (an image part whose
    bytes are still to come): a parser reading it as it arrives has nothing to refuse yet."""
    host = urlsplit(base_url).netloc
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n{part}"
    ).encode()


def _connect(base_url: str, timeout: float) -> socket.socket:
    parts = urlsplit(base_url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "hostile clients talk to loopback only"
    return socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)


def trickle(base_url: str, stop: threading.Event, interval_s: float = 0.5, path: str = "/v1/segment") -> str:
    """Announce a 100 kB body and send one byte every ``interval_s`` until the server answers, closes,
    or ``stop`` is set. Returns the status line the server sent ('' if none)."""
    with _connect(base_url, timeout=interval_s) as sock:
        sock.sendall(_request_head(base_url, path, 100_000))
        while not stop.is_set():
            try:
                sock.sendall(b"x")
            except OSError:  # closed by the server: its answer may still be readable
                return _status_line(sock)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return ""
            return answer.split(b"\r\n", 1)[0].decode("latin-1")
        return ""


def _status_line(sock: socket.socket) -> str:
    try:
        return sock.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError:
        return ""


def abandon(base_url: str, path: str = "/v1/segment", sent: int = 1000) -> None:
    """Announce a 100 kB body, send ``sent`` bytes of it and close the connection."""
    with _connect(base_url, timeout=5) as sock:
        sock.sendall(_request_head(base_url, path, 100_000))
        sock.sendall(b"x" * sent)
    time.sleep(0.01)


def start_tricklers(
    base_url: str, count: int, interval_s: float = 0.5
) -> tuple[threading.Event, list[threading.Thread], list[str]]:
    """``count`` trickling clients, each reconnecting as soon as it is answered, until the event is set.
    Returns (stop event, threads, status lines the server answered them with)."""
    stop = threading.Event()
    answers: list[str] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                answers.append(trickle(base_url, stop, interval_s))
            except OSError:
                time.sleep(interval_s)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return stop, threads, answers

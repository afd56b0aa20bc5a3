"""Issue 13, the server: slow and abandoned uploads, requests at the limits, Host and HEAD, /v1/click
JSON. Every test is bounded in count and time and talks to loopback only."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import assert_json_error

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omniseg.server import ServerLimits, create_app  # noqa: E402


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = png_bytes(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def client(segmenter):
    with TestClient(create_app(segmenter, vocabularies={}), base_url="http://localhost") as c:
        yield c


def click(client, points: str):
    return client.post("/v1/click", files={"image": ("a.png", IMAGE)}, data={"points": points})


def test_click_nested_json_and_huge_ints_are_400(client) -> None:
    """Item 10: 500 before (RecursionError, ValueError of int() over 4300 digits, OverflowError)."""
    for points in ("[" * 100_000 + "]" * 100_000, "[" * 3000 + "]" * 3000, "[[" + "9" * 5000 + ", 1]]"):
        assert_json_error(click(client, points), 400)
    message = assert_json_error(click(client, "[[" + "9" * 400 + ", 1]]"), 400)  # 10^400: no float holds it
    assert "points" in message


def test_head_on_get_routes_is_200_without_body(client) -> None:
    """Item 17: HEAD answered 405."""
    for path in ("/healthz", "/", "/v1/vocabularies"):
        r = client.head(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.content == b""


def test_foreign_host_header_is_400_json(segmenter) -> None:
    """Item 17: any Host was answered (DNS rebinding); loopback names by default, configurable."""
    app = create_app(segmenter, vocabularies={})
    with TestClient(app, base_url="http://evil.example:8000") as c:
        assert "not served here" in assert_json_error(c.get("/healthz"), 400)
    for name in ("http://127.0.0.1:8000", "http://localhost", "http://[::1]:8000"):
        with TestClient(app, base_url=name) as c:
            assert c.get("/healthz").status_code == 200, name
    limits = ServerLimits(allowed_hosts=("seg.lan",))
    with TestClient(create_app(segmenter, limits=limits, vocabularies={}), base_url="http://seg.lan") as c:
        assert c.get("/healthz").status_code == 200


def test_allowed_hosts_flag(capsys) -> None:
    from omniseg.commands.serve import allowed_hosts

    assert allowed_hosts("localhost, 127.0.0.1", "10.0.0.5") == ("localhost", "127.0.0.1", "10.0.0.5")
    assert allowed_hosts("*", "0.0.0.0") == ("*",)


def test_timed_out_request_frees_its_slot(segmenter) -> None:
    """Item 12: a valid request at the limits (2,000 long names) got its 504 but kept the only compute
    slot busy until its encoding ended; now it stops at the next encoding batch."""
    from omniseg.segmenter import Segmenter
    from omniseg.text.cache import MemoryEmbeddingCache
    from omniseg.text.encoder import MiniLMTextEncoder

    encoder = MiniLMTextEncoder(batch_size=4, cache=MemoryEmbeddingCache("slot-test"))
    slow = Segmenter(segmenter.source, encoder)  # the same source behind a door with a slow encoder
    limits = ServerLimits(timeout_s=1.0)
    names = ",".join(f"name {i} " + "word " * 60 for i in range(2000))  # ~650 KB, 2,000 classes: at the limit
    with TestClient(create_app(slow, limits=limits, vocabularies={}), base_url="http://localhost") as c:
        r = c.post("/v1/segment", files={"image": ("a.png", IMAGE)}, data={"classes": names})
        assert_json_error(r, 504)
        timed_out = time.monotonic()
        while c.get("/healthz").json()["in_flight"] and time.monotonic() - timed_out < 30:
            time.sleep(0.05)
        freed_after = time.monotonic() - timed_out
        assert freed_after < 3, f"the slot stayed busy {freed_after:.1f} s after the 504"
        r = c.post("/v1/segment", files={"image": ("a.png", IMAGE)}, data={"classes": "sky,road"})
        assert r.status_code == 200, r.text


def post_image(base_url: str, timeout: float = 30) -> tuple[int, float]:
    """One normal /v1/segment request: (status, seconds)."""
    import http.client
    from urllib.parse import urlsplit

    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + IMAGE + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="classes"\r\n\r\nsky,road,car\r\n--b--\r\n'
    )
    parts = urlsplit(base_url)
    start = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/segment", body, {"Content-Type": "multipart/form-data; boundary=b"})
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - start


def test_trickling_and_abandoned_uploads_do_not_block_other_clients(tiny_model_dir, tmp_path) -> None:
    """Item 1: 17 clients trickling one byte at a time held every admission ticket (concurrency 1 +
    queue 16) and every other client got 503. Here 8 tricklers against concurrency 1 + queue 2, plus
    clients leaving mid-upload: every normal request is answered 200, and tricklers get 408."""
    from omniseg.server.hostile_clients import abandon, start_tricklers
    from omniseg.server.launch import live_server

    args = ["--model", str(tiny_model_dir), "--concurrency", "1", "--queue", "2", "--body-timeout", "3"]
    with live_server(args, tmp_path / "serve.log", startup_s=120) as server:
        stop, threads, answers = start_tricklers(server.base_url, 8, interval_s=0.3)
        try:
            time.sleep(1.0)  # every trickler has connected and started its body
            statuses = []
            for i in range(12):
                if i % 3 == 0:
                    abandon(server.base_url)
                statuses.append(post_image(server.base_url)[0])
            time.sleep(3.5)  # past the body deadline
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert statuses == [200] * 12, statuses
        assert any(a.startswith("HTTP/1.1 408") for a in answers), answers
        with urllib.request.urlopen(f"{server.base_url}/healthz", timeout=10) as r:
            assert r.status == 200


def test_a_client_leaving_cancels_its_computation() -> None:
    """Item 12: work whose client is gone must stop. At the ASGI level: the body arrives, the job
    starts, then the client disconnects; the job's next check point raises Cancelled and the ticket
    is released."""
    import asyncio

    from omniseg import cancel
    from omniseg.server.limits import TICKET_KEY, AdmissionControl, Gate

    gate = Gate(concurrency=1, queue=0, timeout_s=30)
    checks: list[float] = []

    def job() -> str:
        start = time.monotonic()
        while time.monotonic() - start < 20:
            cancel.check()
            checks.append(time.monotonic() - start)
            time.sleep(0.01)
        return "finished"

    async def app(scope, receive, send) -> None:
        assert (await receive())["body"] == b"body"
        try:
            await gate.run(job, ticket=scope["state"][TICKET_KEY])
        except cancel.Cancelled:
            pass

    async def main() -> float:
        started = time.monotonic()
        messages = [{"type": "http.request", "body": b"body", "more_body": False}]

        async def receive() -> dict:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(0.3)  # the client leaves while its job runs
            return {"type": "http.disconnect"}

        async def send(message) -> None:
            pass

        scope = {"type": "http", "method": "POST", "path": "/v1/segment", "headers": []}
        await AdmissionControl(app, gate)(scope, receive, send)
        return time.monotonic() - started

    took = asyncio.run(main())
    deadline = time.monotonic() + 5
    while gate.admitted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert took < 5 and gate.admitted == 0, (took, gate.admitted)
    assert checks and checks[-1] < 5, "the job ran on after its client left"

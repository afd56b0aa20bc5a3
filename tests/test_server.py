"""The HTTP API of `omniseg serve` through FastAPI's TestClient (no socket, no browser)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import assert_json_error
from omniseg.formats import decode_rle

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omniseg.server import ServerLimits, create_app  # noqa: E402

CLASSES = "sky, road, red car"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def seg(segmenter):
    return segmenter


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    arr[:25] = (90, 150, 230)
    return arr


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocabs")
    (folder / "street.txt").write_text("# a street\nsky [stuff]\nroad, street [stuff]\ncar, automobile\n")
    (folder / "huge.txt").write_text("\n".join(f"class {i}" for i in range(30)) + "\n")
    return {"street": folder / "street.txt", "huge": folder / "huge.txt"}


@pytest.fixture(scope="module")
def client(seg, vocab_files):
    limits = ServerLimits(max_upload_bytes=300_000, max_pixels=100_000, max_classes=20)
    with TestClient(create_app(seg, limits=limits, vocabularies=vocab_files), base_url="http://localhost") as c:
        yield c


def upload(picture: np.ndarray, name: str = "image") -> dict:
    return {name: ("street.png", png(picture), "image/png")}


def test_healthz_and_docs(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["in_flight"] == 0
    assert "/" not in health["model"]  # the model's name, never its directory
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/v1/segment", "/v1/refer", "/v1/click", "/v1/incontext", "/v1/vocabularies", "/healthz"
    }  # fmt: skip
    assert client.get("/docs").status_code == 200


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_segment_json_with_display_and_rle(client, seg, picture):
    r = client.post("/v1/segment", files=upload(picture), data={"classes": CLASSES, "rle": "true", "display": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = seg.segment(picture, classes=CLASSES)
    assert body["classes"] == ["sky", "road", "red car"] and body["task"] == "semantic"
    assert (body["width"], body["height"]) == (80, 60)
    assert body["fractions"] == pytest.approx(expected.fractions())
    shown = np.frombuffer(base64.b64decode(body["display"]["data"]), np.uint8).reshape(60, 80)
    np.testing.assert_array_equal(shown, expected.label_map)
    for item in body["masks"]:
        k = body["classes"].index(item["class"])
        np.testing.assert_array_equal(decode_rle(item["segmentation"]), expected.label_map == k)


def test_animated_upload_tells_the_client_only_the_first_frame_was_used(client, picture):
    """The CLI warns on stderr and the API with MultiFrameWarning; the server says it in the answer."""
    buffer = io.BytesIO()
    frames = [Image.fromarray(picture), Image.fromarray(255 - picture)]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    gif = {"image": ("anim.gif", buffer.getvalue(), "image/gif")}
    answer = client.post("/v1/segment", files=gif, data={"classes": CLASSES})
    assert answer.status_code == 200
    assert len(answer.json()["warnings"]) == 1 and "2 frames" in answer.json()["warnings"][0]
    as_png = client.post("/v1/refer?format=png", files=gif, data={"phrase": "the sky"})
    assert as_png.status_code == 200 and "2 frames" in as_png.headers["X-Omniseg-Warning"]
    plain = client.post("/v1/segment", files=upload(picture), data={"classes": CLASSES})
    assert "warnings" not in plain.json() and "X-Omniseg-Warning" not in plain.headers


def test_segment_png_is_the_label_map(client, seg, picture):
    r = client.post("/v1/segment?format=png", files=upload(picture), data={"classes": CLASSES})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    np.testing.assert_array_equal(got, seg.segment(picture, classes=CLASSES).label_map)


@pytest.mark.parametrize("task,key", [("instance", "instances"), ("panoptic", "segments_info")])
def test_segment_instance_and_panoptic(client, picture, task, key):
    r = client.post("/v1/segment", files=upload(picture), data={"classes": CLASSES, "task": task, "rle": "1"})
    assert r.status_code == 200, r.text
    items = r.json()[key]
    for item in items:
        assert decode_rle(item["segmentation"]).sum() == item["area"]
    picture_png = client.post("/v1/segment?format=png", files=upload(picture), data={"classes": CLASSES, "task": task})
    assert Image.open(io.BytesIO(picture_png.content)).size == (80, 60)


def test_shipped_vocabulary_by_name(client, picture):
    listing = client.get("/v1/vocabularies").json()["vocabularies"]
    assert [v["name"] for v in listing] == ["street"]  # "huge" is over the server's class limit
    assert listing[0]["classes"] == 3
    r = client.post("/v1/segment", files=upload(picture), data={"vocab": "street", "task": "panoptic"})
    assert r.status_code == 200 and r.json()["classes"] == ["sky", "road", "car"]
    assert r.json()["stuff"] == [True, True, False]
    for name in ("huge", "../etc/passwd", "nope"):
        bad = client.post("/v1/segment", files=upload(picture), data={"vocab": name})
        assert bad.status_code == 400 and "error" in bad.json()


def test_refer_click_incontext(client, seg, picture):
    r = client.post("/v1/refer", files=upload(picture), data={"phrase": "the sky", "display": "1"})
    assert r.status_code == 200 and r.json()["phrase"] == "the sky"
    mask = client.post("/v1/refer?format=png", files=upload(picture), data={"phrase": "the sky"})
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(mask.content))) > 0, seg.refer(picture, "the sky").mask
    )
    # the JSON answer carries the mask itself (COCO RLE): no second request for the PNG
    np.testing.assert_array_equal(decode_rle(r.json()["mask"]["segmentation"]), seg.refer(picture, "the sky").mask)
    r = client.post("/v1/click", files=upload(picture), data={"points": "[[10, 10, 1], [70, 50, 0]]"})
    assert r.status_code == 200, r.text
    expected = seg.click(picture, points=[(10, 10, True), (70, 50, False)])
    np.testing.assert_array_equal(decode_rle(r.json()["mask"]["segmentation"]), expected.mask)
    boxed = client.post("/v1/click", files=upload(picture), data={"boxes": "[[5, 5, 40, 30]]", "classes": "sky,car"})
    assert boxed.status_code == 200 and boxed.json()["label"] in ("sky", "car")
    example_mask = np.zeros((60, 80), np.uint8)
    example_mask[:25] = 1
    files = [
        ("example", ("e.png", png(picture), "image/png")),
        ("example_mask", ("m.png", png(example_mask), "image/png")),
        ("target", ("t.png", png(picture), "image/png")),
    ]
    r = client.post("/v1/incontext", files=files, data={"display": "1"})
    assert r.status_code == 200, r.text
    expected_ids = seg.incontext([(picture, example_mask)], picture)[0].id_map
    shown = np.frombuffer(base64.b64decode(r.json()["display"]["data"]), np.uint8).reshape(60, 80)
    np.testing.assert_array_equal(shown, expected_ids)
    id_png = client.post("/v1/incontext?format=png", files=files)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(id_png.content))), expected_ids)


def test_bad_input_is_a_4xx_json_error(client, picture):
    post = client.post
    assert_json_error(post("/v1/segment", files={"image": ("x.png", b"not an image")}, data={"classes": "a"}), 400)
    assert_json_error(post("/v1/segment", files={"image": ("x.png", b"")}, data={"classes": "a"}), 400)
    assert_json_error(post("/v1/segment", data={"classes": "a"}), 422)
    assert_json_error(post("/v1/segment", files=upload(picture), data={}), 400)
    assert_json_error(post("/v1/segment", files=upload(picture), data={"classes": " , "}), 400)
    assert_json_error(post("/v1/segment", files=upload(picture), data={"classes": "a", "vocab": "street"}), 400)
    assert_json_error(post("/v1/segment", files=upload(picture), data={"classes": "a", "task": "magic"}), 422)
    many = ",".join(f"c{i}" for i in range(21))
    assert "limit" in assert_json_error(post("/v1/segment", files=upload(picture), data={"classes": many}), 400)
    assert_json_error(post("/v1/segment?format=gif", files=upload(picture), data={"classes": "a"}), 422)
    assert_json_error(post("/v1/click", files=upload(picture), data={"points": "[[1, 2, 3, 4, 5]]"}), 400)
    assert_json_error(post("/v1/click", files=upload(picture), data={"points": "not json"}), 400)
    assert_json_error(post("/v1/click", files=upload(picture), data={"points": "[[500, 10]]"}), 400)  # outside
    assert_json_error(post("/v1/click", files=upload(picture), data={}), 400)  # nothing to go by
    assert_json_error(post("/v1/refer", files=upload(picture), data={"phrase": "  "}), 400)
    rgb_mask = [("example", ("e.png", png(picture))), ("example_mask", ("m.png", png(picture)))]
    rgb_mask.append(("target", ("t.png", png(picture))))
    assert_json_error(post("/v1/incontext", files=rgb_mask), 400)
    assert_json_error(client.get("/v1/nothing"), 404)
    assert_json_error(client.get("/v1/segment"), 405)


def test_limits_answer_413(client):
    big = np.zeros((400, 400, 3), np.uint8)  # 160,000 pixels > 100,000, a small PNG
    message = assert_json_error(client.post("/v1/segment", files=upload(big), data={"classes": "a"}), 413)
    assert "400x400" in message
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # ~270 kB + 300 kB limit
    huge = {"image": ("x.png", png(noise) * 2, "image/png")}
    assert_json_error(client.post("/v1/segment", files=huge, data={"classes": "a"}), 413)


def test_a_body_without_content_length_is_counted(seg):
    app = create_app(seg, limits=ServerLimits(max_upload_bytes=1000), vocabularies={})
    head = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    chunks = [head + b"x" * 600, b"y" * 600]  # a well-formed start, then more than the limit

    async def call():
        messages = iter([{"type": "http.request", "body": c, "more_body": True} for c in chunks])
        sent = []

        async def receive():
            return next(messages, {"type": "http.request", "body": b"", "more_body": False})

        async def send(message):
            sent.append(message)

        headers = [(b"content-type", b"multipart/form-data; boundary=xyz"), (b"host", b"localhost")]
        scope = {"type": "http", "method": "POST", "path": "/v1/segment", "headers": headers, "query_string": b""}
        await app(scope, receive, send)
        return sent

    import asyncio

    sent = asyncio.run(call())
    assert sent[0]["status"] == 413 and b"too large" in sent[1]["body"]


class SlowSegmenter:
    """Stands in for the model: each segment() blocks until released."""

    def __init__(self, seg) -> None:
        self.seg = seg
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def segment(self, *args, **kwargs):
        self.started.release()
        self.release.wait(30)
        return self.seg.segment(*args, **kwargs)


def test_queue_full_answers_503_and_timeout_504(seg, picture, monkeypatch):
    slow = SlowSegmenter(seg)
    limits = ServerLimits(concurrency=1, queue=1, timeout_s=20)
    app = create_app(seg, limits=limits, vocabularies={})
    monkeypatch.setattr(app.state.segmenter, "segment", slow.segment)
    with TestClient(app, base_url="http://localhost") as client:
        results: dict[int, int] = {}

        def post(i: int) -> None:
            results[i] = client.post("/v1/segment", files=upload(picture), data={"classes": CLASSES}).status_code

        first = threading.Thread(target=post, args=(0,))
        first.start()
        assert slow.started.acquire(timeout=20)  # the first one runs
        second = threading.Thread(target=post, args=(1,))
        second.start()
        deadline = time.monotonic() + 20
        while client.get("/healthz").json()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the second one waits in the queue
        third = client.post("/v1/segment", files=upload(picture), data={"classes": CLASSES})
        assert_json_error(third, 503)
        assert third.headers["retry-after"] == "1"
        slow.release.set()
        first.join(30)
        second.join(30)
        assert results == {0: 200, 1: 200}
        assert client.get("/healthz").json() | {"limits": None} == {
            "status": "ok", "model": client.get("/healthz").json()["model"], "in_flight": 0, "rejected": 1,
            "limits": None,
        }  # fmt: skip

    slow.release.clear()
    app = create_app(seg, limits=ServerLimits(timeout_s=0.3), vocabularies={})
    monkeypatch.setattr(app.state.segmenter, "segment", slow.segment)
    with TestClient(app, base_url="http://localhost") as client:
        message = assert_json_error(client.post("/v1/segment", files=upload(picture), data={"classes": "a"}), 504)
        assert "timed out" in message
        slow.release.set()


def test_serve_command_fails_fast_on_a_missing_model(tmp_path, capsys):
    from omniseg.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing"), "--port", "1"]) == 2
    assert "no model at" in capsys.readouterr().err
    assert main(["serve", "--queue", "-1"]) == 2


def test_a_full_queue_refuses_before_reading_the_body():
    import asyncio

    from omniseg.server.limits import AdmissionControl, Gate

    gate = Gate(concurrency=1, queue=0, timeout_s=5)
    ticket = gate.admit()
    sent: list[dict] = []

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    async def receive():
        raise AssertionError("the body must not be read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/segment", "headers": []}
    asyncio.run(AdmissionControl(app, gate)(scope, receive, send))
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"].startswith("server busy")
    ticket.release()
    assert gate.admitted == 0 and gate.rejected == 1

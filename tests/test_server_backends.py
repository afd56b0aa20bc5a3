"""`omniseg serve` on any backend (issue 16): a composed source (tiny SAM masks x native embeddings)
and a tiny SAM 3 answer the REST API with the same JSON shapes as the native model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_hf
import tiny_hf16
from conftest import assert_json_error

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omniseg.server import create_app  # noqa: E402
from omniseg.server.door import server_segmenter  # noqa: E402

CLASSES = "sky, road, red car"
SEMANTIC_KEYS = {"classes", "label_map", "vocabulary_size", "fractions", "unlabeled_fraction", "model", "timings"}


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def picture() -> bytes:
    arr = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    arr[:20] = (90, 150, 230)
    return png(arr)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    with torch.random.fork_rng():
        return {"sam": tiny_hf.make_sam(root / "sam"), "sam3": tiny_hf16.make_sam3(root / "sam3")}


@pytest.fixture(scope="module", params=["composed", "sam3"])
def served(request, dirs, tiny_model_dir, text_encoder):
    if request.param == "composed":
        segmenter = server_segmenter(tiny_model_dir, 512, masks=f"sam:{dirs['sam']}", embed="native")
    else:
        segmenter = server_segmenter(f"sam3:{dirs['sam3']}", 512)
    with TestClient(create_app(segmenter), base_url="http://localhost") as client:
        yield request.param, client


def post(client, picture, **form):
    return client.post("/v1/segment", files={"image": ("x.png", picture, "image/png")}, data=form)


def test_healthz_names_the_model_without_paths(served):
    kind, client = served
    model = client.get("/healthz").json()["model"]
    assert ("masks=sam:sam" in model) if kind == "composed" else model == "sam3:sam3"
    assert "/" not in model


def test_semantic_instance_panoptic_json(served, picture):
    kind, client = served
    semantic = post(client, picture, classes=CLASSES, threshold="0")
    assert semantic.status_code == 200, semantic.text
    body = semantic.json()
    assert set(body) >= SEMANTIC_KEYS and body["classes"] == ["sky", "road", "red car"]
    assert body["label_map"]["height"] == 48 and body["label_map"]["width"] == 64
    instances = post(client, picture, classes=CLASSES, task="instance", threshold="0", rle="true").json()
    assert instances["task"] == "instance" and instances["classes"] == ["sky", "road", "red car"]
    assert all({"class", "score", "bbox", "area", "segmentation"} <= set(i) for i in instances["instances"])
    panoptic = post(client, picture, classes=CLASSES, task="panoptic", threshold="0", stuff="sky").json()
    assert panoptic["task"] == "panoptic" and "segments_info" in panoptic
    as_png = client.post(
        "/v1/segment?format=png", files={"image": ("x.png", picture, "image/png")}, data={"classes": CLASSES}
    )
    assert as_png.status_code == 200 and as_png.headers["content-type"] == "image/png"
    if kind == "sam3":  # a concept source has no class-agnostic regions: click is a 400, one line
        click = client.post(
            "/v1/click", files={"image": ("x.png", picture, "image/png")}, data={"points": "[[3, 3, 1]]"}
        )
        assert "named concepts" in assert_json_error(click, 400)
    # a concept source answers refer too: the phrase as one concept, its instances above the threshold
    # (within --margin of the best merged) or "not found"
    refer = client.post("/v1/refer", files={"image": ("x.png", picture, "image/png")}, data={"phrase": "car"})
    assert refer.status_code == 200, refer.text
    if kind == "sam3":
        answer = refer.json()
        assert answer["phrase"] == "car" and (answer["mask"]["height"], answer["mask"]["width"]) == (48, 64)
        assert answer["found"] == bool(answer["selected"]) and (answer["found"] or answer["mask"]["area_fraction"] == 0)

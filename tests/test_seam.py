"""The seam (issue 14): region sources behind one door, one registry of model kinds, the
vocabulary memo, and every entry point (server, batch, eval) taking any source."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
import tiny_hf
from conftest import REPO_ROOT, TINY_CLASSES, make_scene
from omniseg import registry
from omniseg.backends.base import ComposedSource
from omniseg.backends.native import NativeSource
from omniseg.errors import InputError, MissingResourceError
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.source import PromptableSource, RegionSource


class ChequerSource:
    """A region source written by a user: two regions (left and right halves), embeddings given."""

    name = "chequer"

    def __init__(self, embeddings: torch.Tensor) -> None:
        self.embeddings = embeddings
        self.calls = 0

    def regions(self, image: np.ndarray) -> Regions:
        self.calls += 1
        h, w = image.shape[:2]
        masks = torch.zeros(2, h, w)
        masks[0, :, : w // 2] = 1
        masks[1, :, w // 2 :] = 1
        return Regions(masks, self.embeddings, torch.ones(2), (h, w))


@pytest.fixture(scope="module")
def scene():
    return make_scene(np.random.default_rng(5))[0]


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf-seam")
    with torch.random.fork_rng():
        return {kind: getattr(tiny_hf, f"make_{kind}")(root / kind) for kind in ("sam", "clip")}


def test_a_source_object_goes_behind_the_door(scene, text_encoder):
    road, sky = text_encoder.encode(["road", "sky"])
    source = ChequerSource(torch.from_numpy(np.stack([sky, road])))
    assert isinstance(source, RegionSource) and not isinstance(source, PromptableSource)
    seg = omniseg.load(source)
    assert seg.source is source and seg.model_id == "chequer"
    result = seg.segment(scene, classes=["road", "sky"])
    h, w = scene.shape[:2]
    assert (result.label_map[:, : w // 2] == 1).all() and (result.label_map[:, w // 2 :] == 0).all()
    assert result.to_json()["model"] == "chequer"
    click = seg.click(scene, [(w * 0.75, h / 2)], classes=["road", "sky"])  # no prompt capability: picks a region
    assert click.mask[:, w // 2 :].all() and not click.mask[:, : w // 2].any() and click.label == "road"
    with pytest.raises(InputError, match="complete"):
        omniseg.load(source, masks="sam:x")
    with pytest.raises(TypeError, match="not a source"):
        Segmenter(object())  # type: ignore[arg-type]


def test_registry_is_the_one_place_specs_are_parsed(tiny_model_dir):
    assert registry.parse_spec("sam:/x/y", "masks") == ("sam", "/x/y")
    assert registry.parse_spec("native", "model") == ("native", None)
    with pytest.raises(InputError, match="unknown kind 'clip'"):
        registry.parse_spec("clip:/x", "masks")  # CLIP gives embeddings, not masks
    with pytest.raises(InputError, match="names no checkpoint"):
        registry.parse_spec("seggpt", "examples")
    assert registry.is_spec("mask2former:facebook/m2f", "model") and not registry.is_spec(str(tiny_model_dir), "model")
    assert {"native", "onnx", "mask2former", "oneformer", "sam3", "clipseg"} == set(registry.kinds_for("model"))
    promptable = {"sam2", "sam3-tracker", "edgetam"}  # masks of Grounded-SAM's boxes (and of clicks)
    assert {"sam", "native", "onnx", "mask2former", "oneformer"} | promptable == set(registry.kinds_for("masks"))
    # one registration makes a kind usable everywhere
    kind = registry.ModelKind(
        "chequer", frozenset({"model"}), lambda path, context, role: ChequerSource(torch.eye(2)), "test kind"
    )
    registry.register(kind)
    try:
        seg = omniseg.load("chequer:anything")
        assert isinstance(seg.source, ChequerSource)
    finally:
        del registry.KINDS["chequer"]
    with pytest.raises(MissingResourceError, match="no model at"):
        omniseg.load(str(tiny_model_dir) + "-missing")


def test_native_sources_and_composition(tiny_model_dir, hf, scene):
    plain = omniseg.load(tiny_model_dir)
    assert isinstance(plain.source, NativeSource) and plain.model_id == str(tiny_model_dir)
    same = omniseg.load(tiny_model_dir, masks="native")  # both halves native: the native source itself
    assert isinstance(same.source, NativeSource)
    composed = omniseg.load(tiny_model_dir, masks=f"sam:{hf['sam']}", embed=f"clip:{hf['clip']}")
    assert isinstance(composed.source, ComposedSource) and isinstance(composed.source, PromptableSource)
    assert composed.text_encoder is composed.source.embed_source  # CLIP's own text tower
    assert composed.model_id.startswith("masks=sam:") and ",embed=clip:" in composed.model_id
    # regions pass every model output that names a Regions field through (pixel features here)
    regions = plain.regions(scene)
    assert regions.pixel_features is not None and regions.pixel_features.shape[-2:] == regions.masks.shape[-2:]
    with pytest.raises(InputError, match="runtime onnx"):
        omniseg.load(tiny_model_dir, runtime="onnx", masks=f"sam:{hf['sam']}")


def test_the_door_memoises_vocabularies_it_builds(segmenter, tmp_path, monkeypatch):
    built = []
    real = omniseg.Vocabulary.embed

    def counting_embed(self, encoder, progress=True):
        built.append(len(self))
        return real(self, encoder, progress)

    monkeypatch.setattr(omniseg.Vocabulary, "embed", counting_embed)
    names = [f"thing {i}" for i in range(300)]
    first = segmenter.vocabulary(names)
    assert segmenter.vocabulary(list(names)) is first and built == [300]  # an equal list: no rebuild
    assert segmenter.vocabulary("sky, road") is segmenter.vocabulary("sky, road") and built == [300, 2]
    path = tmp_path / "v.txt"
    path.write_text("sky\nroad\n")
    a = segmenter.vocabulary(path, is_file=True)
    assert segmenter.vocabulary(str(path), is_file=True) is a and built == [300, 2, 2]
    path.write_text("sky\nroad\ncar\n")  # edited: size and mtime change, read again
    b = segmenter.vocabulary(path, is_file=True)
    assert b is not a and b.classes == ["sky", "road", "car"]
    image = np.zeros((32, 32, 3), np.uint8)
    segmenter.segment(image, vocab=str(path))
    segmenter.segment(image, classes=names)
    assert built == [300, 2, 2, 3]  # segment() uses the memo too


def test_server_serves_a_composed_backend(tiny_model_dir, hf, scene):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from omniseg.server import create_app

    seg = omniseg.load(tiny_model_dir, masks=f"sam:{hf['sam']}", embed=f"clip:{hf['clip']}")
    buffer = __import__("io").BytesIO()
    Image.fromarray(scene).save(buffer, format="PNG")
    files = {"image": ("scene.png", buffer.getvalue(), "image/png")}
    with TestClient(create_app(seg, vocabularies={}), base_url="http://localhost") as client:
        answer = client.post("/v1/segment", files=files, data={"classes": ",".join(TINY_CLASSES)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["classes"] == TINY_CLASSES and answer.json()["model"].startswith("masks=sam:")
        clicked = client.post("/v1/click", files=files, data={"points": "[[30, 40, 1]]", "boxes": "[[10, 20, 60, 60]]"})
        assert clicked.status_code == 200, clicked.text
        assert client.get("/healthz").json()["model"].startswith("masks=sam:")


def test_serve_command_takes_the_model_options(hf, capsys):
    from omniseg.cli import main

    assert main(["serve", "--masks", "clip:x", "--port", "1"]) == 2  # CLIP gives no masks
    err = capsys.readouterr().err
    assert "unknown kind 'clip'" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--runtime", "onnx", "--embed", f"clip:{hf['clip']}", "--port", "1"]) == 2
    assert "runtime onnx" in capsys.readouterr().err


def test_batch_runs_a_source_object_in_process(text_encoder, scene, tmp_path):
    from omniseg.batch import BatchJob, collect_images, run_batch, run_local

    Image.fromarray(scene).save(tmp_path / "a.png")
    road, sky = text_encoder.encode(["road", "sky"])
    seg = omniseg.load(ChequerSource(torch.from_numpy(np.stack([sky, road]))))
    job = BatchJob(seg.vocabulary(["road", "sky"]))
    items = collect_images([tmp_path / "a.png"])
    stats = run_batch(items, job, tmp_path / "out", runner=lambda p, j: run_local(p, j, segmenter=seg))
    assert stats.done == 1 and json.loads((tmp_path / "out" / "a.json").read_text())["model"] == "chequer"
    with pytest.raises(InputError, match="this process"):
        list(run_local(items, job, workers=2, segmenter=seg))


def test_eval_takes_any_source(tiny_model_dir, hf, tmp_path, capsys):
    from conftest import write_uniform_dataset
    from test_cli import run

    root = write_uniform_dataset(tmp_path / "ds", n=3, classes=TINY_CLASSES)
    code, out, err = run(
        ["eval", root, "--model", tiny_model_dir, "--masks", f"sam:{hf['sam']}", "--json", tmp_path / "r.json"], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["model"].startswith("masks=sam:")


def test_help_and_argument_errors_load_no_torch():
    code = (
        "import sys\n"
        "from omniseg.cli import main\n"
        "for argv in (['--help'], ['segment', '--help'], ['segment']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'PIL') if m in sys.modules)\n"
        "print('LOADED', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False
    )
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


def test_every_task_result_draws_an_overlay_and_saves(segmenter, scene, tmp_path):
    results = [
        segmenter.segment(scene, classes=TINY_CLASSES),
        segmenter.segment(scene, classes=TINY_CLASSES, task="instance", threshold=0.0),
        segmenter.segment(scene, classes=TINY_CLASSES, task="panoptic", threshold=0.0),
        segmenter.refer(scene, "the car"),
        segmenter.click(scene, [(20, 20)], classes=TINY_CLASSES),
        *segmenter.incontext([(scene, (scene[..., 0] > 128).astype(np.uint8))], scene),
    ]
    for n, result in enumerate(results):
        picture = result.overlay()
        assert picture.height == scene.shape[0] and picture.width >= scene.shape[1]
        paths = result.save(tmp_path, f"r{n}")
        assert all(p.is_file() for p in paths.values()) and any(p.suffix == ".json" for p in paths.values())
        json.dumps(result.to_json())  # plain JSON


def test_a_missing_extra_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import importlib.util

    from omniseg.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "yaml" else real(name, *a))
    (tmp_path / "c.yaml").write_text("datasets: [x]\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'omniseg[train]'" in err and len(err.splitlines()) == 1

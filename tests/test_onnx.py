"""ONNX export of the native model and the ONNX Runtime path (issue 6): same outputs as PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CLASSES, make_scene
from omniseg.errors import MissingResourceError
from test_cli import run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def onnx_dir(tiny_model_dir):
    """The tiny model exported once, into the session's cache (as `--runtime onnx` does)."""
    from omniseg.export.onnx import cached_export

    return cached_export(tiny_model_dir)


@pytest.mark.parametrize("size", [(64, 80), (333, 250)])  # neither is the export's sample size
def test_onnx_outputs_equal_pytorch(onnx_dir, tiny_model_dir, size):
    from omniseg.export.onnx import OUTPUTS, OnnxOpenSeg
    from omniseg.models.openseg import OpenSegModel

    model = OpenSegModel.from_pretrained(tiny_model_dir)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(x)
    got = OnnxOpenSeg(onnx_dir)(x)
    for name in OUTPUTS:
        assert got[name].shape == expected[name].shape, name
        assert torch.allclose(got[name], expected[name], atol=1e-4, rtol=1e-4), (
            name,
            float((got[name] - expected[name]).abs().max()),
        )


def test_onnx_segmenter_gives_the_same_labels(onnx_dir, tiny_model_dir):
    import omniseg

    image, _ = make_scene(np.random.default_rng(5))
    eager = omniseg.load(tiny_model_dir)
    onnx = omniseg.load(onnx_dir, runtime="onnx")
    for task in ("semantic", "panoptic"):
        a = eager.segment(image, classes=TINY_CLASSES, task=task)
        b = onnx.segment(image, classes=TINY_CLASSES, task=task)
        if task == "semantic":
            assert (a.label_map == b.label_map).mean() > 0.999
        else:
            assert len(a.segments) == len(b.segments)
    assert onnx.class_temperature == pytest.approx(eager.class_temperature, rel=1e-5)
    assert "(onnx)" in onnx.model_id


def test_cli_export_and_runtime_onnx(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "export"
    code, stdout, err = run(["export", "onnx", "--out", out, "--model", tiny_model_dir, "--check"], capsys)
    assert code == 0, err
    assert (out / "model.onnx").is_file() and "max |onnx - torch|" in stdout
    assert "logit_scale_class" in json.loads((out / "config.json").read_text())
    image, _ = make_scene(np.random.default_rng(6))
    Image.fromarray(image).save(tmp_path / "scene.png")
    code, _, err = run(
        [
            "segment",
            tmp_path / "scene.png",
            "--classes",
            "sky,road",
            "--model",
            out,
            "--runtime",
            "onnx",
            "--out",
            tmp_path / "seg",
        ],
        capsys,
    )
    assert code == 0, err
    assert "(onnx)" in json.loads((tmp_path / "seg" / "scene.json").read_text())["model"]


def test_runtime_onnx_exports_native_dir_once_into_the_cache(onnx_dir, tiny_model_dir, omniseg_cache_dir, monkeypatch):
    import omniseg
    from omniseg.export import onnx as onnx_mod

    calls = []
    monkeypatch.setattr(onnx_mod, "export_onnx", lambda *a, **k: calls.append(1))
    assert onnx_mod.cached_export(tiny_model_dir) == onnx_dir and not calls  # exported by the fixture already
    assert str(onnx_dir).startswith(str(omniseg_cache_dir)) and (onnx_dir / "model.onnx").is_file()
    seg = omniseg.load(tiny_model_dir, runtime="onnx")  # a native model directory: the cached export
    assert isinstance(seg.source.network, onnx_mod.OnnxOpenSeg) and not calls


def test_onnx_errors_are_missing_resources(tmp_path, capsys):
    from omniseg.export.onnx import OnnxOpenSeg

    with pytest.raises(MissingResourceError, match="omniseg export onnx"):
        OnnxOpenSeg(tmp_path)
    code, _, err = run(["segment", "x.png", "--classes", "a", "--runtime", "onnx", "--masks", "sam:x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1

"""The device option of the issue-16 adapters: every model and tensor follows ``device``; an unknown or
absent device is a one-line InputError. Accelerators are exercised where present (skipped otherwise),
with results compared to the CPU's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_hf16
from omniseg.backends.device import resolve_device
from omniseg.backends.sam2 import ClickBackend
from omniseg.backends.sam3 import Sam3Backend
from omniseg.errors import InputError

ACCELERATORS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
            reason="no MPS device here",
        ),
    ),
]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "", "banana:0"):
        with pytest.raises(InputError) as err:
            resolve_device(bad)
        assert "\n" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available"):
            resolve_device("cuda:0")
    elif torch.cuda.device_count() < 8:
        with pytest.raises(InputError, match="not available"):
            resolve_device("cuda:7")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    with torch.random.fork_rng():
        return {"sam3": tiny_hf16.make_sam3(root / "sam3"), "sam2": tiny_hf16.make_sam2(root / "sam2")}


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(8).random((40, 60, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("device", ["cpu", *ACCELERATORS])
def test_sam3_and_sam2_on_a_device_match_cpu(dirs, image, device):
    cpu = Sam3Backend(dirs["sam3"], threshold=0.0).segment(image, ["car", "sky"])
    there = Sam3Backend(dirs["sam3"], device=device, threshold=0.0)
    assert next(there.model.parameters()).device.type == device
    found = there.segment(image, ["car", "sky"])
    assert found.masks.device.type == device
    assert torch.allclose(found.scores.cpu(), cpu.scores, atol=1e-3)
    clicks = ClickBackend(dirs["sam2"], device=device).predict(image, [(12.0, 10.0)], [1])
    reference = ClickBackend(dirs["sam2"]).predict(image, [(12.0, 10.0)], [1])
    assert clicks.masks.device.type == device
    assert torch.allclose(clicks.scores.cpu(), reference.scores, atol=1e-3)

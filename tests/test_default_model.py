"""The embedded default model: it ships, loads, and is as good on held-out images as its card says.

The quality floors are set a few points below the figures in the model card (inference on the CPU
is deterministic; the margin absorbs BLAS differences between machines, not regressions).
"""

from __future__ import annotations

import json

import pytest

import omniseg
from omniseg.eval.semantic import evaluate_semantic
from omniseg.models import DEFAULT_MODEL_DIR


def test_default_weights_ship_with_config_and_card():
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["text_dim"] == 384 and config["text_encoder"] == "all-MiniLM-L6-v2"
    size_mb = (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size / 2**20
    assert 1 < size_mb < 20, f"weights are {size_mb:.1f} MB"
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    for section in ("Training data", "Recipe", "Held-out metrics"):
        assert section in card


@pytest.fixture(scope="module")
def default_segmenter():
    return omniseg.load()


@pytest.mark.shared
@pytest.mark.parametrize(("dataset", "grounding"), [("camvid", False), ("msrc_v2", False), ("msrc_v2", True)])
def test_default_model_quality_on_val_split(shared_data, default_segmenter, dataset, grounding):
    floors = json.loads((DEFAULT_MODEL_DIR / "quality_floors.json").read_text())
    key = f"{dataset}{'_grounding' if grounding else ''}"
    report = evaluate_semantic(
        default_segmenter, shared_data / dataset, grounding=grounding, split="val", limit=25, progress=False
    )
    assert report["images"] == 25
    assert report["mIoU"] >= floors[key], f"{key}: mIoU {report['mIoU']} below floor {floors[key]}"

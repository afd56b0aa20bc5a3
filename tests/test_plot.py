"""The loss-curve picture written at the end of training."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from omniseg.train.plot import plot_log


def test_plot_log_writes_one_panel_per_term(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(
            json.dumps({"step": s, "lr": 1e-3, "elapsed": s, "dice": 1 / s, "total": 2 / s}) + "\n"
            for s in range(1, 30)
        )
    )
    out = plot_log(log, tmp_path / "curve.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.width > 300 and im.height > 100
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_plot_log_rejects_empty_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("")
    with pytest.raises(ValueError):
        plot_log(log, tmp_path / "curve.png")

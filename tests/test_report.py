"""`omniseg eval --report DIR`: the HTML report, its charts and example overlays."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CLASSES
from omniseg.cli import main
from omniseg.eval.report import ReportCollector


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, *capsys.readouterr()


def test_eval_report_writes_html_charts_and_examples(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["eval", tiny_dataset, "--model", tiny_model_dir, "--report", out, "--report-examples", "2", "--quiet"]
    code, stdout, _ = _run(argv, capsys)
    assert code == 0
    assert str(out / "report.html") in stdout
    names = ["per_class_iou.png", "confusion.png", "examples_best.png", "examples_worst.png"]
    for name in names:
        with Image.open(out / name) as im:
            im.load()
            assert im.format == "PNG" and im.width > 200 and im.height > 150
    page = (out / "report.html").read_text()
    for name in TINY_CLASSES:
        assert name in page
    assert "mIoU" in page and "Confusion matrix" in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(names)  # self-contained: every picture inside the page
    for data in embedded:
        Image.open(io.BytesIO(base64.b64decode(data))).load()
    report = json.loads((out / "report.json").read_text())
    assert set(report["per_image_miou"]) == {f"img{i:02d}" for i in range(6)}
    assert set(report["per_class_iou"]) == set(TINY_CLASSES)


@pytest.mark.parametrize("task", ["panoptic", "video"])
def test_eval_report_other_tasks_say_what_is_supported(task, tiny_dataset, tiny_model_dir, tmp_path, capsys):
    code, _, err = _run(["eval", tiny_dataset, "--task", task, "--model", tiny_model_dir, "--report", tmp_path], capsys)
    assert code == 2
    assert "--report supports --task semantic only" in err and len(err.strip().splitlines()) == 1


def test_collector_keeps_best_and_worst_without_repeats():
    collector = ReportCollector(2, examples=2)
    gt = np.array([[0, 0], [1, 1]], np.uint8)
    for i, pred in enumerate([gt, 1 - gt, np.zeros_like(gt), gt]):
        collector.add(f"im{i}", f"im{i}.png", pred, gt)
    assert collector.per_image == {"im0": 100.0, "im1": 0.0, "im2": 25.0, "im3": 100.0}
    assert [e.id for e in collector.best] == ["im0", "im3"]
    assert [e.id for e in collector.worst_examples()] == ["im1", "im2"]
    small = ReportCollector(2, examples=4)
    small.add("only", "only.png", gt, gt)
    assert [e.id for e in small.best] == ["only"] and small.worst_examples() == []

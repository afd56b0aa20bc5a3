"""`torchrun --nproc_per_node 2 -m omniseg.train CONFIG` (gloo, CPU) follows the single-process loss
curve with the same global batch, and resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_MODEL_CONFIG
from omniseg.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def _config(tmp_path, dataset, name, steps):
    cfg = {
        "datasets": [{"path": str(dataset)}],
        "out_dir": str(tmp_path / name),
        "steps": steps,
        "batch_size": 4,
        "crop": 48,
        "short_side": 48,
        "checkpoint_every": 2,
        "log_every": 1,
        "warmup_steps": 4,  # the lr of a step does not depend on the total number of steps
        "threads": 2,
        # Grounding is contrastive within each process's share of the batch (OpenSeg appendix F's
        # "unsync" loss), so it differs by design from one process; off here, the curves must agree.
        "losses": {"grounding": 0.0},
        "model": {**TINY_MODEL_CONFIG, "trainable_backbone_from": 14},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _torchrun(config, *extra):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "omniseg.train", str(config), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one_and_resume(tmp_path, tiny_dataset, capsys):
    assert main(["train", str(_config(tmp_path, tiny_dataset, "single", 4))]) == 0, capsys.readouterr().err
    ddp = _config(tmp_path, tiny_dataset, "ddp", 4)
    _torchrun(ddp, "--steps", "2")  # interrupted after 2 steps...
    assert json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text()) == {"step": 2}
    _torchrun(ddp)  # ...and resumed to 4
    single, two = _log(tmp_path / "single"), _log(tmp_path / "ddp")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    for a, b in zip(single, two, strict=True):
        for key in ("total", "segmentation", "pixel_class", "region_class", "objectness"):
            assert b[key] == pytest.approx(a[key], rel=2e-3, abs=2e-4), (key, a["step"])
    assert (tmp_path / "ddp" / "loss_curve.png").is_file() and (tmp_path / "ddp" / "model" / "config.json").is_file()

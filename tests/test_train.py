"""`omniseg train`: a tiny run end to end, and exact resume after an interruption."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import omniseg
from conftest import TINY_MODEL_CONFIG
from omniseg.cli import main
from omniseg.train.config import TrainConfig


def write_config(directory, dataset, out_dir, **overrides):
    cfg = {
        "datasets": [{"path": str(dataset), "weight": 1.0}],
        "out_dir": str(out_dir),
        "steps": 4,
        "batch_size": 2,
        "crop": 64,
        "short_side": 64,
        "checkpoint_every": 2,
        "log_every": 1,
        # The first four steps are all warm-up, so the lr of step s, (s+1)/4 * lr, does not depend
        # on the total number of steps: a run stopped at 2 and resumed to 4 follows the same schedule.
        "warmup_steps": 4,
        "threads": 1,
        "model": {**TINY_MODEL_CONFIG, "trainable_backbone_from": 14},
        **overrides,
    }
    path = directory / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def run_a(tiny_dataset, tmp_path_factory):
    """4 uninterrupted steps."""
    base = tmp_path_factory.mktemp("train-a")
    cfg = write_config(base, tiny_dataset, base / "run")
    code = main(["train", str(cfg)])
    assert code == 0
    return base / "run"


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_training_logs_finite_losses(run_a):
    records = _log(run_a)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        for key in ("total", "segmentation", "pixel_class", "region_class", "objectness", "grounding"):
            assert math.isfinite(r[key]), (key, r)
        assert r["total"] > 0
    # lr follows the linear warm-up: step s (1-based) used (s / 4) * lr; the log shows the last one
    assert records[-1]["lr"] == pytest.approx(1e-3)


def test_trained_model_is_loadable(run_a, text_encoder):
    model_dir = run_a / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["trained_steps"] == 4 and config["num_queries"] == TINY_MODEL_CONFIG["num_queries"]
    seg = omniseg.load(model_dir)
    result = seg.segment(np.zeros((40, 48, 3), np.uint8), classes=["sky", "road"])
    assert result.label_map.shape == (40, 48)
    # The checkpoint directory is a loadable model too.
    assert omniseg.load(run_a / "checkpoint").model_id.endswith("checkpoint")


def test_training_changes_the_weights(run_a, tiny_dataset, tmp_path):
    """The resume test compares weights; make sure 4 steps move them well beyond its tolerance."""
    from omniseg.models.openseg import OpenSegModel

    cfg = TrainConfig.from_yaml(write_config(tmp_path, tiny_dataset, tmp_path / "unused"))
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)  # train() initialises the model right after seeding
        init = OpenSegModel(cfg.model).trainable_state_dict()
    trained = load_file(str(run_a / "checkpoint" / "model.safetensors"))
    assert trained.keys() == init.keys()
    changed = max(float((trained[k] - init[k]).abs().max()) for k in trained if trained[k].is_floating_point())
    assert changed > 1e-3


def test_resume_is_exact(run_a, tiny_dataset, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_dataset, tmp_path / "run")
    _train(["train", cfg, "--steps", "2"], capsys)
    run_b = tmp_path / "run"
    assert json.loads((run_b / "checkpoint" / "state.json").read_text()) == {"step": 2}
    at_step_2 = load_file(str(run_b / "checkpoint" / "model.safetensors"))
    _train(["train", cfg, "--steps", "4"], capsys)
    assert json.loads((run_b / "checkpoint" / "state.json").read_text()) == {"step": 4}

    # Same batches and same updates: the logs agree step by step...
    log_a, log_b = _log(run_a), _log(run_b)
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    for ra, rb in zip(log_a, log_b, strict=True):
        assert ra["total"] == pytest.approx(rb["total"], abs=1e-5)
    # ...and so do the weights, full precision (checkpoint) and as shipped (float16 model).
    for rel in ("checkpoint/model.safetensors", "model/model.safetensors"):
        a, b = load_file(str(run_a / rel)), load_file(str(run_b / rel))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=f"{rel}: {k}")
    # Steps 3-4 did change the weights, so the comparison above is not vacuous.
    final = load_file(str(run_b / "checkpoint" / "model.safetensors"))
    assert any(not torch.equal(final[k], at_step_2[k]) for k in final)


def test_init_from_a_trained_model_keeps_its_weights_and_adds_queries(run_a, tiny_dataset, tmp_path):
    """Fine-tuning: a run with more queries starts from the trained ones; everything else is copied."""
    from omniseg.models.openseg import OpenSegConfig, OpenSegModel
    from omniseg.train.checkpoints import init_from_model

    source = OpenSegModel.from_pretrained(run_a / "model").state_dict()
    more = {**TINY_MODEL_CONFIG, "trainable_backbone_from": 14, "num_queries": 12}
    model = OpenSegModel(OpenSegConfig(**more))
    fresh_queries = model.queries.detach().clone()
    report = init_from_model(model, run_a / "model")
    assert report["partly"] == ["queries (8 of 12 rows)"] and not report["new"]
    state = model.state_dict()
    for name in report["copied"]:
        assert torch.equal(state[name], source[name]), name
    assert torch.equal(state["queries"][:8], source["queries"])
    assert torch.equal(state["queries"][8:], fresh_queries[8:])  # the new queries keep their init

    # Named in a config, the path is relative to the config file; one step trains from there.
    shutil.copytree(run_a / "model", tmp_path / "trained")
    (tmp_path / "cfg").mkdir()
    cfg_path = write_config(
        tmp_path / "cfg", tiny_dataset, tmp_path / "ft", steps=1, init_from="../trained", model=more
    )
    assert TrainConfig.from_yaml(cfg_path).init_from == str((tmp_path / "trained").resolve())
    assert main(["train", str(cfg_path)]) == 0
    assert json.loads((tmp_path / "ft" / "model" / "config.json").read_text())["num_queries"] == 12


def test_init_from_refuses_weights_of_another_shape(run_a, tiny_dataset, tmp_path, capsys):
    cfg = write_config(
        tmp_path,
        tiny_dataset,
        tmp_path / "ft",
        init_from=str(run_a / "model"),
        model={**TINY_MODEL_CONFIG, "feature_dim": 16, "trainable_backbone_from": 14},
    )
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "init_from" in err and "only num_queries may differ" in err


def test_a_config_starts_from_its_base(tmp_path):
    from omniseg.errors import InputError
    from omniseg.train.config import TrainConfig

    (tmp_path / "budget.yaml").write_text("steps: 400\nbatch_size: 4\nlosses: {grounding: 0.25, ess: 0.5}\n")
    (tmp_path / "run.yaml").write_text("base: budget.yaml\ndatasets: [data]\nbatch_size: 8\nlosses: {ess: 1.0}\n")
    cfg = TrainConfig.from_yaml(tmp_path / "run.yaml")
    assert cfg.steps == 400 and cfg.batch_size == 8  # inherited, overridden
    assert cfg.losses.ess == 1.0 and cfg.losses.grounding == 0.25  # merged key by key
    assert cfg.datasets[0].path == str((tmp_path / "data").resolve())
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\ndatasets: [data]\n")
    with pytest.raises(InputError, match="includes itself"):
        TrainConfig.from_yaml(tmp_path / "loop.yaml")


def test_the_shipped_recipes_share_one_budget():
    from conftest import REPO_ROOT
    from omniseg.train.config import TrainConfig

    recipes = sorted((REPO_ROOT / "configs" / "recipes").glob("*.yaml"))
    budgeted = [p for p in recipes if p.name != "small_budget.yaml" and "base: small_budget.yaml" in p.read_text()]
    assert len(budgeted) >= 12
    for path in budgeted:
        cfg = TrainConfig.from_yaml(path)
        assert (cfg.steps, cfg.batch_size, cfg.crop, cfg.lr) == (400, 4, 192, 0.001), path.name

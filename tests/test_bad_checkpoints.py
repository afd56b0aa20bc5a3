"""Issue 13, item 8: bad checkpoints of every kind end in one line and exit 2, never exit 1:
corrupt training checkpoints on resume (and a malicious optimizer.pt: refused in one line, its
payload never run), a CLIP folder whose weights file is not safetensors."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_CONFIG, run_cli
from omniseg.errors import ModelLoadError


class Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from omniseg.models.openseg import OpenSegConfig, OpenSegModel
    from omniseg.train.checkpoints import save_checkpoint
    from omniseg.train.config import TrainConfig
    from omniseg.train.schedule import build_optimizer

    model = OpenSegModel(OpenSegConfig(**TINY_MODEL_CONFIG))
    optimizer = build_optimizer(model, TrainConfig(datasets=[]))
    directory = tmp_path_factory.mktemp("run") / "checkpoint"
    save_checkpoint(directory, model, optimizer, 3)
    return directory


def resume(directory: Path) -> int:
    from omniseg.models.openseg import OpenSegConfig, OpenSegModel
    from omniseg.train.checkpoints import load_checkpoint
    from omniseg.train.config import TrainConfig
    from omniseg.train.schedule import build_optimizer

    model = OpenSegModel(OpenSegConfig(**TINY_MODEL_CONFIG))
    return load_checkpoint(directory, model, build_optimizer(model, TrainConfig(datasets=[])))


def test_a_good_checkpoint_resumes(checkpoint) -> None:
    assert resume(checkpoint) == 3


@pytest.mark.parametrize(
    "name, damage",
    [
        ("model.safetensors", lambda data: data[: len(data) // 2]),
        ("model.safetensors", lambda data: b"\x00" * 100),
        ("optimizer.pt", lambda data: data[: len(data) // 2]),
        ("optimizer.pt", lambda data: b"not a torch file"),
        ("state.json", lambda data: b"{"),
        ("state.json", lambda data: b'{"step": "x"}'),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(checkpoint, tmp_path, name, damage) -> None:
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    (copy / name).write_bytes(damage((copy / name).read_bytes()))
    with pytest.raises(ModelLoadError) as info:
        resume(copy)
    assert str(copy / name) in str(info.value) and "\n" not in str(info.value)


def test_nan_checkpoint_weights_are_refused(checkpoint, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="NaN"):
        resume(copy)


def test_a_malicious_optimizer_file_is_one_line_and_never_runs(checkpoint, tmp_path, capsys) -> None:
    """It was refused (weights_only) but printed 8 stderr lines."""
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    sentinel = tmp_path / "payload-ran"
    torch.save({"state": {0: Payload(sentinel)}, "param_groups": []}, copy / "optimizer.pt")
    with pytest.raises(ModelLoadError) as info:
        resume(copy)
    assert "\n" not in str(info.value) and "optimizer.pt" in str(info.value)
    assert not sentinel.exists(), "the pickle's payload ran"
    assert capsys.readouterr().err == ""


def test_clip_folder_with_non_safetensors_weights(tmp_path, capsys) -> None:
    """An --embed clip: folder whose weights file is not safetensors ended in exit 1."""
    import tiny_hf

    with torch.random.fork_rng():
        directory = tiny_hf.make_clip(tmp_path / "clip")
    capsys.readouterr()  # transformers' own "Writing model shards" bar
    (directory / "model.safetensors").write_bytes(pickle.dumps(np.arange(10)))
    from omniseg.backends.clip import ClipBackend

    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        ClipBackend(directory)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    argv = ["segment", image, "--classes", "a,b", "--embed", f"clip:{directory}", "--out", tmp_path / "out"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a valid safetensors" in err, err

"""Checkpoints (model, optimiser, step: everything needed to continue exactly), fine-tuning from a
trained model, and the log truncated to a resumed step."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from omniseg.errors import InputError
from omniseg.io import atomic_write_text
from omniseg.models import DEFAULT_MODEL_DIR
from omniseg.models.openseg import OpenSegModel


def save_checkpoint(directory: Path, model: OpenSegModel, optimizer: torch.optim.Optimizer, step: int) -> None:
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.trainable_state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    # A checkpoint is also a loadable model directory (omniseg eval --model runs/x/checkpoint).
    (tmp / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, model: OpenSegModel, optimizer: torch.optim.Optimizer) -> int:
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    # Our own file, written by save_checkpoint; weights_only refuses arbitrary objects anyway.
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return int(json.loads((directory / "state.json").read_text())["step"])


def init_from_model(model: OpenSegModel, source: str | Path) -> dict[str, list[str]]:
    """Copy a trained model's weights into ``model`` before step 0 (fine-tuning, as Detectron2's
    MODEL.WEIGHTS). Tensors of equal shape are copied; the learnable queries row by row, so a run
    with more queries keeps the trained ones and the extra ones start from their random init.
    Tensors the source lacks (a head it did not have) stay as initialised. Any other difference
    (another feature size, another text encoder) is an InputError: those weights cannot carry over.
    Returns what was copied, partly copied and left new, for the log."""
    directory = DEFAULT_MODEL_DIR if str(source) == "default" else Path(source)
    trained = OpenSegModel.from_pretrained(directory)
    if trained.config.text_encoder != model.config.text_encoder or trained.config.arch != model.config.arch:
        raise InputError(
            f"init_from {directory}: a {trained.config.arch} model for {trained.config.text_encoder} cannot start "
            f"a {model.config.arch} model for {model.config.text_encoder}"
        )
    source_state = trained.state_dict()
    report: dict[str, list[str]] = {"copied": [], "partly": [], "new": []}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in source_state:
                report["new"].append(name)
                continue
            value = source_state[name]
            if value.shape == tensor.shape:
                tensor.copy_(value)
                report["copied"].append(name)
            elif name == "queries" and value.shape[1:] == tensor.shape[1:]:
                rows = min(value.shape[0], tensor.shape[0])
                tensor[:rows].copy_(value[:rows])
                report["partly"].append(f"{name} ({rows} of {tensor.shape[0]} rows)")
            else:
                raise InputError(
                    f"init_from {directory}: {name} has shape {tuple(value.shape)} there and {tuple(tensor.shape)} "
                    "here; keep the model settings of the source (only num_queries may differ)"
                )
    return report


def truncate_log(log_path: Path, step: int) -> None:
    """After a crash the log may run past the checkpoint; drop those lines so steps never repeat."""
    if not log_path.is_file():
        return
    kept = [
        line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    atomic_write_text(log_path, "".join(line + "\n" for line in kept))

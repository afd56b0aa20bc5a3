"""Checkpoints (model, optimiser, step: everything needed to continue exactly), fine-tuning from a
trained model, and the log truncated to a resumed step."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from omniseg.atomic import atomic_write_text
from omniseg.errors import InputError, ModelLoadError
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
    """Resume from ``directory``. A corrupt, truncated or foreign checkpoint (or an optimizer.pt
    holding objects: weights_only refuses them unbuilt) is a ModelLoadError naming the file, one
    line: delete the checkpoint to start over, or keep it to inspect."""

    def refuse(name: str, exc: BaseException) -> ModelLoadError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return ModelLoadError(
            f"checkpoint file {directory / name} cannot be resumed from ({exc.__class__.__name__}: {first[:200]}); "
            "delete the checkpoint directory to start over"
        )

    try:
        weights = load_file(str(directory / "model.safetensors"))
        if any(v.is_floating_point() and not bool(v.isfinite().all()) for v in weights.values()):
            raise ValueError("NaN or infinite weights")
        model.load_state_dict(weights, strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise refuse("model.safetensors", exc) from exc
    try:
        # Our own file, written by save_checkpoint; weights_only refuses arbitrary objects anyway.
        with warnings.catch_warnings():  # torch's multi-line warnings about what it refused: the error says it
            warnings.simplefilter("ignore")
            optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError, KeyError, ValueError: unusable
        raise refuse("optimizer.pt", exc) from exc
    try:
        return int(json.loads((directory / "state.json").read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise refuse("state.json", exc) from exc


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

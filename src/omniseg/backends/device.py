"""One place that turns a user's ``device`` argument into a torch.device, or a one-line InputError.

Every adapter of issue 16 takes ``device`` (default "cpu") and moves its model and every tensor it
makes with it; there is no CUDA-specific code path, so a GPU needs no change beyond passing
``device="cuda"`` (or "mps"). A device torch does not know, or one this machine does not have,
fails here before any model is loaded.
"""

from __future__ import annotations

import torch

from omniseg.errors import InputError


def _available(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    if device.type == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    backend = getattr(torch, device.type, None)  # xpu, hpu, ... expose is_available() the same way
    is_available = getattr(backend, "is_available", None)
    return bool(callable(is_available) and is_available())


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' ... -> torch.device; unknown or unavailable -> InputError."""
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if not _available(resolved):
        raise InputError(f"device {str(resolved)!r} is not available on this machine (torch {torch.__version__})")
    return resolved

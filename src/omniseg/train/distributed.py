"""Data-parallel training on CPU (torchrun, gloo): rank/world from the environment, gradient averaging."""

from __future__ import annotations

import os

import torch


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); under torchrun, joins the gloo process group (CPU)."""

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients as one flat tensor: each process then holds the mean over the
    global batch (equal shares), so every process applies the same update."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n

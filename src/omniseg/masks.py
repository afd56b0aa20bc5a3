"""Helpers on sets of binary masks, shared by the proposal generators and their evaluation."""

from __future__ import annotations

import numpy as np
import torch


def dedupe(masks: np.ndarray, n: int, max_iou: float = 0.95) -> np.ndarray:
    """The first n non-empty masks of the ranked [P, H, W] that overlap no earlier kept one above max_iou."""
    flat = torch.from_numpy(masks.reshape(len(masks), -1))
    kept: list[int] = []
    for i in range(len(masks)):
        if len(kept) >= n:
            break
        if not flat[i].any():
            continue
        if kept:
            k = flat[kept]
            ious = (k & flat[i]).sum(1) / (k | flat[i]).sum(1).clamp(min=1)
            if float(ious.max()) > max_iou:
                continue
        kept.append(i)
    return masks[kept]

"""Helpers on sets of binary masks, shared by the mask sources, the proposal generators and their
evaluation: duplicate removal by IoU (ranked lists) and greedy mask NMS (scored sets)."""

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


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float, limit: int) -> list[int]:
    """Greedy NMS on binary masks [N,h,w] by mask IoU, best score first; at most ``limit`` kept."""
    order = torch.argsort(scores, descending=True)
    flat = masks[order].flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= limit:
            break
        suppressed |= iou[i] > iou_threshold
    return keep

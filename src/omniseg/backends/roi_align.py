"""RoI Align in plain torch, with torchvision.ops.roi_align's semantics (aligned=False,
sampling_ratio=-1: ceil(roi size / output size) bilinear samples per bin, averaged).

Why: transformers' SAM 3 geometry encoder pools box exemplars with ``torchvision.ops.roi_align``,
and no CPU torchvision exists for this torch. ``install_for_sam3()`` hands this function to
transformers' SAM 3 modeling module only when torchvision is missing, so box exemplars work on
either install and use torchvision's own kernel where it exists.
"""

from __future__ import annotations

import math
import types

import torch


def _bilinear(features: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """features [C,H,W] sampled at points y, x [P] -> [C,P], zero outside (-1, H) x (-1, W) as torchvision."""
    height, width = features.shape[-2:]
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y0 = y.floor().long().clamp(max=height - 1)
    x0 = x.floor().long().clamp(max=width - 1)
    y = torch.where(y0 >= height - 1, y0.to(y.dtype), y)
    x = torch.where(x0 >= width - 1, x0.to(x.dtype), x)
    y1 = (y0 + 1).clamp(max=height - 1)
    x1 = (x0 + 1).clamp(max=width - 1)
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    value = (
        features[:, y0, x0] * (hy * hx)
        + features[:, y0, x1] * (hy * lx)
        + features[:, y1, x0] * (ly * hx)
        + features[:, y1, x1] * (ly * lx)
    )
    return torch.where(outside, torch.zeros_like(value), value)


def roi_align(
    features: torch.Tensor,
    boxes: list[torch.Tensor] | tuple[torch.Tensor, ...],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """features [B,C,H,W]; boxes: one [K_b,4] xyxy tensor per image -> [sum K_b, C, oh, ow]."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    offset = 0.5 if aligned else 0.0
    pooled = []
    for batch, image_boxes in enumerate(boxes):
        for box in image_boxes.to(features.dtype):
            x0, y0, x1, y1 = (float(v) * spatial_scale - offset for v in box)
            roi_w, roi_h = x1 - x0, y1 - y0
            if not aligned:
                roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
            bin_h, bin_w = roi_h / out_h, roi_w / out_w
            grid_h = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_h / out_h))
            grid_w = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_w / out_w))
            dev, dt = features.device, features.dtype
            ys = y0 + (
                torch.arange(out_h, device=dev, dtype=dt)[:, None] * bin_h
                + (torch.arange(grid_h, device=dev, dtype=dt)[None] + 0.5) * bin_h / grid_h
            )  # [oh, gh]
            xs = x0 + (
                torch.arange(out_w, device=dev, dtype=dt)[:, None] * bin_w
                + (torch.arange(grid_w, device=dev, dtype=dt)[None] + 0.5) * bin_w / grid_w
            )  # [ow, gw]
            yy = ys[:, :, None, None].expand(out_h, grid_h, out_w, grid_w).reshape(-1)
            xx = xs[None, None].expand(out_h, grid_h, out_w, grid_w).reshape(-1)
            values = _bilinear(features[batch], yy, xx).view(-1, out_h, grid_h, out_w, grid_w)
            pooled.append(values.mean(dim=(2, 4)))
    if not pooled:
        return features.new_zeros(0, features.shape[1], out_h, out_w)
    return torch.stack(pooled)


def install_for_sam3() -> None:
    """Give transformers' SAM 3 modeling module a ``torchvision.ops.roi_align`` when torchvision is absent.

    The module is imported by its full name: ``from transformers.models.sam3 import modeling_sam3``
    asks the package's lazy attribute, which without torchvision is a placeholder raising ImportError
    on any attribute (in a fresh process, e.g. the benchmark or a Ray worker, before anything else
    imported the real module)."""
    import transformers.models.sam3.modeling_sam3 as modeling_sam3

    if getattr(modeling_sam3, "torchvision", None) is None:
        modeling_sam3.torchvision = types.SimpleNamespace(ops=types.SimpleNamespace(roi_align=roi_align))

"""SAM (transformers ``SamModel``) as a mask source: class-agnostic proposals from a grid of point
prompts ("everything" mode: filter by predicted IoU and stability, then mask NMS), and the masks
SAM answers to the user's own points and boxes for the click task.

The image is encoded once per call; prompts go through the light mask decoder in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.base import Proposals
from omniseg.backends.hub import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    fit_size,
    load_model,
    normalization,
    resize,
    resolve_checkpoint,
    to_tensor,
)
from omniseg.masks import mask_nms

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click


def stability(logits: torch.Tensor, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability score: IoU of the masks thresholded at +offset and -offset (logits [N,h,w])."""
    high = (logits > offset).flatten(1).sum(1).float()
    low = (logits > -offset).flatten(1).sum(1).float()
    return high / low.clamp(min=1)


class SamBackend:
    """points_per_side: the everything-mode grid (n x n points); thresholds as in SAM's generator.

    When fewer than ``min_regions`` candidates pass the IoU/stability filters (a weak or random
    model), the best-scoring ones are kept anyway so that every task still has regions to read.
    """

    name = "sam"

    def __init__(
        self,
        spec: str | Path,
        points_per_side: int = 16,
        pred_iou_threshold: float = 0.8,
        stability_threshold: float = 0.9,
        nms_threshold: float = 0.7,
        max_regions: int = 100,
        min_regions: int = 4,
        points_per_batch: int = 64,
    ) -> None:
        from transformers import SamModel

        self.directory = resolve_checkpoint(spec, "SAM")
        self.model: Any = load_model(SamModel, self.directory, "SAM")
        vision = self.model.config.vision_config
        self.input_size = int(vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0])
        self.mean, self.std = normalization(self.directory, IMAGENET_MEAN, IMAGENET_STD)
        self.points_per_side = points_per_side
        self.pred_iou_threshold = pred_iou_threshold
        self.stability_threshold = stability_threshold
        self.nms_threshold = nms_threshold
        self.max_regions = max_regions
        self.min_regions = min_regions
        self.points_per_batch = points_per_batch

    def _encode(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embeddings of the image resized (longest side = SAM's input size) and zero-padded."""
        size = fit_size(image.shape[0], image.shape[1], self.input_size)
        x = (resize(to_tensor(image), size) - self.mean) / self.std
        x = F.pad(x, (0, self.input_size - size[1], 0, self.input_size - size[0]))
        return self.model.get_image_embeddings(pixel_values=x), size

    def _decode(
        self,
        embeddings: torch.Tensor,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        resized: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits [P*3, h, w] cropped to the image (not the padding) and predicted IoUs [P*3]."""
        out = self.model(
            image_embeddings=embeddings,
            input_points=points,
            input_labels=labels,
            input_boxes=boxes,
            multimask_output=True,
        )
        logits = out.pred_masks[0]  # [P, 3, L, L] on the padded square
        side = logits.shape[-1]
        h = max(1, round(resized[0] * side / self.input_size))
        w = max(1, round(resized[1] * side / self.input_size))
        return logits[..., :h, :w].flatten(0, 1), out.iou_scores[0].flatten()

    @torch.inference_mode()
    def propose(self, image: np.ndarray) -> Proposals:
        embeddings, resized = self._encode(image)
        n = self.points_per_side
        centres = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        ys, xs = torch.meshgrid(centres * resized[0], centres * resized[1], indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # [n*n, 2] (x, y) in the resized frame
        all_logits, all_scores = [], []
        for start in range(0, len(grid), self.points_per_batch):
            chunk = grid[start : start + self.points_per_batch]
            logits, scores = self._decode(
                embeddings, chunk[None, :, None, :], torch.ones(1, len(chunk), 1, dtype=torch.long), None, resized
            )
            all_logits.append(logits)
            all_scores.append(scores)
        logits, scores = torch.cat(all_logits), torch.cat(all_scores)
        stable = stability(logits)
        passed = (scores >= self.pred_iou_threshold) & (stable >= self.stability_threshold)
        nonempty = (logits > 0).flatten(1).any(1)
        rank = scores * stable + passed.float() * 10 + nonempty.float() * 100  # passing, non-empty first
        candidates = torch.argsort(rank, descending=True)
        count = max(int((passed & nonempty).sum()), min(self.min_regions, len(candidates)))
        candidates = candidates[:count]
        keep = candidates[mask_nms(logits[candidates] > 0, rank[candidates], self.nms_threshold, self.max_regions)]
        return Proposals(masks=logits[keep].sigmoid(), scores=scores[keep].clamp(0, 1))

    @torch.inference_mode()
    def prompt(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Proposals:
        """SAM's three candidate masks per box (or for the clicks alone), scored by predicted IoU."""
        embeddings, resized = self._encode(image)
        scale_y, scale_x = resized[0] / image.shape[0], resized[1] / image.shape[1]
        groups = max(1, len(boxes))
        points = labels = box_tensor = None
        if clicks:
            xy = torch.tensor([[(c.x + 0.5) * scale_x, (c.y + 0.5) * scale_y] for c in clicks], dtype=torch.float32)
            points = xy[None, None].expand(1, groups, -1, -1).contiguous()
            labels = torch.tensor([[int(c.positive) for c in clicks]] * groups, dtype=torch.long)[None]
        if boxes:
            box_tensor = torch.tensor(
                [[x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y] for x0, y0, x1, y1 in boxes],
                dtype=torch.float32,
            )[None]
        logits, scores = self._decode(embeddings, points, labels, box_tensor, resized)
        return Proposals(masks=logits.sigmoid(), scores=scores.clamp(0, 1))

"""Regions: the one representation every task reads (DESIGN.md, seeds/003).

N class-agnostic soft masks s[N,H,W] in 0..1, N L2-normalised embeddings z[N,D] in the text
space, and N objectness scores. Optionally the per-pixel features p[D',H,W] (L2-normalised per
pixel) the region embeddings were pooled from: example-based tasks (in-context, video) compare
an example's pixels with a target's, which text-space region embeddings cannot do at pixel level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Regions:
    masks: torch.Tensor  # [N, H, W] float in 0..1 (possibly at a stride of the image)
    embeddings: torch.Tensor  # [N, D], rows L2-normalised
    scores: torch.Tensor  # [N]
    image_size: tuple[int, int]  # (H, W) of the image the masks describe
    pixel_features: torch.Tensor | None = None  # [D', H, W] on the masks' grid, unit norm per pixel
    # Per-pixel embeddings in the text space [D, H, W] (ESS head / per-pixel baseline) and the weight
    # of their class logits against eq. 6 in semantic segmentation (0 = regions only, 1 = pixels only).
    pixel_embeddings: torch.Tensor | None = None
    pixel_weight: float = 0.0
    # The frozen recognizer's ImageNet-1k probabilities per region [N, 1000] (omniseg.recognition),
    # fused with the embedding scores for the classes ImageNet covers.
    imagenet_probs: torch.Tensor | None = None
    # The same head's logits at every cell of its stride-32 grid [1000, h, w] (a class activation map).
    imagenet_pixel_logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.masks.shape[0]
        if self.embeddings.shape[0] != n or self.scores.shape[0] != n:
            raise ValueError("masks, embeddings and scores must describe the same N regions")
        if self.pixel_features is not None and (
            self.pixel_features.dim() != 3 or self.pixel_features.shape[-2:] != self.masks.shape[-2:]
        ):
            raise ValueError(
                f"pixel_features {tuple(self.pixel_features.shape)} must be [D', H, W] on the masks' grid "
                f"{tuple(self.masks.shape[-2:])}"
            )

        if self.imagenet_probs is not None and self.imagenet_probs.shape[0] != n:
            raise ValueError("imagenet_probs must have one row per region")
        if self.pixel_weight > 0 and self.pixel_embeddings is None:
            raise ValueError("pixel_weight > 0 needs pixel_embeddings")

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

"""Masks from any source x embeddings from any source (docs/ARCHITECTURE.md): the two kinds of
backend and the region source that combines them.

- A **mask source** proposes class-agnostic soft masks and scores for an image (the native model,
  SAM's point grid, Mask2Former/OneFormer queries); it may carry its own region embeddings and
  pixel features (native; Mask2Former's label names in a text space).
- An **embedding source** turns an image into dense features (CLIP/SigLIP patch tokens in CLIP's
  own space, the native model's F_z) and owns the text encoder of that space; region embeddings
  are the features pooled under each mask (mask pooling, OpenSeg), pixel features the same
  features on the masks' grid (for the example-based tasks).

``ComposedSource`` is a region source (omniseg.source) whose ``regions()`` is (mask source,
embedding source), so the door runs every task (semantic, instance, panoptic, refer, click,
incontext, video) on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.errors import InputError
from omniseg.regions import Regions

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click
    from omniseg.text.encoder import TextEncoder
    from omniseg.vocab import Vocabulary


@dataclass
class Proposals:
    """What a mask source gives: soft masks [N,h,w] in 0..1 and scores [N]; optionally its own
    region embeddings [N,D] (in its text_encoder's space) and pixel features [D',h,w]."""

    masks: torch.Tensor
    scores: torch.Tensor
    embeddings: torch.Tensor | None = None
    pixel_features: torch.Tensor | None = None


@dataclass
class DenseFeatures:
    """What an embedding source gives for an image: features [D',h,w] to pool under masks, and the
    map from pooled features [N,D'] to the text space [N,D] (None: they already are in it)."""

    features: torch.Tensor
    project: Callable[[torch.Tensor], torch.Tensor] | None = None


@runtime_checkable
class MaskSource(Protocol):
    name: str

    def propose(self, image: np.ndarray) -> Proposals: ...


@runtime_checkable
class EmbedSource(Protocol):
    name: str
    text_encoder: TextEncoder
    temperature: float | None  # of the class softmax in this space (e.g. 1 / CLIP's logit scale)

    def dense(self, image: np.ndarray) -> DenseFeatures: ...


def resize_maps(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """[C,h,w] -> [C,H,W], bilinear (area when shrinking a lot would cost more than it is worth here)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]


def pool_regions(masks: torch.Tensor, dense: DenseFeatures) -> torch.Tensor:
    """Mask-pooled features [N,D] (unit norm), the masks resized to the features' grid."""
    features = dense.features
    weights = resize_maps(masks, tuple(features.shape[-2:])).clamp(0, 1).flatten(1)  # [N, hw]
    pooled = weights @ features.flatten(1).T / weights.sum(1, keepdim=True).clamp(min=1e-6)
    if dense.project is not None:
        pooled = dense.project(pooled)
    return F.normalize(pooled, dim=-1)


class ComposedSource:
    """Regions = masks (and scores) of ``masks`` + embeddings pooled from ``embed``'s dense features.

    embed=None: the mask source's own embeddings and pixel features (it must carry them). The
    composed source speaks in the embedding source's text space (``text_encoder``; None: the
    door's default encoder, which is also the space of the native model and of Mask2Former labels).
    """

    def __init__(self, masks: MaskSource, embed: EmbedSource | None, name: str | None = None) -> None:
        self.masks_source, self.embed_source = masks, embed
        self.name = name or f"masks={masks.name},embed={embed.name if embed else masks.name}"
        self.text_encoder: TextEncoder | None = getattr(embed, "text_encoder", None)

    @property
    def class_temperature(self) -> float | None:
        source = self.embed_source if self.embed_source is not None else self.masks_source
        temperature = getattr(source, "temperature", None)
        return float(temperature) if temperature else None

    def label_vocabulary(self) -> Vocabulary:
        """The mask source's own classes (Mask2Former/OneFormer), for when the user names none."""
        labels = getattr(self.masks_source, "label_vocabulary", None)
        if labels is None:
            raise InputError(f"{self.masks_source.name} has no classes of its own: name the classes")
        return labels()

    def _regions(self, array: np.ndarray, proposals: Proposals) -> Regions:
        masks = proposals.masks.float()
        if self.embed_source is None:
            if proposals.embeddings is None:
                raise InputError(f"mask source {self.masks_source.name} gives no embeddings: add an embedding source")
            embeddings, pixel = proposals.embeddings, proposals.pixel_features
        else:
            dense = self.embed_source.dense(array)
            embeddings = pool_regions(masks, dense)
            pixel = F.normalize(resize_maps(dense.features, tuple(masks.shape[-2:])), dim=0)
        if pixel is not None and tuple(pixel.shape[-2:]) != tuple(masks.shape[-2:]):
            pixel = F.normalize(resize_maps(pixel, tuple(masks.shape[-2:])), dim=0)
        return Regions(
            masks=masks,
            embeddings=embeddings.float(),
            scores=proposals.scores.float(),
            image_size=(int(array.shape[0]), int(array.shape[1])),
            pixel_features=pixel,
        )

    @torch.inference_mode()
    def regions(self, image: np.ndarray) -> Regions:
        return self._regions(image, self.masks_source.propose(image))

    @torch.inference_mode()
    def prompt_regions(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions:
        """Regions for interactive prompts: the mask source's answers to the clicks/boxes when it
        takes prompts (SAM), else every proposal (the click task then picks among them)."""
        prompt = getattr(self.masks_source, "prompt", None)
        proposals = prompt(image, clicks, boxes) if callable(prompt) else self.masks_source.propose(image)
        return self._regions(image, proposals)

"""Video object segmentation from the first frame's mask (docs/ARCHITECTURE.md; SegGPT and OMG-Seg).

Three cues decide, per frame, which object (id of the first mask, 0 = background) each pixel is:

1. appearance (context ensemble, SegGPT): prototypes of the first frame (ground truth) and of the
   previous ``context`` frames with their predicted masks, averaged per id in embedding space,
   matched to the frame's pixels and regions exactly as in-context segmentation does;
2. query matching (OMG-Seg, MinVIS): each region of the frame is matched one-to-one to a region
   of the previous frame by embedding similarity (Hungarian) and inherits which object that
   region covered, so an object keeps "its" regions even when its appearance is ambiguous;
3. continuity: objects move little between frames, so the previous mask, blurred, is a prior.

The score of id k at a pixel is ``softmax_k(sim / temperature) + match_weight * member_k +
prior_weight * prior_k``; the highest wins. Each object then keeps its best-scoring connected part
(``single_part``), since a tracked object does not split into far-away pieces.

Measured (davis2016, every 3rd frame): appearance of the regions carries most of the result and
keeping a single part per object adds ~5 J&F points; the first frame weighs 3x a predicted one,
since at equal weight the predicted frames' errors feed back into the prototypes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from omniseg.errors import InputError
from omniseg.images import ImageLike
from omniseg.regions import Regions
from omniseg.tasks.common import as_id_mask, check_mask_matches, id_fractions, image_regions, label_dtype, upsample
from omniseg.tasks.incontext import (
    BACKGROUND,
    Prototypes,
    best_component,
    ensemble,
    example_prototypes,
    region_features,
    similarity_maps,
)
from omniseg.tasks.semantic import semantic_logits

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter


@dataclass
class VideoConfig:
    """Defaults chosen on 5 davis2016 sequences (blackswan, camel, dog, goat, kite-surf); see the report."""

    context: int = 3  # previous frames (with predicted masks) added as examples
    first_weight: float = 3.0  # weight of the first (ground-truth) frame in the ensemble; context frames weigh 1
    region_weight: float = 1.0  # pixel vs region similarity, as in in-context segmentation
    temperature: float | None = 0.02  # appearance cosines -> softmax over ids, so the cues below are on one scale
    match_weight: float = 0.25
    prior_weight: float = 0.25
    prior_sigma: float = 0.04  # blur of the previous mask, as a fraction of the frame's diagonal
    single_part: bool = True


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[Na, Nb] IoU of soft masks [Na,h,w] and [Nb,h,w]."""
    fa, fb = a.flatten(1), b.flatten(1)
    inter = fa @ fb.T
    return inter / (fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter).clamp(min=1e-6)


def match_regions(previous: Regions, current: Regions, overlap_weight: float = 1.0) -> np.ndarray:
    """For each current region the index of its matched previous region (-1: none).

    Hungarian assignment on cos(region features) + overlap_weight * IoU(masks): the embeddings
    recognise a region (MinVIS-style query matching), the overlap separates look-alikes, which
    between neighbouring frames are rarely in the same place.
    """
    a, b = region_features(previous), region_features(current)
    affinity = b @ a.T  # [N_cur, N_prev]
    if overlap_weight and previous.masks.shape[-2:] == current.masks.shape[-2:]:
        affinity = affinity + overlap_weight * soft_iou(current.masks, previous.masks)
    cost = -affinity.numpy()
    rows, cols = linear_sum_assignment(cost)
    match = np.full(cost.shape[0], -1, dtype=np.int64)
    match[rows] = cols
    return match


def region_membership(regions: Regions, label: np.ndarray, ids: Sequence[int]) -> torch.Tensor:
    """[N, len(ids)]: the share of each region's mask mass on each id of a label map (rows sum to 1)."""
    frac, _ = id_fractions(label, list(ids), tuple(regions.masks.shape[-2:]))  # [K, h, w]
    masks = regions.masks.flatten(1)
    share = masks @ frac.flatten(1).T  # [N, K]
    return share / share.sum(1, keepdim=True).clamp(min=1e-6)


def _blur_prior(label: np.ndarray, ids: Sequence[int], grid: tuple[int, ...], sigma: float) -> torch.Tensor:
    """[K, h, w] the previous label map on the grid, Gaussian-blurred, renormalised over ids."""
    frac, _ = id_fractions(label, list(ids), grid)
    radius_cells = sigma * float(np.hypot(grid[0], grid[1]))
    if radius_cells > 0.3:
        half = max(1, int(np.ceil(3 * radius_cells)))
        x = torch.arange(-half, half + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / radius_cells) ** 2)
        kernel = kernel / kernel.sum()
        k = len(ids)
        out = F.conv2d(F.pad(frac[:, None], (half, half, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        frac = F.conv2d(F.pad(out, (0, 0, half, half), mode="replicate"), kernel.view(1, 1, -1, 1))[:, 0]
        assert frac.shape[0] == k
    return frac / frac.sum(0, keepdim=True).clamp(min=1e-6)


def frame_scores(
    regions: Regions,
    prototypes: Prototypes,
    previous: tuple[Regions, np.ndarray] | None,
    config: VideoConfig,
) -> torch.Tensor:
    """[len(ids), h, w] combined score of each id on the frame's grid (see the module doc)."""
    scores = similarity_maps(regions, prototypes, config.region_weight)
    if config.temperature:
        scores = torch.softmax(scores / config.temperature, dim=0)
    if previous is None:
        return scores
    prev_regions, prev_label = previous
    if config.match_weight > 0:
        member = region_membership(prev_regions, prev_label, prototypes.ids)  # [N_prev, K]
        match = match_regions(prev_regions, regions)
        inherited = torch.where(
            torch.from_numpy(match >= 0)[:, None], member[torch.from_numpy(np.maximum(match, 0))], 0.0
        )  # [N_cur, K]
        scores = scores + config.match_weight * semantic_logits(regions.masks, inherited.T)
    if config.prior_weight > 0:
        prior = _blur_prior(prev_label, prototypes.ids, tuple(regions.masks.shape[-2:]), config.prior_sigma)
        scores = scores + config.prior_weight * prior
    return scores


def propagate_regions(
    frames: Iterable[Regions], first_mask: np.ndarray, config: VideoConfig | None = None
) -> Iterator[np.ndarray]:
    """Label maps (image size, ids of ``first_mask``) for each frame's Regions; the first frame's
    Regions must come first and its label map is ``first_mask`` itself."""
    config = config or VideoConfig()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    if first.pixel_features is None:
        raise InputError("video propagation needs Regions with pixel_features")
    if tuple(first_mask.shape) != tuple(first.image_size):
        raise InputError(f"first mask is {first_mask.shape[::-1]} but the first frame is {first.image_size[::-1]}")
    first_protos = example_prototypes(first.pixel_features, first_mask)
    ids = sorted(first_protos)
    if not any(i != BACKGROUND for i in ids):
        raise InputError("the first mask marks no object (all pixels are 0)")
    if BACKGROUND not in ids:
        raise InputError("the first mask has no background (0) pixels")
    dtype = label_dtype(max(ids))
    yield first_mask.astype(dtype)
    recent: deque[dict[int, torch.Tensor]] = deque(maxlen=max(0, config.context))
    previous = (first, first_mask)
    for regions in frames:
        if regions.pixel_features is None:
            raise InputError("video propagation needs Regions with pixel_features")
        prototypes = ensemble(
            [first_protos, *[_restrict(p, ids) for p in recent]], [config.first_weight] + [1.0] * len(recent)
        )
        scores = upsample(frame_scores(regions, prototypes, previous, config), regions.image_size)
        best = scores.argmax(0)
        label = np.asarray(prototypes.ids)[best.numpy()]
        if config.single_part:
            margin = (scores - scores[0:1]).numpy()
            kept = np.zeros_like(label)
            for k, i in enumerate(prototypes.ids):
                if i != BACKGROUND and (label == i).any():
                    kept[best_component(label == i, margin[k])] = i
            label = kept
        label = label.astype(dtype)
        if config.context > 0:
            recent.append(example_prototypes(regions.pixel_features, label))
        previous = (regions, label)
        yield label


def _restrict(protos: dict[int, torch.Tensor], ids: Sequence[int]) -> dict[int, torch.Tensor]:
    return {i: v for i, v in protos.items() if i in ids}


def video(
    segmenter: Segmenter,
    frames: Sequence[ImageLike],
    first_mask: np.ndarray | str | os.PathLike,
    config: VideoConfig | None = None,
) -> Iterator[np.ndarray]:
    """Propagate the objects of ``first_mask`` (ids, 0 = background; an array or an id mask PNG) from
    ``frames[0]`` through the frames.

    Yields one label map per frame (the first is ``first_mask``), at each frame's size.
    """
    if not frames:
        raise InputError("no frames")
    first_mask = as_id_mask(first_mask, "first mask")
    first_array, first_regions = image_regions(segmenter, frames[0])
    check_mask_matches(first_mask, first_array, "first mask")

    def regions() -> Iterator[Regions]:
        yield first_regions
        for frame in frames[1:]:
            array, r = image_regions(segmenter, frame)
            if array.shape[:2] != first_array.shape[:2]:
                raise InputError(
                    f"frames differ in size: {array.shape[1]}x{array.shape[0]} vs the first frame's "
                    f"{first_array.shape[1]}x{first_array.shape[0]}"
                )
            yield r

    yield from propagate_regions(regions(), first_mask, config)

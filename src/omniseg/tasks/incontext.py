"""In-context segmentation: segment in a target what example masks mark (DESIGN.md, seeds/000).

Each example (image, id mask, 0 = background) gives one prototype per id: its pixel features
pooled under the id's mask. Prototypes of the same id are averaged over the examples in
embedding space (SegGPT's feature ensemble), so more examples average out what is particular to
one picture. A target pixel then takes the id of its most similar prototype.

Two scores are combined per target pixel: the pixel's own similarity (sharp, but noisy) and the
similarity of the regions that cover it (the model's masks pooled over the pixel features; smooth
and snapped to object boundaries), ``region_weight`` trading one for the other.

level="category" keeps every pixel that matches an id (all the cats); level="instance" keeps, per
id, the single connected part that matches the prototype best (this cat), SegGPT's two kinds of
prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from omniseg.errors import InputError
from omniseg.io import ImageLike
from omniseg.regions import Regions
from omniseg.tasks.common import check_mask_matches, id_fractions, image_regions, label_dtype, load_mask, upsample
from omniseg.tasks.semantic import semantic_logits

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter

Level = Literal["category", "instance"]
BACKGROUND = 0
MIN_PIXELS = 1.0  # an id needs at least this many grid cells' worth of pixels to give a prototype


@dataclass
class Prototypes:
    """One unit vector per id (feature ensemble over the examples); ids[0] is the background (0)."""

    ids: list[int]
    vectors: torch.Tensor  # [len(ids), D'] unit norm
    support: torch.Tensor  # [len(ids)] how many examples contributed to each id

    def __post_init__(self) -> None:
        if self.vectors.shape[0] != len(self.ids) or self.support.shape[0] != len(self.ids):
            raise ValueError("one vector and one support count per id")


def example_prototypes(
    features: torch.Tensor, mask: np.ndarray, ignore_index: int | None = None
) -> dict[int, torch.Tensor]:
    """Mask-pooled, L2-normalised pixel features [D'] per id of one example (0 = background).

    features [D',h,w] (unit norm per pixel) on the model grid; mask [H,W] at image size. Pooling is
    weighted by the fraction of each grid cell the id covers; an id covering less than one cell in
    total is skipped (it would be a prototype of its neighbours).
    """
    ids = sorted(int(i) for i in np.unique(mask) if ignore_index is None or i != ignore_index)
    if not ids:
        return {}
    frac, _ = id_fractions(mask, ids, tuple(features.shape[-2:]), ignore_index)
    mass = frac.flatten(1).sum(1)
    pooled = frac.flatten(1) @ features.flatten(1).T  # [K, D']
    return {i: F.normalize(pooled[k], dim=0) for k, i in enumerate(ids) if float(mass[k]) >= MIN_PIXELS}


def ensemble(per_example: Sequence[dict[int, torch.Tensor]], weights: Sequence[float] | None = None) -> Prototypes:
    """Feature ensemble: average each id's prototype over the examples that have it, renormalise.

    weights: one per example (default: equal), e.g. to trust a ground-truth example more than
    predicted ones.
    """
    weights = [1.0] * len(per_example) if weights is None else [float(w) for w in weights]
    if len(weights) != len(per_example):
        raise ValueError("one weight per example")
    ids = sorted({i for protos in per_example for i in protos})
    if not any(i != BACKGROUND for i in ids):
        raise InputError("the example masks mark nothing: every pixel is background (0) or too small")
    if BACKGROUND not in ids:
        raise InputError("the example masks have no background (0) pixels to tell the object from")
    vectors, support = [], []
    for i in ids:
        members = [(protos[i], w) for protos, w in zip(per_example, weights, strict=True) if i in protos]
        vectors.append(F.normalize(sum(w * v for v, w in members), dim=0))
        support.append(len(members))
    return Prototypes(ids, torch.stack(vectors), torch.tensor(support))


def region_features(regions: Regions) -> torch.Tensor:
    """[N, D']: each region's pixel features pooled under its soft mask, unit norm."""
    if regions.pixel_features is None:
        raise InputError("these Regions have no pixel_features (needed for example-based tasks)")
    masks = regions.masks.flatten(1)
    pooled = masks @ regions.pixel_features.flatten(1).T / masks.sum(1, keepdim=True).clamp(min=1e-6)
    return F.normalize(pooled, dim=1)


def similarity_maps(regions: Regions, prototypes: Prototypes, region_weight: float = 0.5) -> torch.Tensor:
    """[len(ids), h, w] cosine of each target pixel to each id's prototype.

    (1 - region_weight) * per-pixel cosine + region_weight * cosines of the covering regions
    averaged by mask mass (seeds/003 eq. 6 with prototypes in place of words).
    """
    if regions.pixel_features is None:
        raise InputError("these Regions have no pixel_features (needed for example-based tasks)")
    features = regions.pixel_features
    if features.shape[0] != prototypes.vectors.shape[1]:
        raise InputError(
            f"example features have {prototypes.vectors.shape[1]} dimensions, the target's {features.shape[0]}: "
            "examples and targets must go through the same model"
        )
    protos = prototypes.vectors.to(features.dtype)
    sims = torch.einsum("kd,dhw->khw", protos, features)
    if region_weight > 0:
        region_sim = protos @ region_features(regions).T  # [K, N]
        sims = (1 - region_weight) * sims + region_weight * semantic_logits(regions.masks, region_sim)
    return sims


def best_component(selected: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The one 8-connected component of ``selected`` with the largest summed ``score``.

    Summing (not averaging) the score margin favours the part that is both large and sure, so a
    speck of high similarity does not beat the object.
    """
    labels, count = ndimage.label(selected, structure=np.ones((3, 3), bool))
    if count <= 1:
        return selected
    totals = ndimage.sum_labels(score, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(totals)) + 1)


def segment_with_prototypes(
    regions: Regions,
    prototypes: Prototypes,
    level: Level = "category",
    region_weight: float = 0.5,
    out_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Label map [H,W] holding the examples' ids (0 = background), at ``out_size`` (default: image size)."""
    if level not in ("category", "instance"):
        raise InputError(f"level must be 'category' or 'instance', got {level!r}")
    size = tuple(out_size or regions.image_size)
    sims = upsample(similarity_maps(regions, prototypes, region_weight), size)  # [K, H, W]
    best = sims.argmax(0).numpy()
    ids = np.asarray(prototypes.ids)
    label = ids[best]
    if level == "instance":
        margin = (sims - sims[0:1]).numpy()  # how much better than background; ids[0] is background
        out = np.zeros_like(label)
        for k, i in enumerate(prototypes.ids):
            if i == BACKGROUND:
                continue
            chosen = best == k
            if chosen.any():
                out[best_component(chosen, margin[k])] = i
        label = out
    return label.astype(label_dtype(int(ids.max())))


def incontext(
    segmenter: Segmenter,
    examples: Sequence[tuple[ImageLike, np.ndarray | str]],
    targets: Sequence[ImageLike],
    level: Level = "category",
    region_weight: float = 0.5,
    ignore_index: int | None = None,
) -> list[np.ndarray]:
    """Segment in each target what the example masks mark; one label map per target with the examples' ids.

    examples: (image, id mask or path to an id mask PNG) pairs, the mask at the image's size.
    ignore_index: a mask value that is neither object nor background (e.g. 255 in the uniform datasets).
    """
    prototypes = prototypes_from_examples(segmenter, examples, ignore_index)
    return [segment_with_prototypes(image_regions(segmenter, t)[1], prototypes, level, region_weight) for t in targets]


def prototypes_from_examples(
    segmenter: Segmenter, examples: Sequence[tuple[ImageLike, np.ndarray | str]], ignore_index: int | None = None
) -> Prototypes:
    if not examples:
        raise InputError("give at least one example (image and mask)")
    per_example = []
    for n, (image, mask) in enumerate(examples, start=1):
        array, regions = image_regions(segmenter, image)
        mask_array = (
            load_mask(mask, f"example mask {n}")
            if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__")
            else np.asarray(mask)
        )
        check_mask_matches(mask_array, array, f"example mask {n}")
        assert regions.pixel_features is not None
        per_example.append(example_prototypes(regions.pixel_features, mask_array, ignore_index))
    return ensemble(per_example)

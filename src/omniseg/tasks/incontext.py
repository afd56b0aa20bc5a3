"""In-context segmentation: segment in a target what example masks mark (docs/ARCHITECTURE.md; SegGPT).

Each example (image, id mask, 0 = background) is encoded on the model's grid as, per id,
- a prototype: the id's pixel features pooled under its mask; the prototypes of an id are
  averaged over the examples in embedding space (SegGPT's feature ensemble), and
- a memory: the pixel features of the grid cells the id covers (union over the examples).
A target pixel or region takes the id it is most similar to, by one of two rules:

- ``method="prototype"``: cosine to the id's ensemble prototype;
- ``method="knn"`` (default when the examples carry a memory): mean cosine to the id's ``k``
  nearest memory features. An averaged prototype stops improving after 2-4 examples (one vector
  cannot describe a background of sky, road and trees), while the memory grows with every
  example: measured few-shot mIoU rises with K far more (1 -> 8 shots, final default model,
  40 episodes: camvid 44 -> 59 vs 35 -> 39, msrc_v2 65 -> 78 vs 58 -> 72 for the prototypes).

Two scores are combined per target pixel: the pixel's own similarity (sharp, but noisy) and the
similarity of the regions that cover it (the model's masks pooled over the pixel features; smooth
and snapped to object boundaries), ``region_weight`` trading one for the other.

level="category" keeps every pixel that matches an id (all the cats); level="instance" keeps, per
id, the single connected part that matches best (this cat), SegGPT's two kinds of prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from omniseg.errors import InputError
from omniseg.images import ImageLike
from omniseg.regions import Regions
from omniseg.tasks.common import as_id_mask, check_mask_matches, id_fractions, image_regions, label_dtype, upsample
from omniseg.tasks.semantic import semantic_logits

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter

Level = Literal["category", "instance"]
Method = Literal["auto", "knn", "prototype"]
BACKGROUND = 0
MIN_PIXELS = 1.0  # an id needs at least this many grid cells' worth of pixels to give a prototype
MEMORY_CELLS = 8192  # memory features kept over all ids (subsampled beyond): bounds the matching cost
KNN = 50
_CHUNK = 4096


@dataclass
class Example:
    """One example on the model grid: per id a prototype [D'] and the features of its cells [n, D']."""

    prototypes: dict[int, torch.Tensor]
    pixels: dict[int, torch.Tensor] | None = None


@dataclass
class Prototypes:
    """Per id: the ensemble prototype and (optionally) the memory; ids[0] is the background (0)."""

    ids: list[int]
    vectors: torch.Tensor  # [len(ids), D'] unit norm
    support: torch.Tensor  # [len(ids)] how many examples contributed to each id
    memory: list[torch.Tensor] | None = None  # per id [n_i, D'] example cell features

    def __post_init__(self) -> None:
        if self.vectors.shape[0] != len(self.ids) or self.support.shape[0] != len(self.ids):
            raise ValueError("one vector and one support count per id")
        if self.memory is not None and len(self.memory) != len(self.ids):
            raise ValueError("one memory per id")


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


def example_memory(
    features: torch.Tensor, mask: np.ndarray, ignore_index: int | None = None
) -> dict[int, torch.Tensor]:
    """Per id, the features [n, D'] of the grid cells mostly (>= half) covered by it; an id too
    small to own half a cell keeps its best-covered cell."""
    ids = sorted(int(i) for i in np.unique(mask) if ignore_index is None or i != ignore_index)
    if not ids:
        return {}
    frac, _ = id_fractions(mask, ids, tuple(features.shape[-2:]), ignore_index)
    flat, cells = frac.flatten(1), features.flatten(1).T
    out = {}
    for k, i in enumerate(ids):
        if float(flat[k].sum()) < MIN_PIXELS:
            continue
        chosen = flat[k] >= 0.5
        out[i] = cells[chosen] if bool(chosen.any()) else cells[flat[k].argmax()][None]
    return out


def encode_example(features: torch.Tensor, mask: np.ndarray, ignore_index: int | None = None) -> Example:
    """Prototypes and memory of one example (features [D',h,w] unit norm per cell, mask at image size)."""
    protos = example_prototypes(features, mask, ignore_index)
    memory = example_memory(features, mask, ignore_index)
    return Example(protos, {i: v for i, v in memory.items() if i in protos})


def ensemble(
    examples: Sequence[Example | dict[int, torch.Tensor]], weights: Sequence[float] | None = None
) -> Prototypes:
    """Feature ensemble: average each id's prototype over the examples that have it, renormalise;
    the memory of an id is the union of the examples' (subsampled to MEMORY_CELLS in all).

    examples: Example objects, or plain {id: prototype} dicts (no memory: prototype matching only).
    weights: one per example (default: equal), e.g. to trust a ground-truth example more than
    predicted ones; they weigh the prototype average only.
    """
    encoded = [e if isinstance(e, Example) else Example(e) for e in examples]
    per_example = [e.prototypes for e in encoded]
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
        vectors.append(F.normalize(functools.reduce(torch.add, [w * v for v, w in members]), dim=0))
        support.append(len(members))
    memory = None
    if encoded and all(e.pixels is not None for e in encoded):
        per_id = max(64, MEMORY_CELLS // len(ids))
        generator = torch.Generator().manual_seed(0)  # the same examples always give the same memory
        memory = []
        for i in ids:
            bank = torch.cat([e.pixels[i] for e in encoded if e.pixels is not None and i in e.pixels])
            if bank.shape[0] > per_id:
                bank = bank[torch.randperm(bank.shape[0], generator=generator)[:per_id]]
            memory.append(bank)
    return Prototypes(ids, torch.stack(vectors), torch.tensor(support), memory)


def knn_similarity(queries: torch.Tensor, bank: torch.Tensor, k: int = KNN) -> torch.Tensor:
    """[P]: mean cosine of each query [P, D'] to its ``k`` nearest bank features [n, D']."""
    k = max(1, min(k, bank.shape[0]))
    out = [(chunk @ bank.T).topk(k, dim=1).values.mean(1) for chunk in queries.split(_CHUNK)]
    return torch.cat(out) if out else queries.new_zeros(0)


def region_features(regions: Regions) -> torch.Tensor:
    """[N, D']: each region's pixel features pooled under its soft mask, unit norm."""
    if regions.pixel_features is None:
        raise InputError("these Regions have no pixel_features (needed for example-based tasks)")
    masks = regions.masks.flatten(1)
    pooled = masks @ regions.pixel_features.flatten(1).T / masks.sum(1, keepdim=True).clamp(min=1e-6)
    return F.normalize(pooled, dim=1)


def _resolve(method: Method, prototypes: Prototypes) -> str:
    if method not in ("auto", "knn", "prototype"):
        raise InputError(f"method must be 'auto', 'knn' or 'prototype', got {method!r}")
    if method == "knn" and prototypes.memory is None:
        raise InputError("method 'knn' needs examples encoded with their memory (encode_example)")
    return ("knn" if prototypes.memory is not None else "prototype") if method == "auto" else method


def _id_similarity(x: torch.Tensor, prototypes: Prototypes, method: str, k: int) -> torch.Tensor:
    """[len(ids), P] similarity of features x [P, D'] to each id."""
    if method == "prototype":
        return prototypes.vectors.to(x.dtype) @ x.T
    assert prototypes.memory is not None
    return torch.stack([knn_similarity(x, bank.to(x.dtype), k) for bank in prototypes.memory])


def similarity_maps(
    regions: Regions, prototypes: Prototypes, region_weight: float = 0.5, method: Method = "auto", k: int = KNN
) -> torch.Tensor:
    """[len(ids), h, w] similarity of each target pixel to each id (prototype cosine or k-NN mean).

    (1 - region_weight) * the pixel's own similarity + region_weight * the similarities of the
    covering regions averaged by mask mass (OpenSeg eq. 6 with examples in place of words).
    """
    if regions.pixel_features is None:
        raise InputError("these Regions have no pixel_features (needed for example-based tasks)")
    features = regions.pixel_features
    if features.shape[0] != prototypes.vectors.shape[1]:
        raise InputError(
            f"example features have {prototypes.vectors.shape[1]} dimensions, the target's {features.shape[0]}: "
            "examples and targets must go through the same model"
        )
    how = _resolve(method, prototypes)
    d, h, w = features.shape
    sims = features.new_zeros(len(prototypes.ids), h, w)
    if region_weight < 1:
        pixel = _id_similarity(features.reshape(d, -1).T, prototypes, how, k).reshape(-1, h, w)
        sims = sims + (1 - region_weight) * pixel
    if region_weight > 0:
        region_sim = _id_similarity(region_features(regions), prototypes, how, k)  # [K, N]
        sims = sims + region_weight * semantic_logits(regions.masks, region_sim)
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
    method: Method = "auto",
) -> np.ndarray:
    """Label map [H,W] holding the examples' ids (0 = background), at ``out_size`` (default: image size)."""
    if level not in ("category", "instance"):
        raise InputError(f"level must be 'category' or 'instance', got {level!r}")
    size = tuple(out_size or regions.image_size)
    sims = upsample(similarity_maps(regions, prototypes, region_weight, method), size)  # [K, H, W]
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
    method: Method = "knn",
) -> list[np.ndarray]:
    """Segment in each target what the example masks mark; one label map per target with the examples' ids.

    examples: (image, id mask or path to an id mask PNG) pairs, the mask at the image's size.
    ignore_index: a mask value that is neither object nor background (e.g. 255 in the uniform datasets).
    method: 'knn' (memory of the examples' features) or 'prototype' (feature-ensemble prototypes only).
    """
    prototypes = prototypes_from_examples(segmenter, examples, ignore_index)
    return [
        segment_with_prototypes(image_regions(segmenter, t)[1], prototypes, level, region_weight, method=method)
        for t in targets
    ]


def prototypes_from_examples(
    segmenter: Segmenter, examples: Sequence[tuple[ImageLike, np.ndarray | str]], ignore_index: int | None = None
) -> Prototypes:
    if not examples:
        raise InputError("give at least one example (image and mask)")
    per_example = []
    for n, (image, mask) in enumerate(examples, start=1):
        array, regions = image_regions(segmenter, image)
        mask_array = as_id_mask(mask, f"example mask {n}", ignore_index)
        check_mask_matches(mask_array, array, f"example mask {n}")
        assert regions.pixel_features is not None
        per_example.append(encode_example(regions.pixel_features, mask_array, ignore_index))
    return ensemble(per_example)

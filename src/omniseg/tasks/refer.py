"""Referring segmentation: which region(s) does this phrase mean? (docs/ARCHITECTURE.md; MQ-Former)

Regions are ranked by cos(phrase, z). A phrase may name a thing that the model split into
several regions ("the people"), so every region within ``margin`` of the best is merged: the
margin is in cosine units, so a gap of a few hundredths already separates "the same answer,
split" from "a different, worse answer". A spatial word ("the dog on the left") then picks
the one candidate at that side instead of merging, since embeddings of a whole phrase carry the
category far better than the position.

A concept source (SAM 3, Grounded-SAM, CLIPSeg) reads the phrase itself, as a one-class vocabulary:
its instances are ranked by their detection score and merged the same way (refer_concept).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.regions import Regions
from omniseg.tasks.common import mask_overlay, save_binary_mask, upsample
from omniseg.tasks.semantic import CONFIDENCE_SCALE, other_concepts
from omniseg.vocab import Vocabulary

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter
    from omniseg.source import ConceptSource

MASK_THRESHOLD = 0.5
_SPATIAL_WORDS = {
    "left": "left",
    "leftmost": "left",
    "right": "right",
    "rightmost": "right",
    "top": "top",
    "upper": "top",
    "above": "top",
    "bottom": "bottom",
    "lower": "bottom",
    "below": "bottom",
    "middle": "center",
    "center": "center",
    "centre": "center",
}


def spatial_hint(phrase: str) -> str | None:
    """'the dog on the left' -> 'left'; None when the phrase names no side (first spatial word wins)."""
    for word in re.findall(r"[a-z]+", phrase.lower()):
        if word in _SPATIAL_WORDS:
            return _SPATIAL_WORDS[word]
    return None


@dataclass
class ReferResult:
    mask: np.ndarray = field(repr=False)  # bool [H, W] at image size
    similarities: np.ndarray = field(repr=False)  # [N] cos(phrase, z_i); a concept source: instance scores
    ranking: list[int]  # candidate regions (a concept source: its instances), best first
    selected: list[int]  # the regions merged into the mask
    phrase: str = ""
    spatial: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    # How much better the phrase explains the best region than any other concept the model knows
    # (tasks.semantic.CONFIDENCE_SCALE); below the threshold the answer is "not found": empty mask.
    # A concept source: the answer's detection score (0 when no instance is above the threshold).
    confidence: float = 1.0
    found: bool = True

    def to_json(self, top: int = 10) -> dict:
        return {
            "phrase": self.phrase,
            "found": self.found,
            "confidence": round(float(self.confidence), 5),
            "spatial": self.spatial,
            "selected": self.selected,
            "ranking": [{"region": i, "similarity": round(float(self.similarities[i]), 5)} for i in self.ranking[:top]],
            "mask": {
                "height": int(self.mask.shape[0]),
                "width": int(self.mask.shape[1]),
                "values": {"0": "background", "255": "referred"},
                "area_fraction": round(float(self.mask.mean()), 6),
            },
        }

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """``<stem>.png`` (0 / 255), ``<stem>.json`` and, when the image is known, ``<stem>_overlay.png``."""
        return save_binary_mask(out_dir, stem, self.mask, self.to_json(), self.image, self.phrase or "referred")

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        """The mask over the image, named by the phrase."""
        return mask_overlay(self.image, self.mask, self.phrase or "referred", alpha=alpha, legend=legend)


def _centroids(masks: torch.Tensor) -> torch.Tensor:
    """[N,h,w] soft masks -> [N,2] (x, y) centroids in 0..1 of the grid."""
    n, h, w = masks.shape
    mass = masks.sum((1, 2)).clamp(min=1e-6)
    ys = (torch.arange(h, dtype=masks.dtype) + 0.5) / h
    xs = (torch.arange(w, dtype=masks.dtype) + 0.5) / w
    cx = (masks.sum(1) * xs).sum(1) / mass
    cy = (masks.sum(2) * ys).sum(1) / mass
    return torch.stack([cx, cy], dim=1)


def _pick_side(centroids: torch.Tensor, side: str) -> int:
    x, y = centroids[:, 0], centroids[:, 1]
    key = {"left": x, "right": -x, "top": y, "bottom": -y, "center": (x - 0.5) ** 2 + (y - 0.5) ** 2}[side]
    return int(key.argmin())


def refer_regions(
    regions: Regions,
    phrase_embedding: torch.Tensor | np.ndarray,
    margin: float = 0.03,
    max_regions: int = 4,
    spatial: str | None = None,
    out_size: tuple[int, int] | None = None,
    reference: torch.Tensor | None = None,
    threshold: float = 0.0,
) -> ReferResult:
    """Rank regions by cos(phrase, z), merge those within ``margin`` of the best (at most ``max_regions``).

    "Not found" is an answer: the best region's confidence is sigmoid((cos(phrase, z) - best cosine
    of z to another known concept) / CONFIDENCE_SCALE), the known concepts being ``reference`` [R, D]
    minus the phrase's text near-duplicates (the door also removes what the phrase names, e.g. "person"
    for "the woman": Segmenter.alternatives); below ``threshold`` the mask is empty and nothing is
    selected.

    Regions whose binary mask (s > 0.5) is empty cannot be shown and are not candidates.
    ``spatial`` ('left', 'right', 'top', 'bottom', 'center') keeps the one candidate at that side.
    Returns the merged binary mask at ``out_size`` (default: the image size) and the ranking.
    """
    check_margin(margin)
    if spatial is not None and spatial not in {"left", "right", "top", "bottom", "center"}:
        raise InputError(f"unknown spatial hint {spatial!r}")
    phrase = torch.as_tensor(np.asarray(phrase_embedding), dtype=regions.embeddings.dtype).reshape(-1)
    if phrase.shape[0] != regions.dim:
        raise InputError(f"phrase embedding has {phrase.shape[0]} dimensions, regions have {regions.dim}")
    phrase = phrase / phrase.norm().clamp(min=1e-12)
    sims = regions.embeddings @ phrase  # [N]
    present = (regions.masks > MASK_THRESHOLD).flatten(1).any(1)
    if not bool(present.any()):  # nothing is confidently on: fall back to every region
        present = torch.ones_like(present)
    order = [int(i) for i in torch.argsort(torch.where(present, sims, sims.new_tensor(-2.0)), descending=True)]
    ranking = [i for i in order if bool(present[i])]
    candidates = within_margin(ranking, sims, margin, max_regions)
    if spatial is not None and len(candidates) > 1:
        selected = [candidates[_pick_side(_centroids(regions.masks[candidates]), spatial)]]
    else:
        selected = candidates
    size = tuple(out_size or regions.image_size)
    others = other_concepts(reference, phrase[None])  # the phrase's own near-duplicates are no alternative
    confidence = region_confidence(regions, ranking[0], float(sims[ranking[0]]), others)
    if confidence < threshold:
        return ReferResult(
            mask=np.zeros(size, dtype=bool),
            similarities=sims.numpy(),
            ranking=ranking,
            selected=[],
            spatial=spatial,
            confidence=confidence,
            found=False,
        )
    merged = upsample(regions.masks[selected], size).amax(0) > MASK_THRESHOLD
    return ReferResult(
        mask=merged.numpy(),
        similarities=sims.numpy(),
        ranking=ranking,
        selected=selected,
        spatial=spatial,
        confidence=confidence,
    )


def check_margin(margin: float) -> None:
    """--margin is a score difference: finite and >= 0 (InputError otherwise)."""
    if not (math.isfinite(margin) and margin >= 0):
        raise InputError(f"margin must be a finite number >= 0, got {margin}")


def within_margin(ranking: list[int], scores: torch.Tensor, margin: float, max_regions: int) -> list[int]:
    """The ranked candidates scoring within ``margin`` of the best, at most ``max_regions`` (at least
    one): what refer merges, for regions (cosine to the phrase) and concept instances (detection score)."""
    if not ranking:
        return []
    best = float(scores[ranking[0]])
    return [i for i in ranking if float(scores[i]) >= best - margin][: max(1, max_regions)]


def region_confidence(regions: Regions, region: int, cosine: float, others: torch.Tensor | None) -> float:
    """sigmoid((cosine - the region's best cosine to the other known concepts) / CONFIDENCE_SCALE);
    without other concepts, sigmoid(cosine / CONFIDENCE_SCALE)."""
    best_other = 0.0
    if others is not None and len(others):
        best_other = float((others.to(regions.embeddings.dtype) @ regions.embeddings[region]).max())
    return float(torch.sigmoid(torch.tensor((cosine - best_other) / CONFIDENCE_SCALE)))


def refer(
    segmenter: Segmenter,
    image: ImageLike,
    phrase: str,
    margin: float = 0.03,
    max_regions: int = 4,
    use_spatial: bool = True,
    threshold: float | None = None,
) -> ReferResult:
    """The mask of what ``phrase`` refers to in ``image`` (Segmenter entry point); an empty mask and
    ``found=False`` when another known concept explains every region better (confidence below
    ``threshold``, default Segmenter.confidence_threshold; 0 always answers). A concept source:
    refer_concept, ``threshold`` its detection score (None: the source's default)."""

    if not phrase or not phrase.strip():
        raise InputError("the phrase is empty: say what to segment, e.g. 'the dog on the left'")
    array = load_image(image)
    if segmenter.concept_source is not None:
        result = refer_concept(segmenter.concept_source, array, phrase.strip(), margin, max_regions, threshold)
        result.image = array
        return result
    regions = segmenter.regions(array)
    embedding = segmenter.text_encoder.encode([phrase.strip()])[0]
    result = refer_regions(
        regions,
        embedding,
        margin=margin,
        max_regions=max_regions,
        spatial=spatial_hint(phrase) if use_spatial else None,
        out_size=array.shape[:2],
        reference=segmenter.alternatives([phrase]),
        threshold=segmenter.confidence_threshold(threshold) or 0.0,
    )
    result.phrase = phrase.strip()
    result.image = array
    return result


def refer_concept(
    source: ConceptSource,
    image: np.ndarray,
    phrase: str,
    margin: float = 0.03,
    max_regions: int = 4,
    threshold: float | None = None,
) -> ReferResult:
    """``refer`` through a concept source (SAM 3, Grounded-SAM, CLIPSeg), which reads the phrase itself,
    as a one-class vocabulary: its instances above ``threshold`` (its detection score; None: the
    source's default) ranked by score, those within ``margin`` of the best merged (at most
    ``max_regions``); the confidence is the best score, and no instance is "not found" (an empty
    mask). Spatial words stay in the phrase, for the model to read."""
    check_margin(margin)
    found = source.concepts(image, Vocabulary([[phrase]]), threshold)
    scores = found.scores.float().cpu()
    ranking = [int(i) for i in torch.argsort(scores, descending=True)]
    best = float(scores[ranking[0]]) if ranking else 0.0
    selected = within_margin(ranking, scores, margin, max_regions)
    mask = np.zeros(image.shape[:2], bool)
    for i in selected:
        mask |= found.masks[i].cpu().numpy()
    return ReferResult(mask, scores.numpy(), ranking, selected, phrase, None, confidence=best, found=bool(selected))

"""Fusing the frozen recognizer with the trained scores (OMG-Seg, F-VLM, FC-CLIP).

The trained score of class k at a pixel is eq. 6's mask-weighted mean of region-class cosines. The
frozen ImageNet head adds two opinions, both as the probability mass p_k of the ImageNet classes
class k covers in WordNet (omniseg.recognition.concepts):

- per region: the head's distribution for the region's mask-pooled features (region_weight);
- per pixel: the head's distribution at each cell of its stride-32 grid, a class activation map
  upsampled to the masks' grid (pixel_weight). The trained regions are coarse for names they never
  saw (a whole person is one region), and the map is what separates jeans from a sweater.

Fused region score: c[k, n] + region_weight * u_k * p_k(region n); fused pixel logit: eq. 6 +
pixel_weight * u_k * p_k(pixel). Classes ImageNet cannot see ("sky", "skin", "road") have p = 0 and
keep the trained score. u_k is 1 for names the model never trained on and falls to ``seen_weight``
for its training names (FC-CLIP's in- / out-of-vocabulary split): fine-tuning made the trained
score better than the frozen one on those. The weights are tuned on training and validation parts
(benchmarks/fusion_sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.recognition.concepts import ConceptMapper, specific_lemmas
from omniseg.regions import Regions

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder
    from omniseg.vocab import Vocabulary


@dataclass(frozen=True)
class FusionConfig:
    """Defaults tuned on the train part of ccp (80 images, zero-shot: never trained on) with
    ``python benchmarks/fusion_sweep.py ccp:train --limit 80 --region-weights 0,0.5 --pixel-weights
    4,6,8 --temperatures 2`` (grounding mIoU 12.1 / 12.7 / 13.2 for pixel weight 4 / 6 / 8, full-
    vocabulary mIoU 3.97 / 3.89 / 3.76; the region term added nothing: 11.6-12.6). Seen classes keep
    the trained score (seen_weight 0): with the full frozen weight on them, MSRC val (40 images) fell
    from 80.8 to 65.0 mIoU and CamVid from 48.9 to 46.4 at pixel weight 2."""

    region_weight: float = 0.0
    pixel_weight: float = 6.0
    temperature: float = 2.0  # softmax temperature of the per-cell ImageNet logits
    seen_weight: float = 0.0  # the frozen weight left to classes the model was trained on

    @property
    def active(self) -> bool:
        return self.region_weight > 0 or self.pixel_weight > 0


def covered_probability(class_cover: torch.Tensor, imagenet_probs: torch.Tensor) -> torch.Tensor:
    """[K, 1000] 0/1 cover x [N, 1000] probabilities -> [K, N] probability mass of each class."""
    return class_cover.to(imagenet_probs.dtype) @ imagenet_probs.T


def fuse_region_scores(
    class_sim: torch.Tensor, class_cover: torch.Tensor, imagenet_probs: torch.Tensor, weight: float
) -> torch.Tensor:
    """[K, N] trained cosines -> fused region scores."""
    return class_sim + weight * covered_probability(class_cover, imagenet_probs).to(class_sim.dtype)


def covered_pixel_probability(
    class_cover: torch.Tensor, pixel_logits: torch.Tensor, size: tuple[int, int], temperature: float = 1.0
) -> torch.Tensor:
    """[K, 1000] cover, [1000, h, w] per-cell logits -> [K, H, W] covered mass, bilinearly resized."""
    probs = (pixel_logits.float() / temperature).softmax(0)
    k = class_cover.shape[0]
    mass = (class_cover.float() @ probs.reshape(probs.shape[0], -1)).reshape(k, *probs.shape[1:])
    if tuple(mass.shape[-2:]) != tuple(size):
        mass = F.interpolate(mass[None], size=size, mode="bilinear", align_corners=False)[0]
    return mass


# Seen-ness ramp: a class whose best cosine to a trained name is >= SEEN_COSINE is "seen" (the
# trained score is trusted alone, as FC-CLIP does for in-vocabulary classes); <= UNSEEN_COSINE is
# unseen (full frozen weight); in between the weight falls linearly ("red car" 0.73 to "car": 0.85;
# "automobile" 0.86: 0.2).
SEEN_COSINE = 0.9
UNSEEN_COSINE = 0.7


def unseen_factor(seen_cosine: np.ndarray, seen_weight: float = 0.0) -> np.ndarray:
    """Per class: 1 for names far from every trained name, ``seen_weight`` for trained names."""
    ramp = np.clip((SEEN_COSINE - seen_cosine) / (SEEN_COSINE - UNSEEN_COSINE), 0.0, 1.0)
    return seen_weight + (1.0 - seen_weight) * ramp


class RecognizerFusion:
    """What a door needs to fuse the frozen recognizer into a vocabulary's scores: the names->ImageNet
    cover (memoised per vocabulary), the model's trained names, and the fusion weights."""

    def __init__(
        self,
        text_encoder: TextEncoder,
        trained_names: Sequence[str],
        config: FusionConfig | None = None,
        trained_text: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """trained_text: the trained names' embeddings when the caller has them already (the door's
        KnownConcepts); otherwise they are encoded here."""
        self.config = config or FusionConfig()
        self.mapper = ConceptMapper(text_encoder)
        self.text_encoder = text_encoder
        if trained_text is None and trained_names:
            trained_text = text_encoder.encode(list(trained_names))
        self.trained_text = None if trained_text is None else np.asarray(trained_text, np.float32)

    def class_cover(self, vocabulary: Vocabulary, classes: np.ndarray | None = None) -> torch.Tensor:
        """[K, 1000] (K = len(classes) or the whole vocabulary): class k's 0/1 ImageNet cover times its
        unseen factor. Small vocabularies are mapped once and memoised on the Vocabulary; large ones
        map only the classes asked for (an image's candidates), so the cost stays flat."""
        if classes is None:
            cached = vocabulary.derived.get(_COVER_KEY)
            if cached is None:
                cached = self._weighted_cover(vocabulary, np.arange(len(vocabulary)))
                vocabulary.derived[_COVER_KEY] = cached
            return torch.from_numpy(cached)
        return torch.from_numpy(self._weighted_cover(vocabulary, classes))

    def _weighted_cover(self, vocabulary: Vocabulary, classes: np.ndarray) -> np.ndarray:
        synonyms = [vocabulary.synonyms[int(k)] for k in classes]
        cover = self.mapper.cover_matrix(synonyms)
        if self.trained_text is None or not cover.any():
            return cover
        # Seen-ness from the vocabulary's own prompt embeddings (max over a class's prompts): no text
        # encoding per image, so a large vocabulary's candidates cost a matrix product.
        # In torch, not numpy: numpy's BLAS threads spin after a product and stall torch's next op on a
        # 2-core machine (BENCHMARKS, vocabulary scale).
        prompts, owner = vocabulary.restricted(np.asarray(classes, dtype=np.int64))
        trained = torch.from_numpy(np.asarray(self.trained_text, np.float32))
        best = (torch.from_numpy(prompts) @ trained.T).max(1).values
        seen_t = torch.full((len(classes),), -1.0).scatter_reduce(0, torch.from_numpy(owner), best, "amax")
        seen = seen_t.numpy()
        return cover * unseen_factor(seen, self.config.seen_weight)[:, None].astype(np.float32)

    def candidates(
        self, vocabulary: Vocabulary, regions: Regions, min_probability: float = 0.2, max_proposals: int = 3
    ) -> np.ndarray:
        """Class ids of a large vocabulary the frozen head proposes for this image: the classes named by
        a lemma specific to one of the ``max_proposals`` ImageNet classes with the highest peak in the
        activation map (the classifier's own softmax, temperature 1; a peak of at least
        ``min_probability``). The text index proposes by the trained embeddings only, which never saw
        "golden retriever"; these are added so the fusion can pick them. Each proposal costs one
        dictionary lookup per lemma (the name index is built once per vocabulary) and adds its classes
        to eq. 6: 3 proposals keep 10^5 classes at 1.16x the time of 10^2 (5: 1.25x)."""
        if regions.imagenet_pixel_logits is None:
            return np.zeros(0, np.int64)
        probs = regions.imagenet_pixel_logits.float().softmax(0).reshape(regions.imagenet_pixel_logits.shape[0], -1)
        peak = probs.max(1).values  # [1000] each ImageNet class's best cell
        top = torch.argsort(peak, descending=True)[:max_proposals]
        seen = {int(j) for j in top if float(peak[j]) >= min_probability}
        index = vocabulary.derived.get(_NAME_INDEX_KEY)
        if index is None:
            index = {}
            for k, names in enumerate(vocabulary.synonyms):
                for name in names:
                    index.setdefault(name.strip().lower(), k)
            vocabulary.derived[_NAME_INDEX_KEY] = index
        lemmas = specific_lemmas()
        found = {index[name] for j in seen for name in lemmas[j] if name in index}
        return np.asarray(sorted(found), dtype=np.int64)


_COVER_KEY = "recognizer_cover"
_NAME_INDEX_KEY = "name_index"

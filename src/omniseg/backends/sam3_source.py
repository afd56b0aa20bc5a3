"""SAM 3 behind the door: a concept source (omniseg.source.ConceptSource) answering a whole vocabulary.

What it adds to the adapter (backends/sam3.py):

- **prompts per vocabulary, once.** A class's prompts are its synonyms as they are (SAM 3 reads
  short noun phrases, not "a photo of a ..." templates). Their tokens are kept in the vocabulary's
  ``derived`` tables, keyed by this source, so a vocabulary used image after image is tokenised
  and text-encoded once, like the text embeddings of the other sources (and the adapter's LRU of
  texts serves a new Vocabulary object of known names, e.g. each server request's); an instance's
  class is the class of the synonym that found it.
- **one image encoding per image.** The last few images' vision encodings are remembered (keyed by
  their pixels), so the server's second question about the same image, or another vocabulary on
  it, runs no vision encoder.
- **more than SHORTLIST_ABOVE prompts** go through sam3_shortlist: every prompt scored by the first
  fusion layer's affinity (its pooled text kept per vocabulary: [P, D], not P token sequences), the
  best ``shortlist`` decoded.

Instances are returned on the CPU (results and tasks read them there), whatever ``device`` runs SAM 3.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from omniseg.backends.caching import Recent, image_key
from omniseg.backends.sam3 import ImageEncoding, Prompt, Sam3Backend
from omniseg.backends.sam3_shortlist import pooled_affinity, pooled_prompts, segment_many
from omniseg.concepts import Instances, vocabulary_prompts
from omniseg.tasks.semantic import DIRECT_MAX_CLASSES
from omniseg.vocab import Vocabulary

SHORTLIST_ABOVE = DIRECT_MAX_CLASSES  # more prompts than this: shortlist them per image
SHORTLIST_SIZE = 64  # prompts decoded per image after the shortlist
ENCODINGS_KEPT = 2  # images whose vision encoding is remembered (~110 MB each at SAM 3's full size)


class Sam3Source:
    """SAM 3 (``Sam3Backend``) as a concept source: ``concepts(image, vocabulary, threshold)``.

    threshold: SAM 3's detection score (sigmoid(class logit) x sigmoid(presence logit)) an instance
    must exceed; None: the backend's default, transformers' 0.3.
    """

    def __init__(
        self,
        spec: str | Path,
        device: str | torch.device = "cpu",
        prompt_batch: int = 16,
        shortlist: int = SHORTLIST_SIZE,
        backend: Sam3Backend | None = None,
    ) -> None:
        self.backend = backend or Sam3Backend(spec, device=device, prompt_batch=prompt_batch)
        self.name = f"sam3:{spec}"
        self.shortlist = shortlist
        self.default_threshold = self.backend.threshold
        self._encodings: Recent[ImageEncoding] = Recent(ENCODINGS_KEPT)

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def encode(self, image: np.ndarray) -> ImageEncoding:
        """The image's vision encoding, computed once for the last ENCODINGS_KEPT images."""
        return self._encodings.get(image_key(image), lambda: self.backend.encode_image(image))

    def concepts(self, image: np.ndarray, vocabulary: Vocabulary, threshold: float | None = None) -> Instances:
        """Every instance of the vocabulary's classes in the image (labels: class indices), on the CPU."""
        encoding = self.encode(image)
        texts, owner = self.prompt_texts(vocabulary)
        if len(texts) <= SHORTLIST_ABOVE:
            found = self.backend.run(encoding, self._prompts(vocabulary, texts), None, threshold)
        else:
            pooled = self._pooled(vocabulary, texts)
            found = segment_many(
                self.backend, encoding, texts, self.shortlist, self._scorer(pooled), threshold=threshold
            )
        return found.relabelled(owner).to("cpu")

    def prepare(self, vocabulary: Vocabulary) -> None:
        """Encode the vocabulary's prompts now rather than on its first image (concepts() would): a
        server or batch job can pay the text side before images arrive, and the benchmark can tell it
        from the per-image cost. Above SHORTLIST_ABOVE prompts, the pooled texts the shortlist scores."""
        texts, _ = self.prompt_texts(vocabulary)
        if len(texts) <= SHORTLIST_ABOVE:
            self._prompts(vocabulary, texts)
        else:
            self._pooled(vocabulary, texts)

    @staticmethod
    def prompt_texts(vocabulary: Vocabulary) -> tuple[list[str], torch.Tensor]:
        """Every synonym of every class, and the class index of each: SAM 3's prompts for the vocabulary."""
        return vocabulary_prompts(vocabulary)

    def _prompts(self, vocabulary: Vocabulary, texts: list[str]) -> list[Prompt]:
        return self._derived(vocabulary, "prompts", lambda: self.backend.text_prompts(texts))

    def _pooled(self, vocabulary: Vocabulary, texts: list[str]) -> torch.Tensor:
        def build() -> torch.Tensor:
            step = 256
            return torch.cat(
                [pooled_prompts(self.backend.encode_texts(texts[s : s + step])) for s in range(0, len(texts), step)]
            )

        return self._derived(vocabulary, "pooled", build)

    def _scorer(self, pooled: torch.Tensor) -> Callable[[ImageEncoding, object], torch.Tensor]:
        return lambda encoding, names: pooled_affinity(self.backend, encoding, pooled)

    def _derived(self, vocabulary: Vocabulary, what: str, build: Callable):
        """A table of this source's for the vocabulary, built once and kept with the vocabulary."""
        key = ("sam3", id(self.backend), what)
        value = vocabulary.derived.get(key)
        if value is None:
            value = vocabulary.derived[key] = build()
        return value

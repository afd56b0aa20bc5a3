"""Instances of named concepts: what a vocabulary-conditioned source (SAM 3) answers for one image.

Unlike Regions (class-agnostic masks whose class the tasks find by comparing embeddings with the
vocabulary), these masks were made *for* the names: each instance already has its class (the
vocabulary index of the name that prompted it) and a score. Masks may overlap, as in COCO results;
the tasks (omniseg.tasks.concepts) resolve overlaps when one label per pixel is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from omniseg.vocab import Vocabulary


def vocabulary_prompts(vocabulary: Vocabulary) -> tuple[list[str], torch.Tensor]:
    """Every synonym of every class, and the class index of each: what a concept source prompts its
    model with (as they are: SAM 3, Grounding DINO and CLIPSeg read short noun phrases, not "a photo
    of a ..." templates). Kept in the vocabulary's ``derived`` tables: a vocabulary used image after
    image is flattened once. A source relabels its instances through the index (Instances.relabelled):
    an instance's class is the class of the synonym that found it."""
    cached = vocabulary.derived.get("concept_prompts")
    if cached is None:
        texts = [name for names in vocabulary.synonyms for name in names]
        owner = torch.tensor([k for k, names in enumerate(vocabulary.synonyms) for _ in names], dtype=torch.long)
        cached = vocabulary.derived["concept_prompts"] = (texts, owner)
    return cached


@dataclass
class Instances:
    """Detections on one image, possibly overlapping (COCO-results style).

    masks bool [N,H,W] at the image size; scores [N] in 0..1; labels [N] the index of the prompt
    (class) each instance answers; boxes [N,4] pixel xyxy.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def class_scores(self, num_classes: int) -> torch.Tensor:
        """[N, C]: each instance's score in its class's column, 0 elsewhere: what omniseg's semantic and
        panoptic tasks read to resolve overlapping instances into one label per pixel."""
        out = self.scores.new_zeros(len(self), num_classes)
        out[torch.arange(len(self), device=out.device), self.labels] = self.scores
        return out

    def to(self, device: torch.device | str) -> Instances:
        """The same instances on ``device`` (results and tasks read them on the CPU)."""
        return Instances(
            self.masks.to(device),
            self.scores.to(device),
            self.labels.to(device),
            self.boxes.to(device),
            self.image_size,
        )

    def relabelled(self, classes: torch.Tensor) -> Instances:
        """Labels mapped through ``classes`` (e.g. prompt index -> the class that prompt names)."""
        return Instances(
            self.masks, self.scores, classes.to(self.labels.device)[self.labels], self.boxes, self.image_size
        )

    @classmethod
    def empty(cls, image_size: tuple[int, int], device: torch.device) -> Instances:
        return cls(
            torch.zeros(0, *image_size, dtype=torch.bool, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, 4, device=device),
            image_size,
        )

    @classmethod
    def cat(cls, parts: Sequence[Instances], image_size: tuple[int, int], device: torch.device) -> Instances:
        if not parts:
            return cls.empty(image_size, device)
        return cls(
            torch.cat([p.masks for p in parts]),
            torch.cat([p.scores for p in parts]),
            torch.cat([p.labels for p in parts]),
            torch.cat([p.boxes for p in parts]),
            image_size,
        )

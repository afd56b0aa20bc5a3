"""Grounded-SAM: Grounding DINO's boxes for the class names, SAM 2's (or SAM's) masks inside them.

Grounding DINO (transformers ``GroundingDinoForObjectDetection``) reads the names as one text,
"name one. name two.", and scores every query box against every text token. Its processor runs
here as is: its PIL image processor needs no torchvision. A box's score is transformers'
(the highest token probability, ``post_process_grounded_object_detection``); its class is the name
whose tokens it matches best. Names that do not fit the model's text length (256 tokens) are split
over several passes. Each kept box is then a box prompt to the mask model, one mask per box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omniseg.backends.hub import open_checkpoint
from omniseg.backends.pil_processor import load_pil_processor
from omniseg.backends.sam import SamBackend
from omniseg.backends.sam2 import ClickBackend
from omniseg.concepts import Instances, vocabulary_prompts
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.vocab import Vocabulary


@dataclass
class Detections:
    """Boxes [N,4] pixel xyxy, scores [N], labels [N] (index of the name) on an image of (H, W)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def merged_text(names: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """'a. b.' (lowercase, as the processor merges candidate labels) and each name's character span."""
    spans, parts, at = [], [], 0
    for name in names:
        label = name.strip().lower()
        spans.append((at, at + len(label)))
        parts.append(label)
        at += len(label) + 2  # ". "
    return ". ".join(parts) + ".", spans


def token_classes(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> torch.Tensor:
    """For each token, the index of the name its characters fall in (-1: special tokens, '.', spaces)."""
    owner = []
    for start, end in offsets:
        owner.append(next((c for c, (s, e) in enumerate(spans) if end > start and s <= start and end <= e), -1))
    return torch.tensor(owner, dtype=torch.long)


class GroundingDinoBoxes:
    """Grounding DINO as a box source for class names."""

    name = "grounding-dino"

    def __init__(self, spec: str | Path, device: str | torch.device = "cpu", box_threshold: float = 0.25) -> None:
        from transformers import GroundingDinoProcessor
        from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
            GroundingDinoImageProcessorPil,
        )

        opened = open_checkpoint(spec, "GroundingDinoForObjectDetection", "Grounding DINO", device)
        self.device, self.directory = opened.device, opened.directory
        self.model: Any = opened.model
        self.processor = load_pil_processor(
            self.directory, GroundingDinoProcessor, GroundingDinoImageProcessorPil, "Grounding DINO"
        )
        self.max_tokens = int(self.model.config.max_text_len)
        self.box_threshold = box_threshold

    def _chunks(self, names: Sequence[str]) -> list[list[int]]:
        """Name indices grouped so each group's merged text fits the model's text length."""
        chunks: list[list[int]] = [[]]
        for i in range(len(names)):
            trial = chunks[-1] + [i]
            text, _ = merged_text([names[j] for j in trial])
            if len(self.processor.tokenizer(text)["input_ids"]) > self.max_tokens:
                if not chunks[-1]:
                    raise InputError(
                        f"the name {names[i]!r} alone is longer than Grounding DINO's {self.max_tokens} tokens"
                    )
                chunks.append([i])
            else:
                chunks[-1] = trial
        return chunks

    @torch.inference_mode()
    def detect(self, image: ImageLike, names: Sequence[str], threshold: float | None = None) -> Detections:
        names = [str(n) for n in names]
        if not names or any(not n.strip() for n in names):
            raise InputError("Grounding DINO needs at least one non-empty name")
        if any("." in n for n in names):
            raise InputError("names for Grounding DINO cannot contain '.', which separates them in its text")
        threshold = self.box_threshold if threshold is None else threshold
        array = load_image(image)
        size = (int(array.shape[0]), int(array.shape[1]))
        found = []
        for chunk in self._chunks(names):
            text, spans = merged_text([names[i] for i in chunk])
            inputs = self.processor(images=array, text=text, return_tensors="pt").to(self.device)
            offsets = self.processor.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
            out = self.model(**inputs)
            probs = out.logits[0].sigmoid()  # [Q, max_text_len]; tokens past the text are -inf -> 0
            scores = probs.max(-1).values
            owner = token_classes([tuple(o) for o in offsets], spans).to(self.device)
            per_name = torch.stack([probs[:, : len(owner)][:, owner == c].amax(-1) for c in range(len(chunk))], -1)
            keep = scores > threshold
            cx, cy, w, h = out.pred_boxes[0][keep].unbind(-1)
            scale = torch.tensor([size[1], size[0], size[1], size[0]], device=self.device)
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * scale
            label = torch.tensor(chunk, device=self.device)[per_name[keep].argmax(-1)]
            found.append((boxes, scores[keep], label))
        return Detections(
            torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found]), torch.cat([f[2] for f in found]), size
        )


class GroundedSam:
    """Boxes from Grounding DINO, one mask per box from SAM 2 / SAM 3's tracker (ClickBackend) or SAM: a
    concept source (omniseg.source.ConceptSource) for segment, refer, batch, serve and eval. Its
    threshold is Grounding DINO's box score (default: the detector's ``box_threshold``)."""

    def __init__(self, boxes: GroundingDinoBoxes, masks: ClickBackend | SamBackend) -> None:
        self.boxes, self.masks = boxes, masks
        self.name = f"grounding-dino+{masks.name}"

    @property
    def default_threshold(self) -> float:
        return self.boxes.box_threshold

    def concepts(self, image: ImageLike, vocabulary: Vocabulary, threshold: float | None = None) -> Instances:
        """The instances of the vocabulary's classes (each synonym a name for Grounding DINO; an
        instance's class: its name's class), on the CPU."""
        texts, owner = vocabulary_prompts(vocabulary)
        return self.segment(image, texts, threshold).relabelled(owner).to("cpu")

    @torch.inference_mode()
    def segment(self, image: ImageLike, names: Sequence[str], threshold: float | None = None) -> Instances:
        """Instances (possibly overlapping): Grounding DINO's boxes, scores and classes (labels: indices
        into ``names``), the mask model's masks."""
        array = load_image(image)
        found = self.boxes.detect(array, names, threshold)
        size = found.image_size
        if len(found) == 0:
            return Instances.empty(size, self.boxes.device)
        boxes = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in found.boxes.tolist()]
        if isinstance(self.masks, ClickBackend):
            masks = self.masks.predict(array, boxes=boxes, multimask=False).masks[:, 0]
        else:  # SAM: three candidates per box, the one with the best predicted IoU
            proposals = self.masks.prompt(array, [], boxes)
            candidates = proposals.masks.view(len(boxes), -1, *proposals.masks.shape[-2:])
            best = proposals.scores.view(len(boxes), -1).argmax(-1)
            picked = candidates[torch.arange(len(boxes)), best][None].float()
            masks = torch.nn.functional.interpolate(picked, size=size, mode="bilinear", align_corners=False)[0] > 0.5
        return Instances(masks.to(found.boxes.device), found.scores, found.labels, found.boxes, size)

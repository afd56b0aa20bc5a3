"""CLIPSeg (transformers ``CLIPSegForImageSegmentation``) as a dense text-conditioned source: one
logit map per class name.

transformers' usage repeats the image once per prompt, so CLIP's vision tower runs once per name.
Here it runs once per image: its activations (the decoder's extract_layers) are broadcast over the
names, each name's text embedding is computed once and cached, and the light decoder runs over
all names together. The processor runs as is (its PIL image processor needs no torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from omniseg.backends.hub import open_checkpoint
from omniseg.backends.pil_processor import load_pil_processor
from omniseg.concepts import Instances, vocabulary_prompts
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.vocab import Vocabulary

MASK_THRESHOLD = 0.5  # a pixel belongs to its most likely name when that name's probability passes it
# CIDAS/clipseg-rd64-refined's image processor settings, for checkpoints saved without one
RELEASED_IMAGE_PROCESSOR = dict(
    size={"height": 352, "width": 352}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
)


class ClipSegDense:
    """Per-class logit maps [C,H,W] at the image size; ``semantic`` resolves them to a label map, and
    ``concepts`` makes it a concept source (segment, refer, batch, serve, eval)."""

    name = "clipseg"
    default_threshold = 0.0  # a class's segment is kept whatever its mean probability

    def __init__(self, spec: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import CLIPSegProcessor, ViTImageProcessorPil

        opened = open_checkpoint(spec, "CLIPSegForImageSegmentation", "CLIPSeg", device)
        self.device, self.directory = opened.device, opened.directory
        self.model: Any = opened.model
        self.processor = load_pil_processor(
            self.directory, CLIPSegProcessor, ViTImageProcessorPil, "CLIPSeg", **RELEASED_IMAGE_PROCESSOR
        )
        self._text_cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def text_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """[C, projection_dim] conditional embeddings, each name encoded once and cached."""
        todo = list(dict.fromkeys(n for n in names if n not in self._text_cache))
        if todo:
            tokens = self.processor.tokenizer(todo, padding=True, return_tensors="pt").to(self.device)
            features = self.model.clip.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
            self._text_cache.update(zip(todo, features, strict=True))
        return torch.stack([self._text_cache[n] for n in names])

    @torch.inference_mode()
    def low_res_logits(self, image: ImageLike, names: Sequence[str]) -> torch.Tensor:
        """The decoder's logits [C,h,w] (352 x 352 for the released model): the image encoded once."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise InputError("CLIPSeg needs at least one non-empty class name")
        pixels = self.processor(images=load_image(image), return_tensors="pt")["pixel_values"].to(self.device)
        vision = self.model.clip.get_image_features(pixel_values=pixels, output_hidden_states=True)
        activations = [vision.hidden_states[i + 1].expand(len(names), -1, -1) for i in self.model.extract_layers]
        logits = self.model.decoder(activations, self.text_embeddings(names)).logits
        return logits if logits.dim() == 3 else logits[None]  # the decoder squeezes a batch of one

    def logits(self, image: ImageLike, names: Sequence[str]) -> torch.Tensor:
        """Per-class logits [C,H,W] resized bilinearly to the image."""
        array = load_image(image)
        low = self.low_res_logits(array, names)
        return F.interpolate(low[None], size=array.shape[:2], mode="bilinear", align_corners=False)[0]

    def semantic(self, image: ImageLike, names: Sequence[str], background: float | None = None) -> torch.Tensor:
        """Label map [H,W] (long): the class with the highest logit; with ``background`` (a probability),
        pixels where no class reaches it get -1."""
        logits = self.logits(image, names)
        best, label = logits.max(0)
        if background is not None:
            label = torch.where(best.sigmoid() >= background, label, torch.full_like(label, -1))
        return label

    @torch.inference_mode()
    def concepts(self, image: ImageLike, vocabulary: Vocabulary, threshold: float | None = None) -> Instances:
        """The vocabulary's classes as instances (omniseg.source.ConceptSource), on the CPU. CLIPSeg has
        no instances: each class is one segment, the pixels where it is the most likely class (a class's
        probability: its best synonym's) and its probability passes MASK_THRESHOLD, scored by its mean
        probability there; ``threshold`` drops segments scoring below it (None: default_threshold, 0)."""
        texts, owner = vocabulary_prompts(vocabulary)
        probs = self.logits(image, texts).sigmoid()
        if len(texts) != len(vocabulary):  # synonyms: a class is as likely as its likeliest name
            owner = owner.to(probs.device)
            probs = torch.stack([probs[owner == k].amax(0) for k in range(len(vocabulary))])
        count, height, width = probs.shape
        winner = probs.argmax(0)[None] == torch.arange(count, device=probs.device)[:, None, None]
        masks = winner & (probs > MASK_THRESHOLD)
        area = masks.flatten(1).sum(1)
        scores = (probs * masks).flatten(1).sum(1) / area.clamp(min=1)
        keep = (area > 0) & (scores >= (self.default_threshold if threshold is None else threshold))
        masks, scores = masks[keep], scores[keep]
        return Instances(masks, scores, keep.nonzero().flatten(), mask_boxes(masks), (height, width)).to("cpu")


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Pixel xyxy [N,4] (x1, y1 exclusive) around each non-empty bool mask [N,H,W]."""
    boxes = masks.new_zeros(len(masks), 4, dtype=torch.float32)
    for i, mask in enumerate(masks):
        ys, xs = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes

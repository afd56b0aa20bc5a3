"""Mask2Former and OneFormer (transformers ``*ForUniversalSegmentation``) as mask sources.

Their query masks are the proposals and 1 - p(no object) their scores. Their closed-vocabulary
labels reach an omniseg Vocabulary by name: each query's region embedding is the mean of the text
embeddings of the label names weighted by the query's class probabilities, so a user class named
like one of the model's labels ("car", "person") gets exactly that label's probability mass, and
any other name is scored by its similarity to the labels in the text space. ``label_vocabulary()``
gives the model's own classes as a Vocabulary (used when the user names no classes).
Pixel features for the example-based tasks are the pixel decoder's mask features.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.base import Proposals
from omniseg.backends.hub import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    fit_size,
    load_model,
    load_tokenizer,
    normalization,
    resize,
    resolve_checkpoint,
    to_tensor,
)
from omniseg.vocab import Vocabulary

if TYPE_CHECKING:
    from omniseg.text.encoder import TextEncoder

_SUFFIX = re.compile(r"[-_ ](merged|other|stuff)$")


def clean_label(name: str) -> list[str]:
    """'wall-other-merged' -> ['wall']; 'building, edifice' -> ['building', 'edifice'] (synonyms)."""
    names = []
    for part in str(name).split(","):
        text = part.strip()
        while _SUFFIX.search(text):
            text = _SUFFIX.sub("", text)
        text = re.sub(r"[-_]+", " ", text).strip()
        if text:
            names.append(text)
    return names or [str(name)]


class UniversalSegmentationBackend:
    """kind: 'mask2former' or 'oneformer'. max_size: longest side the model sees (a multiple of 32)."""

    def __init__(self, spec: str | Path, text_encoder: TextEncoder, kind: str = "mask2former", max_size: int = 512):
        from transformers import Mask2FormerForUniversalSegmentation, OneFormerForUniversalSegmentation

        if kind not in ("mask2former", "oneformer"):
            raise ValueError(f"kind must be mask2former or oneformer, got {kind!r}")
        self.kind = self.name = kind
        what = "Mask2Former" if kind == "mask2former" else "OneFormer"
        self.directory = resolve_checkpoint(spec, what)
        cls = Mask2FormerForUniversalSegmentation if kind == "mask2former" else OneFormerForUniversalSegmentation
        self.model: Any = load_model(cls, self.directory, what)
        mean, std = normalization(self.directory, IMAGENET_MEAN, IMAGENET_STD)
        scale = 255.0 if float(mean.max()) > 1 else 1.0  # some processors store 0..255 statistics
        self.mean, self.std = mean / scale, std / scale
        self.max_size = max_size
        self.text_encoder = text_encoder
        self.temperature: float | None = None
        id2label = self.model.config.id2label
        self.labels = [clean_label(id2label[i]) for i in sorted(id2label, key=int)]
        prompts = [names[0] for names in self.labels]
        self.label_embeddings = torch.from_numpy(np.asarray(text_encoder.encode(prompts), dtype=np.float32))
        self.task_inputs = None
        if kind == "oneformer":
            tokenizer = load_tokenizer(self.directory, what)
            length = int(self.model.config.task_seq_len)
            self.task_inputs = tokenizer(
                ["the task is panoptic"], padding="max_length", truncation=True, max_length=length, return_tensors="pt"
            )["input_ids"]

    def label_vocabulary(self) -> Vocabulary:
        """The model's own classes (synonyms from comma-separated label names)."""
        return Vocabulary([list(names) for names in self.labels])

    @torch.inference_mode()
    def propose(self, image: np.ndarray) -> Proposals:
        size = fit_size(image.shape[0], image.shape[1], self.max_size, 32)
        x = (resize(to_tensor(image), size) - self.mean) / self.std
        if self.task_inputs is not None:
            out = self.model(pixel_values=x, task_inputs=self.task_inputs)
        else:
            out = self.model(pixel_values=x)
        probs = out.class_queries_logits[0].softmax(-1)  # [Q, K+1], last = no object
        objectness = 1 - probs[:, -1]
        label_probs = probs[:, :-1] / probs[:, :-1].sum(-1, keepdim=True).clamp(min=1e-6)
        embeddings = F.normalize(label_probs @ self.label_embeddings, dim=-1)
        masks = out.masks_queries_logits[0].sigmoid()
        pixel = getattr(out, "pixel_decoder_last_hidden_state", None)
        if pixel is None:
            hidden = getattr(out, "pixel_decoder_hidden_states", None)
            pixel = hidden[-1] if hidden else None
        return Proposals(
            masks=masks,
            scores=objectness,
            embeddings=embeddings,
            pixel_features=None if pixel is None else F.normalize(pixel[0].float(), dim=0),
        )

"""CLIP and SigLIP (transformers ``CLIPModel`` / ``SiglipModel``): the text tower as a TextEncoder
and dense image features in the same space, so region embeddings can be compared with words.

Dense features come from the value path of the last attention (MaskCLIP's trick): a patch token's
value, projected as the pooled image embedding would be, is that patch's embedding in the shared
space; the query-key attention, which mixes every patch into a global summary, is skipped.
- CLIP: last encoder layer's out_proj(v_proj(ln1(x))) (without the residual and the MLP, which
  ClearCLIP found to add noise), then post-layernorm and the visual projection.
- SigLIP: its attention-pooling head applied to each patch as if the probe attended to that patch
  alone: out_proj(v(x)) + MLP(LN(.)), the head's own computation with a one-hot attention.

Prompts are ensembled over a few templates (OMG-Seg uses fixed multi-template text embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.base import DenseFeatures
from omniseg.backends.hub import (
    checkpoint_id,
    fit_size,
    load_model,
    load_tokenizer,
    normalization,
    resize,
    resolve_checkpoint,
    to_tensor,
)
from omniseg.text.cache import EmbeddingCache, default_cache_dir

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "{}")
BATCH = 64


class ClipBackend:
    """Text encoder and embedding source of one CLIP or SigLIP checkpoint.

    image_size: longest side of the image the vision tower sees (position embeddings are
    interpolated); default: twice the checkpoint's training size, for a finer feature grid.
    """

    def __init__(
        self,
        spec: str | Path,
        kind: str = "clip",
        image_size: int | None = None,
        templates: Sequence[str] = TEMPLATES,
        cache: EmbeddingCache | None = None,
    ) -> None:
        from transformers import CLIPModel, SiglipModel

        if kind not in ("clip", "siglip"):
            raise ValueError(f"kind must be clip or siglip, got {kind!r}")
        self.kind = self.name = kind
        what = "CLIP" if kind == "clip" else "SigLIP"
        self.directory = resolve_checkpoint(spec, what)
        self.model: Any = load_model(CLIPModel if kind == "clip" else SiglipModel, self.directory, what)
        self.tokenizer = load_tokenizer(self.directory, what)
        vision = self.model.config.vision_config
        self.patch = int(vision.patch_size)
        self.image_size = int(image_size or 2 * int(vision.image_size))
        default_mean, default_std = (CLIP_MEAN, CLIP_STD) if kind == "clip" else ((0.5,) * 3, (0.5,) * 3)
        self.mean, self.std = normalization(self.directory, default_mean, default_std)
        self.templates = tuple(templates)
        self.encoder_id = checkpoint_id(self.directory, kind) + "|" + "|".join(self.templates)
        self.dim = int(
            self.model.config.projection_dim if kind == "clip" else self.model.config.text_config.hidden_size
        )
        self.temperature = float(1.0 / self.model.logit_scale.detach().exp())
        self.cache = cache if cache is not None else EmbeddingCache(default_cache_dir(), self.encoder_id)
        self.text_encoder = self  # the same object is the TextEncoder of this space

    # -- TextEncoder -------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.get_or_compute(list(texts), self._encode_uncached, self.dim)

    @torch.inference_mode()
    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        prompts = [template.format(t) for t in texts for template in self.templates]
        out = []
        for start in range(0, len(prompts), BATCH):
            out.append(self._text_features(prompts[start : start + BATCH]))
        if not out:
            return np.zeros((0, self.dim), np.float32)
        per_prompt = F.normalize(torch.cat(out), dim=-1).view(len(texts), len(self.templates), -1)
        return F.normalize(per_prompt.mean(1), dim=-1).numpy().astype(np.float32)

    def _text_features(self, prompts: list[str]) -> torch.Tensor:
        text_config = self.model.config.text_config
        max_length = int(
            min(getattr(self.tokenizer, "model_max_length", 77) or 77, text_config.max_position_embeddings)
        )
        if self.kind == "clip":
            tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask")
            ).pooler_output
            return self.model.text_projection(pooled)
        # SigLIP was trained on max_length padding without an attention mask
        tokens = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return self.model.text_model(input_ids=tokens["input_ids"]).pooler_output

    # -- EmbedSource -------------------------------------------------------------------------
    @torch.inference_mode()
    def dense(self, image: np.ndarray) -> DenseFeatures:
        height, width = fit_size(image.shape[0], image.shape[1], self.image_size, self.patch)
        x = (resize(to_tensor(image), (height, width)) - self.mean) / self.std
        grid = (height // self.patch, width // self.patch)
        tokens = self._dense_tokens(x)  # [1, T, D]
        tokens = tokens[:, -grid[0] * grid[1] :]  # drop CLIP's class token
        features = F.normalize(tokens[0], dim=-1).T.reshape(-1, *grid)
        return DenseFeatures(features=features)

    def _dense_tokens(self, x: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model
        if self.kind == "clip":
            hidden = vision(pixel_values=x, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[-2]
            layer = vision.encoder.layers[-1]
            values = layer.self_attn.out_proj(layer.self_attn.v_proj(layer.layer_norm1(hidden)))
            return self.model.visual_projection(vision.post_layernorm(values))
        hidden = vision(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
        head = getattr(vision, "head", None)
        if head is None or not getattr(self.model.config.vision_config, "vision_use_head", True):
            return hidden
        attn = head.attention
        dim = attn.embed_dim
        values = F.linear(hidden, attn.in_proj_weight[2 * dim :], attn.in_proj_bias[2 * dim :])
        values = attn.out_proj(values)
        return values + head.mlp(head.layernorm(values))

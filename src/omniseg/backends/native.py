"""The native OpenSeg model as a mask source and as an embedding source.

As an embedding source it pools its own F_z under any masks and applies its text projection,
exactly as its forward pass does for its own masks (openseg.py), so SAM or Mask2Former masks get
embeddings in the MiniLM text space of the default vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch

from omniseg.backends.base import DenseFeatures, Proposals
from omniseg.segmenter import Segmenter


class NativeSource:
    """Wraps a plain Segmenter (its model, preprocessing and text encoder)."""

    name = "native"

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.text_encoder = segmenter.text_encoder
        self.temperature = segmenter.class_temperature

    @torch.inference_mode()
    def propose(self, image: np.ndarray) -> Proposals:
        out = self.segmenter.model(self.segmenter._prepare(image))
        pixel = out.get("pixel_features")
        return Proposals(
            masks=out["mask_logits"][0].sigmoid(),
            scores=out["objectness"][0].sigmoid(),
            embeddings=out["embeddings"][0],
            pixel_features=None if pixel is None else pixel[0],
        )

    @torch.inference_mode()
    def dense(self, image: np.ndarray) -> DenseFeatures:
        model = self.segmenter.model
        features = model.embed_features(model.image_features(self.segmenter._prepare(image)))[0]  # F_z [d,h,w]
        return DenseFeatures(features=features, project=model.text_proj)

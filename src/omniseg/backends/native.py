"""The native OpenSeg model as a region source, a mask source and an embedding source.

``NativeSource`` wraps the network (``OpenSegModel``, or ``OnnxOpenSeg`` answering the same
outputs through ONNX Runtime) with its preprocessing. Its Regions carry every output of the
forward pass that names a Regions field, so a new model output reaches the tasks by adding the
field, not by editing this file.

As an embedding source it pools its own F_z under any masks and applies its text projection,
exactly as its forward pass does for its own masks (openseg.py), so SAM or Mask2Former masks get
embeddings in the MiniLM text space of the default vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.base import DenseFeatures, Proposals
from omniseg.backends.device import resolve_device
from omniseg.errors import InputError
from omniseg.recognition.known import KnownConcepts
from omniseg.regions import Regions

Network = Callable[[torch.Tensor], dict[str, torch.Tensor]]
# forward() outputs that become a Regions field under another name, through a function
_RENAMED = {"mask_logits": "masks", "objectness": "scores"}
_REGION_FIELDS = {f.name for f in dataclasses.fields(Regions)}


class NativeSource:
    """The native network + its preprocessing: images resized so the longest side is at most ``max_size``."""

    def __init__(
        self,
        network: Network,
        name: str = "omniseg-default",
        max_size: int = 512,
        known: KnownConcepts | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = resolve_device(device)
        if isinstance(network, torch.nn.Module):
            network = network.to(self.device)
        elif self.device.type != "cpu":
            raise InputError(f"this native model runs on ONNX Runtime's CPU provider, not on {self.device}")
        self.network = network
        self.name = name
        self.max_size = max_size
        self.known = known  # the training names of the model card (omniseg.recognition.known), if any
        self.has_recognizer = getattr(network, "recognizer", None) is not None  # the frozen ImageNet head
        config = getattr(network, "config", None)
        # Semantic logits: (1 - a) * eq. 6 + a * per-pixel (ESS / LSeg+ heads); from the model's config.
        self.pixel_weight = float(getattr(config, "pixel_weight", 0.0) or 0.0)

    @property
    def class_temperature(self) -> float | None:
        """The temperature the model's class head was trained with (1 / its learnt logit scale)."""
        scale = getattr(self.network, "logit_scale_class", None)
        return float(1.0 / scale.detach().exp()) if isinstance(scale, torch.Tensor) else None

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 [H,W,3] -> float [1,3,h,w] in 0..1, the longest side at most ``max_size``."""
        h, w = image.shape[:2]
        if h < 8 or w < 8:
            raise InputError(f"image too small: {w}x{h} (at least 8x8 pixels)")
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        scale = self.max_size / max(h, w)
        if scale < 1:
            x = F.interpolate(
                x,
                size=(max(8, round(h * scale)), max(8, round(w * scale))),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x.to(self.device)

    @torch.inference_mode()
    def forward(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """The network's outputs for one image (batch dimension dropped), on the CPU where the tasks read them."""
        return {key: value[0].cpu() for key, value in self.network(self.prepare(image)).items()}

    @torch.inference_mode()
    def regions(self, image: np.ndarray) -> Regions:
        """The image as N soft masks (at stride 4 of the processed size) + embeddings + scores, and
        every other output that is a Regions field (pixel features, pixel embeddings, ...)."""
        out = self.forward(image)
        fields: dict[str, Any] = {
            _RENAMED.get(key, key): value for key, value in out.items() if _RENAMED.get(key, key) in _REGION_FIELDS
        }
        fields["masks"] = out["mask_logits"].sigmoid()
        fields["scores"] = out["objectness"].sigmoid()
        if "imagenet_logits" in out:  # the frozen recognizer's per-region ImageNet-1k distribution
            fields["imagenet_probs"] = out["imagenet_logits"].softmax(-1)
        fields["pixel_weight"] = self.pixel_weight if "pixel_embeddings" in out else 0.0
        return Regions(image_size=(int(image.shape[0]), int(image.shape[1])), **fields)

    # -- as a mask source and an embedding source of a composed source ----------------------------
    @torch.inference_mode()
    def propose(self, image: np.ndarray) -> Proposals:
        out = self.forward(image)
        return Proposals(
            masks=out["mask_logits"].sigmoid(),
            scores=out["objectness"].sigmoid(),
            embeddings=out["embeddings"],
            pixel_features=out.get("pixel_features"),
        )

    @property
    def temperature(self) -> float | None:
        return self.class_temperature

    @torch.inference_mode()
    def dense(self, image: np.ndarray) -> DenseFeatures:
        model: Any = self.network
        if not hasattr(model, "embed_features"):
            raise InputError("this native model runs on ONNX Runtime and cannot embed other masks: use --runtime torch")
        features = model.embed_features(model.image_features(self.prepare(image)))[0]  # F_z [d,h,w]
        if self.device.type == "cpu":
            return DenseFeatures(features=features, project=model.text_proj)
        return DenseFeatures(features=features.cpu(), project=self._project_on_device)

    def _project_on_device(self, pooled: torch.Tensor) -> torch.Tensor:
        """The text projection on the model's device, for region features pooled on the CPU."""
        model: Any = self.network
        return model.text_proj(pooled.to(self.device)).cpu()

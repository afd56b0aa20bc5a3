"""SAM 3's pre- and post-processing in plain torch (transformers' Sam3ImageProcessor needs torchvision).

The steps are Sam3ImageProcessor's / Sam3Processor's documented ones, read from
preprocessor_config.json when the checkpoint has one:

- image: RGB uint8 resized to ``size`` (1008 x 1008, aspect not kept) with bilinear antialiased
  resampling, rescaled by 1/255 and normalised with ``image_mean`` / ``image_std`` (0.5, 0.5);
- text: the checkpoint's tokenizer, padded to ``max_length`` 32, with its attention mask;
- boxes: pixel xyxy in the original image -> (cx, cy, w, h) normalised by the original size;
- outputs: score = sigmoid(pred_logits) x sigmoid(presence_logits), kept when > threshold; boxes
  (already xyxy in 0..1) scaled to the image; mask probabilities resized bilinearly to the image
  and thresholded at ``mask_threshold`` (0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.hub import preprocessor_config
from omniseg.errors import InputError

STANDARD_MEAN = (0.5, 0.5, 0.5)
STANDARD_STD = (0.5, 0.5, 0.5)
TEXT_LENGTH = 32


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes pixel_values: target (height, width), mean and std for images in 0..1."""

    size: tuple[int, int]
    mean: tuple[float, ...] = STANDARD_MEAN
    std: tuple[float, ...] = STANDARD_STD

    @classmethod
    def from_checkpoint(cls, directory: Path, default_size: int) -> ImageSpec:
        cfg = preprocessor_config(directory)
        size = cfg.get("size") or {}
        height = int(size.get("height", default_size))
        width = int(size.get("width", default_size))
        return cls(
            (height, width),
            tuple(cfg.get("image_mean", STANDARD_MEAN)),
            tuple(cfg.get("image_std", STANDARD_STD)),
        )


def resize_uint8(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [B,3,H,W] -> uint8 [B,3,h,w], bilinear with antialiasing (what torchvision does on uint8).

    torch has a uint8 antialiased kernel on CPU; elsewhere the float result is rounded back to uint8.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.device.type == "cpu":
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    resized = F.interpolate(image.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


def preprocess_image(image: np.ndarray, spec: ImageSpec, device: torch.device) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> pixel_values float [1,3,h,w] on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected an RGB uint8 image [H,W,3], got {image.dtype} {tuple(image.shape)}")
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # a read-only array (e.g. a decoded dataset image): torch wants to own it
        image = image.copy()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device)
    x = resize_uint8(x, spec.size).float() / 255.0
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def tokenize(tokenizer: Any, texts: list[str], device: torch.device, max_length: int = TEXT_LENGTH):
    """input_ids and attention_mask [P, max_length] as Sam3Processor makes them (padding='max_length')."""
    encoded = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


def boxes_to_prompt(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Pixel xyxy [..., 4] in an image of (H, W) -> normalised (cx, cy, w, h) [..., 4] (Sam3Processor)."""
    height, width = image_size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    x0, y0, x1, y1 = (boxes.float() / scale).unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The pixel xyxy box around a binary mask's pixels (x1, y1 exclusive); InputError when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise InputError("the example mask is empty: it marks no object to use as an exemplar")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def query_scores(pred_logits: torch.Tensor, presence_logits: torch.Tensor | None) -> torch.Tensor:
    """[P,Q] detection scores: sigmoid(pred_logits) x sigmoid(presence_logits) (broadcast over queries)."""
    scores = pred_logits.sigmoid()
    return scores * presence_logits.sigmoid() if presence_logits is not None else scores


def scale_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Normalised xyxy -> pixel xyxy in an image of (H, W)."""
    height, width = image_size
    return boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)


def binary_masks(mask_logits: torch.Tensor, image_size: tuple[int, int], mask_threshold: float = 0.5) -> torch.Tensor:
    """Mask logits [N,h,w] -> bool [N,H,W]: sigmoid, bilinear resize to the image, > mask_threshold."""
    if len(mask_logits) == 0:
        return torch.zeros(0, *image_size, dtype=torch.bool, device=mask_logits.device)
    probs = F.interpolate(mask_logits.sigmoid()[None], size=image_size, mode="bilinear", align_corners=False)[0]
    return probs > mask_threshold

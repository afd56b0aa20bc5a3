"""transformers' own post-processing for the issue-16 parity tests, importable without torchvision.

transformers' SAM 2 / SAM 3 image-processor modules import ``torchvision.ops.boxes.batched_nms`` at
the top (used only by their automatic-mask-generation path), and there is no CPU torchvision for
this torch. The post-processing methods the tests call are pure torch and read nothing from
``self``: the import is satisfied by a placeholder module for the duration of the import only, and
the real methods are then called unbound. Where torchvision is installed, it is used as is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import numpy as np
import torch

from omniseg.backends.sam3_processing import preprocess_image, tokenize

_NAMES = ("torchvision", "torchvision.ops", "torchvision.ops.boxes")


def import_with_placeholder_torchvision(module: str, name: str) -> Any:
    if importlib.util.find_spec("torchvision") is not None:
        return getattr(importlib.import_module(module), name)
    saved = {n: sys.modules.get(n) for n in _NAMES}
    boxes = types.ModuleType(_NAMES[2])
    boxes.batched_nms = None  # type: ignore[attr-defined]
    sys.modules.update({_NAMES[0]: types.ModuleType(_NAMES[0]), _NAMES[1]: types.ModuleType(_NAMES[1])})
    sys.modules[_NAMES[2]] = boxes
    try:
        return getattr(importlib.import_module(module), name)
    finally:
        for n, original in saved.items():
            if original is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = original


def sam3_post_process_instance_segmentation(outputs: Any, **kwargs: Any) -> list[dict]:
    cls = import_with_placeholder_torchvision("transformers.models.sam3.image_processing_sam3", "Sam3ImageProcessor")
    return cls.post_process_instance_segmentation(None, outputs, **kwargs)


def sam2_post_process_masks(masks: list[torch.Tensor], sizes: list[tuple[int, int]], **kwargs: Any) -> list:
    cls = import_with_placeholder_torchvision("transformers.models.sam2.image_processing_sam2", "Sam2ImageProcessor")
    return cls.post_process_masks(None, masks, sizes, **kwargs)


def reference(backend: Any, image: np.ndarray, text: str, threshold: float, **prompt) -> dict:
    """transformers' pipeline for one prompt (SAM 3): Sam3Model on the same pixel_values / input_ids, then
    Sam3ImageProcessor.post_process_instance_segmentation."""
    pixels = preprocess_image(image, backend.image_spec, backend.device)
    ids, attention = tokenize(backend.tokenizer, [text], backend.device)
    with torch.inference_mode():
        out = backend.model(pixel_values=pixels, input_ids=ids, attention_mask=attention, **prompt)
    (result,) = sam3_post_process_instance_segmentation(
        out, threshold=threshold, mask_threshold=0.5, target_sizes=[image.shape[:2]]
    )
    return result


def middle_threshold(scores: torch.Tensor) -> float:
    """A threshold between two neighbouring scores (far from both), so that some pass and some do not."""
    values = scores.flatten().sort().values
    gaps = values[1:] - values[:-1]
    i = int(torch.argmax(gaps[len(gaps) // 4 : 3 * len(gaps) // 4])) + len(gaps) // 4
    assert gaps[i] > 1e-5
    return float((values[i] + values[i + 1]) / 2)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union

"""Clicks and boxes -> masks through SAM 2, SAM 3's tracker or EdgeTAM (transformers ``Sam2Model``,
``Sam3TrackerModel``, ``EdgeTamModel``: the same promptable interface on different encoders).

The checkpoint's config.json names which one it is. Pre/post-processing are their processors'
documented steps in plain torch (their image processors import torchvision): the image resized to
the model's square input (1024 for SAM 2 / EdgeTAM, 1008 for SAM 3's tracker, aspect not kept,
bilinear antialiased), rescaled and normalised (ImageNet mean/std for SAM 2 / EdgeTAM, 0.5 / 0.5
for SAM 3); point and box coordinates scaled by input size / image size per axis; the low-res
mask logits resized bilinearly to the image and thresholded at 0. The image is encoded once per
call; every prompt group is decoded against that encoding.

EdgeTAM's backbone is a timm model: it needs ``timm`` (which needs torchvision), so here it is
supported by the same code path but could not be run.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.base import Proposals
from omniseg.backends.device import resolve_device
from omniseg.backends.hub import IMAGENET_MEAN, IMAGENET_STD, open_checkpoint, resolve_checkpoint
from omniseg.backends.sam3_processing import STANDARD_MEAN, STANDARD_STD, ImageSpec, preprocess_image
from omniseg.errors import InputError, ModelLoadError
from omniseg.images import ImageLike, load_image

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click

# model_type in config.json -> (transformers class name, default input size, default mean, default std)
PROMPTABLE = {
    "sam2": ("Sam2Model", 1024, IMAGENET_MEAN, IMAGENET_STD),
    "sam3_tracker": ("Sam3TrackerModel", 1008, STANDARD_MEAN, STANDARD_STD),
    "edgetam": ("EdgeTamModel", 1024, IMAGENET_MEAN, IMAGENET_STD),
}


def model_type(directory: Path, what: str) -> str:
    try:
        return str(json.loads((directory / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{what} checkpoint at {directory}: unreadable config.json ({exc.__class__.__name__})"
        ) from None


def checkpoint_kind(directory: Path, kinds: Collection[str], what: str) -> str:
    """The checkpoint's model_type, which must be one of ``kinds`` (else a one-line ModelLoadError)."""
    kind = model_type(directory, what)
    if kind not in kinds:
        raise ModelLoadError(
            f"{what} checkpoint at {directory} is a {kind or 'unknown'!r} model; expected one of {', '.join(kinds)}"
        )
    return kind


def image_spec(directory: Path, model: Any, kind: str, kinds: dict) -> ImageSpec:
    """The square input size (the prompt encoder's image_size: the frame its coordinates live in), mean/std
    from preprocessor_config.json or the kind's default."""
    _, default_size, mean, std = kinds[kind]
    size = getattr(getattr(model.config, "prompt_encoder_config", None), "image_size", default_size)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    spec = ImageSpec.from_checkpoint(directory, size)
    defaults_used = not (directory / "preprocessor_config.json").is_file()
    return ImageSpec(spec.size, tuple(mean), tuple(std)) if defaults_used else spec


@dataclass
class ClickEncoding:
    """The image embeddings (list of FPN levels) of one image and its original (H, W)."""

    embeddings: list[torch.Tensor]
    image_size: tuple[int, int]


@dataclass
class ClickMasks:
    """Masks for G prompt groups: logits and bool masks [G,M,H,W] (M = 3 with multimask, else 1), scores [G,M]."""

    logits: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor


class PromptableCheckpoint:
    """A SAM 2-family checkpoint opened on a device: which kind it is, its model and its input spec."""

    kinds: dict[str, tuple[str, int, tuple, tuple]] = PROMPTABLE
    what = "SAM 2"

    def __init__(
        self,
        spec: str | Path,
        device: str | torch.device = "cpu",
        mask_threshold: float = 0.0,
        family: Collection[str] | None = None,
    ) -> None:
        """family: the model types this checkpoint may be (default: every kind of the class), e.g.
        {"sam2", "sam2_video"} for the ``sam2:`` model kind."""
        resolve_device(device)  # a bad device fails before the checkpoint is looked at
        directory = resolve_checkpoint(spec, self.what)
        allowed = [k for k in self.kinds if family is None or k in family]
        self.kind = checkpoint_kind(directory, allowed, self.what)
        opened = open_checkpoint(directory, self.kinds[self.kind][0], f"{self.what} ({self.kind})", device)
        self.directory: Path | None = directory
        self.device = opened.device
        self.model: Any = opened.model
        self.name = self.kind
        self.image_spec = image_spec(directory, self.model, self.kind, self.kinds)
        self.mask_threshold = mask_threshold

    @classmethod
    def from_model(cls, model: Any, device: str | torch.device = "cpu", mask_threshold: float = 0.0) -> Any:
        """An adapter around an already built model (e.g. the benchmark's random full-size one); its kind
        is its config's model_type, its input spec the kind's defaults at the config's input size."""
        self = cls.__new__(cls)
        self.kind = self.name = str(model.config.model_type)
        if self.kind not in cls.kinds:
            raise InputError(f"a {self.kind!r} model is not one of {', '.join(cls.kinds)}")
        self.device = resolve_device(device)
        self.directory = None
        self.model = model.eval().to(self.device)
        _, default_size, mean, std = cls.kinds[self.kind]
        size = int(getattr(getattr(model.config, "prompt_encoder_config", None), "image_size", default_size))
        self.image_spec = ImageSpec((size, size), tuple(mean), tuple(std))
        self.mask_threshold = mask_threshold
        return self


class ClickBackend(PromptableCheckpoint):
    """Points and boxes -> masks through SAM 2 / SAM 3 tracker / EdgeTAM (see the module docstring)."""

    @torch.inference_mode()
    def encode(self, image: ImageLike) -> ClickEncoding:
        array = load_image(image)
        pixels = preprocess_image(array, self.image_spec, self.device)
        return ClickEncoding(
            list(self.model.get_image_embeddings(pixel_values=pixels)), (array.shape[0], array.shape[1])
        )

    def _scale(self, image_size: tuple[int, int]) -> torch.Tensor:
        """Per-axis factors (x, y) from image pixels to the model's input frame (the processors' normalisation)."""
        height, width = image_size
        return torch.tensor([self.image_spec.size[1] / width, self.image_spec.size[0] / height], device=self.device)

    @torch.inference_mode()
    def predict(
        self,
        image: ImageLike | ClickEncoding,
        points: Sequence[tuple[float, float]] = (),
        labels: Sequence[int] = (),
        boxes: Sequence[tuple[float, float, float, float]] = (),
        multimask: bool = True,
    ) -> ClickMasks:
        """Masks for the points (x, y in image pixels, labels 1 = on the object, 0 = not) and/or boxes
        (pixel xyxy): one group per box, each with all the points; one group when there is no box."""
        if not points and not boxes:
            raise InputError("give at least one point or box")
        if len(points) != len(labels):
            raise InputError(f"{len(points)} points but {len(labels)} labels")
        encoding = image if isinstance(image, ClickEncoding) else self.encode(image)
        scale = self._scale(encoding.image_size)
        groups = max(1, len(boxes))
        point_tensor = label_tensor = box_tensor = None
        if points:
            xy = torch.tensor(points, dtype=torch.float32, device=self.device) * scale
            point_tensor = xy[None, None].expand(1, groups, -1, -1).contiguous()
            label_tensor = torch.tensor([list(labels)] * groups, dtype=torch.long, device=self.device)[None]
        if boxes:
            box_tensor = (torch.tensor(boxes, dtype=torch.float32, device=self.device).view(-1, 2, 2) * scale).view(
                1, -1, 4
            )
        out = self.model(
            image_embeddings=encoding.embeddings,
            input_points=point_tensor,
            input_labels=label_tensor,
            input_boxes=box_tensor,
            multimask_output=multimask,
        )
        logits = F.interpolate(
            out.pred_masks[0].float(), size=encoding.image_size, mode="bilinear", align_corners=False
        )  # [G,M,H,W]
        return ClickMasks(logits, logits > self.mask_threshold, out.iou_scores[0])

    def prompt(
        self,
        image: np.ndarray | ClickEncoding,
        clicks: Sequence[Click],
        boxes: Sequence[Box] = (),
    ) -> Proposals:
        """The mask source interface of omniseg's click task (as backends.sam.SamBackend.prompt): every
        candidate mask for the clicks (at pixel centres) and boxes, scored by predicted IoU. ``image`` may
        be its encoding (``encode``), reused across prompts."""
        points = [(c.x + 0.5, c.y + 0.5) for c in clicks]
        result = self.predict(image, points, [int(c.positive) for c in clicks], list(boxes))
        return Proposals(masks=result.logits.flatten(0, 1).sigmoid(), scores=result.scores.flatten().clamp(0, 1))

    def propose(self, image: np.ndarray) -> Proposals:
        """A promptable model proposes nothing by itself: a one-line error saying what to use instead."""
        raise InputError(
            f"{self.kind} answers clicks and boxes only and proposes no masks by itself: use it with "
            "`omniseg click`, or give it boxes (--boxes grounding-dino:PATH), or use sam:PATH for proposals"
        )

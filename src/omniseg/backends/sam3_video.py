"""Concept tracking in video with SAM 3 (transformers ``Sam3VideoModel``): ``video --classes``.

SAM 3's detector finds the instances of every name on each frame and its tracker carries them as
objects with stable ids. The session is built here rather than by ``Sam3VideoProcessor`` (which
requires torchvision): frames preprocessed as SAM 3's image processor documents, each name
tokenised as the processor does (padded to 32). The outputs get the processor's documented
post-processing (``postprocess_outputs``): low-res object masks resized bilinearly to the frame and
thresholded at 0, empty masks dropped, objects the model suppressed or removed at hot start hidden,
and within each name the pixel going to the object with the highest tracker score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.hub import load_tokenizer, open_checkpoint
from omniseg.backends.sam3_processing import ImageSpec, preprocess_image, tokenize
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image


@dataclass
class TrackedFrame:
    """One frame's tracked objects: ids [K] (stable over the video), labels [K] (name index), scores [K],
    masks bool [K,H,W] (no overlap within a name)."""

    frame: int
    object_ids: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor

    def id_map(self) -> np.ndarray:
        """[H,W] object ids (0 = none): where objects of different names overlap, the higher score wins."""
        if len(self.object_ids) == 0:
            return np.zeros(tuple(self.masks.shape[-2:]), np.int64)
        weight = torch.where(self.masks, self.scores[:, None, None].float() + 1, torch.zeros(()))
        best, index = weight.max(0)
        return torch.where(best > 0, self.object_ids[index], 0).cpu().numpy()

    def label_map(self) -> np.ndarray:
        """[H,W] name index + 1 per pixel (0 = none), from the id map."""
        ids = self.id_map()
        lookup = dict(zip(self.object_ids.tolist(), (self.labels + 1).tolist(), strict=True))
        return np.vectorize(lambda v: lookup.get(int(v), 0), otypes=[np.int64])(ids) if ids.size else ids


def keep_best_per_pixel(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Bool masks [K,H,W] -> each pixel kept only in the mask of the highest score (processor's rule)."""
    if len(masks) <= 1:
        return masks
    weighted = torch.where(masks, scores[:, None, None].float(), torch.full((), -10.0))
    winner = weighted.argmax(0, keepdim=True) == torch.arange(len(masks), device=masks.device)[:, None, None]
    return masks & winner


class ConceptTracker:
    """Tracks every instance of the given names through the frames (see the module docstring)."""

    name = "sam3-video"

    def __init__(self, spec: str | Path, device: str | torch.device = "cpu") -> None:
        opened = open_checkpoint(spec, "Sam3VideoModel", "SAM 3 video", device)
        self.device, self.directory = opened.device, opened.directory
        self.model: Any = opened.model
        self.tokenizer = load_tokenizer(self.directory, "SAM 3 video")
        size = int(self.model.config.detector_config.vision_config.backbone_config.image_size)
        self.image_spec = ImageSpec.from_checkpoint(self.directory, size)

    def session(self, frames: Sequence[ImageLike], names: Sequence[str]) -> Any:
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        arrays = [load_image(f) for f in frames]
        if not arrays:
            raise InputError("the video has no frames")
        height, width = arrays[0].shape[:2]
        if any(a.shape[:2] != (height, width) for a in arrays):
            raise InputError("all frames of a video must have the same size")
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise InputError("SAM 3 needs at least one non-empty concept name")
        video = torch.cat([preprocess_image(a, self.image_spec, self.device) for a in arrays])
        session = Sam3VideoInferenceSession(
            video=video,
            video_height=height,
            video_width=width,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=torch.float32,
        )
        for name in names:
            prompt_id = session.add_prompt(name)
            if prompt_id not in session.prompt_input_ids:
                ids, attention = tokenize(self.tokenizer, [name], self.device)
                session.prompt_input_ids[prompt_id] = ids
                session.prompt_attention_masks[prompt_id] = attention
        return session

    def postprocess(self, session: Any, output: Any, names: Sequence[str]) -> TrackedFrame:
        size = (int(session.video_height), int(session.video_width))
        masks_by_id = output["obj_id_to_mask"]
        ids = sorted(masks_by_id)
        hidden = set(output["suppressed_obj_ids"] or ()) | set(session.hotstart_removed_obj_ids)
        ids = [i for i in ids if i not in hidden]
        if not ids:
            empty = torch.zeros(0, dtype=torch.long)
            return TrackedFrame(
                int(output["frame_idx"]), empty, empty, torch.zeros(0), torch.zeros(0, *size, dtype=torch.bool)
            )
        low = torch.cat([masks_by_id[i] for i in ids]).float()
        masks = F.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)[:, 0] > 0
        keep = masks.flatten(1).any(1).cpu()
        ids = [i for i, k in zip(ids, keep.tolist(), strict=True) if k]
        masks = masks[keep.to(masks.device)]
        scores = torch.tensor([float(output["obj_id_to_score"][i]) for i in ids])
        tracker = torch.tensor([float(output["obj_id_to_tracker_score"].get(i, 0.0)) for i in ids])
        labels = torch.tensor(
            [names.index(session.prompts[session.obj_id_to_prompt_id[i]]) for i in ids], dtype=torch.long
        )
        for label in labels.unique():
            group = (labels == label).nonzero().flatten()
            masks[group.to(masks.device)] = keep_best_per_pixel(masks[group.to(masks.device)], tracker[group])
        return TrackedFrame(int(output["frame_idx"]), torch.tensor(ids, dtype=torch.long), labels, scores, masks.cpu())

    @torch.inference_mode()
    def track(self, frames: Sequence[ImageLike], names: Sequence[str]) -> Iterator[TrackedFrame]:
        """The tracked objects of every frame, in order."""
        names = [str(n).strip() for n in names]
        session = self.session(frames, names)
        for output in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            yield self.postprocess(session, output, names)

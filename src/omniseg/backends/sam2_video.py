"""First-frame mask propagation through SAM 2's video model (transformers ``Sam2VideoModel``, and
``Sam3TrackerVideoModel`` / ``EdgeTamVideoModel``, which share its session interface).

Given frames and the first frame's id mask (0 = background, 1..K = objects), each object's mask is
SAM 2's mask prompt on frame 0 and the model's memory carries it through the video. The session is
built here rather than by the video processor (which imports torchvision): frames preprocessed as
the processor documents (square input, bilinear antialiased, normalised), each object's mask
resized bilinearly with antialiasing to the input size and binarised at 0.5 (the processor's
``process_new_mask_for_video_frame``), outputs resized to the frame and thresholded at 0. Where
objects overlap, a pixel goes to the object with the highest logit; 0 where none is above 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.hub import IMAGENET_MEAN, IMAGENET_STD
from omniseg.backends.sam2 import PromptableCheckpoint
from omniseg.backends.sam3_processing import STANDARD_MEAN, STANDARD_STD, preprocess_image
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image

VIDEO_MODELS = {
    "sam2_video": ("Sam2VideoModel", 1024, IMAGENET_MEAN, IMAGENET_STD),
    "sam3_tracker_video": ("Sam3TrackerVideoModel", 1008, STANDARD_MEAN, STANDARD_STD),
    "edgetam_video": ("EdgeTamVideoModel", 1024, IMAGENET_MEAN, IMAGENET_STD),
}
# model_type -> the inference session class (in transformers.models.<model_type>.modeling_<model_type>)
SESSIONS = {
    "sam2_video": "Sam2VideoInferenceSession",
    "sam3_tracker_video": "Sam3TrackerVideoInferenceSession",
    "edgetam_video": "EdgeTamVideoInferenceSession",
}


def _session_class(kind: str) -> Any:
    import importlib

    return getattr(importlib.import_module(f"transformers.models.{kind}.modeling_{kind}"), SESSIONS[kind])


def ids_to_map(logits: torch.Tensor, ids: Sequence[int], threshold: float = 0.0) -> np.ndarray:
    """Per-object logits [K,H,W] -> id map [H,W]: the highest-logit object where it is above threshold."""
    if len(ids) == 0:
        return np.zeros(tuple(logits.shape[-2:]), np.int64)
    best, index = logits.max(0)
    lookup = torch.tensor(list(ids), dtype=torch.long, device=logits.device)
    return torch.where(best > threshold, lookup[index], 0).cpu().numpy()


class VideoPropagator(PromptableCheckpoint):
    """Propagates the first frame's objects through the frames with SAM 2's video memory."""

    kinds = VIDEO_MODELS
    what = "SAM 2 video"

    def session(self, frames: Sequence[ImageLike]) -> tuple[Any, tuple[int, int]]:
        """An inference session holding the preprocessed frames (all of the same size)."""
        arrays = [load_image(f) for f in frames]
        if not arrays:
            raise InputError("the video has no frames")
        size = (arrays[0].shape[0], arrays[0].shape[1])
        if any((a.shape[0], a.shape[1]) != size for a in arrays):
            raise InputError("all frames of a video must have the same size")
        video = torch.cat([preprocess_image(a, self.image_spec, self.device) for a in arrays])
        session = _session_class(self.kind)(
            video=video,
            video_height=size[0],
            video_width=size[1],
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=torch.float32,
        )
        return session, size

    def add_first_mask(self, session: Any, first_mask: np.ndarray, size: tuple[int, int]) -> list[int]:
        """Each nonzero id of the mask becomes an object with its mask as SAM 2's prompt on frame 0."""
        mask = np.asarray(first_mask)
        if mask.shape != size:
            raise InputError(
                f"the first mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {size[1]}x{size[0]}"
            )
        ids = [int(v) for v in np.unique(mask) if v != 0]
        if not ids:
            raise InputError("the first mask marks no object (all background)")
        target = self.image_spec.size
        for obj_id in ids:
            index = session.obj_id_to_idx(obj_id)
            binary = torch.from_numpy(mask == obj_id).to(self.device, torch.float32)[None, None]
            resized = F.interpolate(binary, size=target, mode="bilinear", align_corners=False, antialias=True)
            session.add_mask_inputs(index, 0, (resized >= 0.5).float())
            session.remove_point_inputs(index, 0)
        session.obj_with_new_inputs = ids
        return ids

    @torch.inference_mode()
    def propagate_logits(
        self, frames: Sequence[ImageLike], first_mask: np.ndarray
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(object ids, logits [K,H,W] at the frame size) for every frame, the first included."""
        session, size = self.session(frames)
        ids = self.add_first_mask(session, first_mask, size)
        for output in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            logits = F.interpolate(output.pred_masks.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
            yield list(output.object_ids or ids), logits

    def propagate(self, frames: Sequence[ImageLike], first_mask: np.ndarray) -> Iterator[np.ndarray]:
        """An id map [H,W] per frame (the first frame's is SAM 2's answer to the mask prompt)."""
        for ids, logits in self.propagate_logits(frames, first_mask):
            yield ids_to_map(logits, ids, self.mask_threshold)

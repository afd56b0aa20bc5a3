"""SegGPT (transformers ``SegGptForImageSegmentation``) for the in-context task (SegGPT, Wang et al.).

Each example's id mask is painted with one colour per id (background black), the example image and
painting are the prompt, and SegGPT paints the target. Several examples run as one batch with
``feature_ensemble``: the target's features are averaged over the prompts inside the network
(SegGPT's "feature ensemble"), so more examples give one better answer. The painted output is
read back by the nearest palette colour. level="category" uses SegGPT's semantic prompt
embedding, level="instance" its instance one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.backends.hub import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_model,
    normalization,
    resize,
    resolve_checkpoint,
    to_tensor,
)
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.tasks.common import check_mask_matches, label_dtype, load_mask

BACKGROUND = 0


def palette(count: int) -> torch.Tensor:
    """[count+1, 3] colours in 0..255: black for the background, then far-apart colours of an RGB lattice."""
    steps = 2
    while steps**3 - 1 < count:
        steps += 1
    levels = torch.linspace(255, 0, steps)
    grid = torch.cartesian_prod(levels, levels, levels)
    grid = grid[grid.sum(1) > 0]  # black is the background's
    order = torch.argsort(-grid.std(1) - grid.sum(1) / 765)  # saturated, bright colours first
    return torch.cat([torch.zeros(1, 3), grid[order][:count]])


class SegGptBackend:
    name = "seggpt"

    def __init__(self, spec: str | Path) -> None:
        from transformers import SegGptForImageSegmentation

        self.directory = resolve_checkpoint(spec, "SegGPT")
        self.model: Any = load_model(SegGptForImageSegmentation, self.directory, "SegGPT")
        height, width = self.model.config.image_size
        self.size = (int(height) // 2, int(width))  # the prompt on top, the target below
        self.mean, self.std = normalization(self.directory, IMAGENET_MEAN, IMAGENET_STD)

    def _image(self, image: np.ndarray) -> torch.Tensor:
        return (resize(to_tensor(image), self.size) - self.mean) / self.std

    def _painting(self, mask: np.ndarray, ids: list[int], colours: torch.Tensor) -> torch.Tensor:
        lookup = {i: k for k, i in enumerate(ids)}
        index = np.vectorize(lambda v: lookup.get(int(v), 0))(mask) if mask.size else mask
        rgb = colours[torch.from_numpy(np.asarray(index, dtype=np.int64))].permute(2, 0, 1)[None] / 255.0
        rgb = F.interpolate(rgb, size=self.size, mode="nearest")
        return (rgb - self.mean) / self.std

    @torch.inference_mode()
    def incontext(
        self,
        examples: Sequence[tuple[ImageLike, np.ndarray | str | Path]],
        targets: Sequence[ImageLike],
        level: str = "category",
        ignore_index: int | None = None,
    ) -> list[np.ndarray]:
        """One label map per target with the examples' ids (0 = background), at the target's size."""
        if not examples:
            raise InputError("give at least one example (image and mask)")
        if level not in ("category", "instance"):
            raise InputError(f"level must be 'category' or 'instance', got {level!r}")
        images, masks = [], []
        for n, (image, mask) in enumerate(examples, start=1):
            array = load_image(image)
            m = np.asarray(mask) if isinstance(mask, np.ndarray) else load_mask(mask, f"example mask {n}")
            check_mask_matches(m, array, f"example mask {n}")
            if ignore_index is not None:
                m = np.where(m == ignore_index, BACKGROUND, m)
            images.append(array)
            masks.append(m)
        ids = sorted({int(v) for m in masks for v in np.unique(m)} | {BACKGROUND})
        if len(ids) < 2:
            raise InputError("the example masks mark nothing: every pixel is background (0)")
        colours = palette(len(ids) - 1)
        prompts = torch.cat([self._image(a) for a in images])
        paintings = torch.cat([self._painting(m, ids, colours) for m in masks])
        embedding_type = "semantic" if level == "category" else "instance"
        out = []
        for target in targets:
            array = load_image(target)
            x = self._image(array).expand(len(images), -1, -1, -1)
            pred = self.model(
                pixel_values=x,
                prompt_pixel_values=prompts,
                prompt_masks=paintings,
                feature_ensemble=len(images) > 1,
                embedding_type=embedding_type,
            ).pred_masks
            painted = pred[:, :, pred.shape[2] // 2 :, :].mean(0, keepdim=True)  # the target half
            painted = (painted * self.std + self.mean).clamp(0, 1) * 255
            painted = F.interpolate(painted, size=array.shape[:2], mode="bilinear", align_corners=False)[0]
            distance = ((painted.permute(1, 2, 0)[:, :, None, :] - colours[None, None]) ** 2).sum(-1)
            label = np.asarray(ids)[distance.argmin(-1).numpy()]
            out.append(label.astype(label_dtype(max(ids))))
        return out

    def video(
        self, frames: Sequence[ImageLike], first_mask: np.ndarray, context: int = 3, level: str = "instance"
    ) -> Iterator[np.ndarray]:
        """Follow the first mask's objects through the frames (SegGPT's video protocol): each frame is painted
        from the first frame's mask plus the ``context`` previous frames with their predicted masks as
        extra examples (context ensemble). Yields one label map per frame, the first is ``first_mask``."""
        if not frames:
            raise InputError("no frames")
        first = load_image(frames[0])
        check_mask_matches(np.asarray(first_mask), first, "first mask")
        yield np.asarray(first_mask)
        history: list[tuple[np.ndarray, np.ndarray]] = []
        for frame in frames[1:]:
            array = load_image(frame)
            if array.shape != first.shape:
                raise InputError(
                    f"frames differ in size: {array.shape[1]}x{array.shape[0]} vs the first frame's "
                    f"{first.shape[1]}x{first.shape[0]}"
                )
            recent = history[-context:] if context > 0 else []
            (label,) = self.incontext([(first, np.asarray(first_mask)), *recent], [array], level=level)
            history.append((array, label))
            yield label

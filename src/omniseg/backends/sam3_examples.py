"""In-context segmentation with SAM 3 through its exemplar prompts, the examples coming from OTHER
images (facebookresearch/sam3 #183, #248, #265, #426): ``omniseg incontext --model sam3:PATH``.

Each example id mask (0 = background) gives, per id, one SAM 3 prompt: the boxes around the id's
connected parts (its objects) as positive box exemplars, encoded by SAM 3's geometry encoder on the
EXAMPLE image (backends.sam3.Sam3Backend.box_prompt). Those tokens no longer depend on the example
image, and every target is decoded against them: one vision encoding per example image and per
target, all ids' prompts decoded together. This is SAM 3's exemplar prompt path only; its features
are not pooled into prototypes (that is omniseg's own in-context task on Regions).

A target pixel takes the id of the highest-scoring instance covering it. ``level="instance"`` keeps
each id's single best instance; ``"category"`` every instance scoring above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from omniseg.backends.sam3 import ImageEncoding, Prompt, Sam3Backend
from omniseg.concepts import Instances
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.tasks.common import as_id_mask, check_mask_matches, label_dtype

MAX_BOXES = 8  # exemplar boxes per id and example: its largest parts


def part_boxes(mask: np.ndarray, limit: int = MAX_BOXES) -> list[tuple[float, float, float, float]]:
    """Pixel xyxy boxes (x1, y1 exclusive) of the 8-connected parts of a binary mask, largest first."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    slices = ndimage.find_objects(labels)
    order = np.argsort(-sizes, kind="stable")[:limit]
    return [
        (float(slices[i][1].start), float(slices[i][0].start), float(slices[i][1].stop), float(slices[i][0].stop))
        for i in order
    ]


def instances_to_ids(found: Instances, ids: Sequence[int], level: str) -> np.ndarray:
    """Id map [H,W]: each pixel the id of the highest-scoring instance covering it (0: none); with
    level="instance" only each id's best instance counts."""
    keep = torch.ones(len(found), dtype=torch.bool)
    if level == "instance" and len(found):
        keep = torch.zeros(len(found), dtype=torch.bool)
        for label in found.labels.unique():
            members = (found.labels == label).nonzero().flatten()
            keep[members[found.scores[members].argmax()]] = True
    masks, scores, labels = found.masks[keep].cpu(), found.scores[keep].cpu(), found.labels[keep].cpu()
    out = np.zeros(found.image_size, dtype=label_dtype(max(ids, default=0)))
    if len(masks) == 0:
        return out
    weight = torch.where(masks, scores[:, None, None].float() + 1, torch.zeros(()))
    best, index = weight.max(0)
    lookup = torch.tensor(list(ids), dtype=torch.long)[labels]
    return torch.where(best > 0, lookup[index], 0).numpy().astype(out.dtype)


class Sam3Examples:
    """SAM 3 as an in-context source (omniseg.source.ExampleSource); see the module docstring."""

    def __init__(self, backend: Sam3Backend, threshold: float | None = None) -> None:
        self.backend = backend
        self.threshold = threshold  # None: the backend's (transformers' post-processing default)
        self.name = f"{backend.name} (exemplars)"

    def prompts(
        self, examples: Sequence[tuple[ImageLike, np.ndarray | str]], ignore_index: int | None = None
    ) -> tuple[list[Prompt], list[int], list[int]]:
        """(prompts, the id each prompt answers, the ids in ascending order)."""
        if not examples:
            raise InputError("give at least one example (image and mask)")
        prompts: list[Prompt] = []
        owners: list[int] = []
        for n, (image, mask) in enumerate(examples, start=1):
            array = load_image(image)
            ids_mask = as_id_mask(mask, f"example mask {n}", ignore_index)
            check_mask_matches(ids_mask, array, f"example mask {n}")
            encoding: ImageEncoding | None = None
            for value in np.unique(ids_mask):
                if value == 0 or (ignore_index is not None and value == ignore_index):
                    continue
                encoding = encoding or self.backend.encode_image(array)
                prompts.append(self.backend.box_prompt(encoding, part_boxes(ids_mask == value)))
                owners.append(int(value))
        if not prompts:
            raise InputError("the example masks mark nothing: every pixel is background (0)")
        return prompts, owners, sorted(set(owners))

    def incontext(
        self,
        examples: Sequence[tuple[ImageLike, np.ndarray | str]],
        targets: Sequence[ImageLike],
        level: str = "category",
        ignore_index: int | None = None,
    ) -> list[np.ndarray]:
        """One id map per target holding the examples' ids (0 = background), at the target's size."""
        if level not in ("category", "instance"):
            raise InputError(f"level must be 'category' or 'instance', got {level!r}")
        prompts, owners, ids = self.prompts(examples, ignore_index)
        labels = [ids.index(owner) for owner in owners]
        out = []
        for target in targets:
            found = self.backend.run(self.backend.encode_image(target), prompts, labels, self.threshold)
            out.append(instances_to_ids(found, ids, level))
        return out

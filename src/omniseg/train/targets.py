"""Training targets: the ground-truth segments a batch's masks are matched against (per task)."""

from __future__ import annotations

import torch

from omniseg.data.segments import ground_truth_segments
from omniseg.data.uniform import IGNORE
from omniseg.train.data import TrainSource


def target_segments(
    src: TrainSource, label_map: torch.Tensor, instances: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground-truth segments of one crop for the source's task.

    label_map [h, w] class ids (pseudo: segment ids), instances [h, w] or None. Returns binary masks
    [M, P] over the P = h*w pixels, their class ids [M] (-1 = class-agnostic) and the valid mask [P].
    """
    labels = label_map.reshape(-1)
    if src.task == "caption":
        return labels.new_zeros(0, labels.numel()).float(), labels.new_zeros(0), labels.new_zeros(labels.shape).float()
    if src.task == "pseudo":
        valid = (labels != IGNORE) & (labels > 0)
        ids = torch.unique(labels[valid])
        return (labels.unsqueeze(0) == ids.unsqueeze(1)).float(), torch.full_like(ids, -1), valid.float()
    valid = labels != IGNORE
    if src.task in ("instance", "panoptic"):
        assert instances is not None
        id_map, segments = ground_truth_segments(label_map.numpy(), instances.numpy(), src.roles)
        keep = [g for g in segments if not g.iscrowd and (src.task == "panoptic" or src.roles.isthing[g.category_id])]
        ids = torch.from_numpy(id_map).reshape(-1)
        empty = labels.new_zeros(0, labels.numel()).float()
        masks = torch.stack([ids == g.id for g in keep]).float() if keep else empty
        return masks, torch.tensor([g.category_id for g in keep], dtype=torch.long), valid.float()
    present = torch.unique(labels[valid])
    if src.task == "binary":
        present = present[~torch.tensor(src.roles.void, dtype=torch.bool)[present.clamp(max=len(src.classes) - 1)]]
    return (labels.unsqueeze(0) == present.unsqueeze(1)).float(), present, valid.float()

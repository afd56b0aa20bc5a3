"""Class-agnostic proposal recall (seeds/003 Table 1): `omniseg eval DATASET --metric recall`.

Ground truth: the dataset's panoptic segments (data/segments.py: one per object with instances/,
one per stuff class, void and crowd excluded). Each image's top-N proposals are matched to its
segments one-to-one, greedily by IoU (the highest-IoU pair first); recall at t is the fraction of
all ground-truth segments whose match has IoU >= t. Everything is scored at a working resolution
(longer side ``work_size``, ground truth resized nearest), the same for every proposal source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from omniseg.data.segments import class_roles, ground_truth_segments, instance_path, read_instance_map
from omniseg.data.uniform import UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError

THRESHOLDS = (0.5, 0.7, 0.9)
Proposer = Callable[[np.ndarray, int], np.ndarray]  # (RGB image, N) -> masks [P<=N, H, W] bool, ranked


def greedy_match_ious(ious: np.ndarray) -> np.ndarray:
    """One-to-one greedy matching on an IoU matrix [P, G]: the IoU each ground truth got (0 if none)."""
    best = np.zeros(ious.shape[1])
    if ious.size == 0:
        return best
    work = ious.copy()
    for _ in range(min(work.shape)):
        p, g = np.unravel_index(int(np.argmax(work)), work.shape)
        if work[p, g] <= 0:
            break
        best[g] = work[p, g]
        work[p, :] = -1
        work[:, g] = -1
    return best


def mask_ious(proposals: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU [P, G] of boolean masks proposals [P, H, W] and gt [G, H, W]."""
    p = torch.from_numpy(proposals.reshape(len(proposals), -1)).float()
    g = torch.from_numpy(gt.reshape(len(gt), -1)).float()
    inter = p @ g.T
    union = p.sum(1, keepdim=True) + g.sum(1).unsqueeze(0) - inter
    return (inter / union.clamp(min=1)).numpy()


MODEL_THRESHOLDS = (0.5, 0.3, 0.7)


def model_proposer(segmenter) -> Proposer:
    """The native model's N soft masks turned into ranked binary proposals: first each region's
    share of the argmax partition (pixels where it is the strongest mask), then each mask cut at
    0.5, 0.3 and 0.7; within a group by objectness; empty and duplicate (IoU > 0.95) masks dropped."""

    def propose(image: np.ndarray, n: int) -> np.ndarray:
        regions = segmenter.regions(image)
        if len(regions) == 0:
            raise InputError("this model has no mask proposals (per-pixel arch): recall needs a region model")
        order = torch.argsort(regions.scores, descending=True)
        masks = F.interpolate(regions.masks[order][None].float(), size=image.shape[:2], mode="bilinear")[0]
        owner = masks.argmax(0)
        groups = [(owner == torch.arange(len(masks)).view(-1, 1, 1)) & (masks > 0.2)]
        groups += [masks > t for t in MODEL_THRESHOLDS]
        return dedupe(torch.cat(groups).numpy(), n)

    return propose


def dedupe(masks: np.ndarray, n: int, max_iou: float = 0.95) -> np.ndarray:
    """The first n non-empty masks of the ranked [P, H, W] that overlap no earlier kept one above max_iou."""
    flat = torch.from_numpy(masks.reshape(len(masks), -1))
    kept: list[int] = []
    for i in range(len(masks)):
        if len(kept) >= n:
            break
        if not flat[i].any():
            continue
        if kept:
            k = flat[kept]
            ious = (k & flat[i]).sum(1) / (k | flat[i]).sum(1).clamp(min=1)
            if float(ious.max()) > max_iou:
                continue
        kept.append(i)
    return masks[kept]


def superpixel_proposer(seed: int = 0) -> Proposer:
    from omniseg.backends.superpixels import superpixel_proposals

    return lambda image, n: superpixel_proposals(image, n, seed=seed)


def _resize(image: np.ndarray, ids: np.ndarray, work_size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = ids.shape
    scale = min(1.0, work_size / max(h, w))
    if scale == 1.0:
        return image, ids
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    idm = np.asarray(Image.fromarray(ids.astype(np.int32), "I").resize(size, Image.Resampling.NEAREST))
    return im, idm.astype(np.int64)


def evaluate_recall(
    proposer: Proposer,
    dataset_dir: str | Path,
    source: str,
    proposals: int = 100,
    work_size: int = 320,
    split: str = "all",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    dataset = UniformDataset(dataset_dir)
    samples = dataset.split(split, val_fraction, split_seed)[: limit if limit is not None else None]
    if not samples:
        raise InputError(f"no labelled images to evaluate in {dataset_dir} (split {split})")
    roles = class_roles(dataset)
    matched: list[np.ndarray] = []
    n_props: list[int] = []
    start = time.perf_counter()
    for sample in tqdm(samples, desc=f"recall {dataset.name}", disable=not progress, dynamic_ncols=True):
        image, classes = read_rgb(sample.image_path), read_mask(sample.mask_path)
        ipath = instance_path(dataset, sample)
        id_map, segments = ground_truth_segments(classes, read_instance_map(ipath) if ipath else None, roles)
        image, id_map = _resize(image, id_map, work_size)
        gt_ids = [s.id for s in segments if not s.iscrowd and (id_map == s.id).any()]
        if not gt_ids:
            continue
        gt = np.stack([id_map == i for i in gt_ids])
        props = proposer(image, proposals)[:proposals]
        n_props.append(len(props))
        matched.append(greedy_match_ious(mask_ious(props, gt)) if len(props) else np.zeros(len(gt_ids)))
    best = np.concatenate(matched) if matched else np.zeros(0)
    return {
        "dataset": dataset.name,
        "metric": "class-agnostic mask recall (one-to-one greedy matching)",
        "proposals_from": source,
        "proposals": proposals,
        "mean_proposals_per_image": round(float(np.mean(n_props)), 1) if n_props else 0.0,
        **{f"recall@{t}": round(float((best >= t).mean()) * 100, 2) if len(best) else None for t in THRESHOLDS},
        "gt_segments": int(len(best)),
        "images": len(matched),
        "work_size": work_size,
        "split": split if split == "all" else f"{split} (val_fraction={val_fraction}, seed={split_seed})",
        "seconds": round(time.perf_counter() - start, 2),
    }


def format_recall(report: dict) -> str:
    parts = "  ".join(f"R@{t}: {report[f'recall@{t}']}" for t in THRESHOLDS)
    return (
        f"{report['dataset']} ({report['proposals_from']}, top {report['proposals']}, "
        f"{report['mean_proposals_per_image']} per image): {parts}  "
        f"({report['gt_segments']} segments, {report['images']} images, {report['seconds']:.1f} s)"
    )

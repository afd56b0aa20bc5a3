"""Class-agnostic proposal recall (OpenSeg Table 1): `omniseg eval DATASET --metric recall`.

Ground truth: the dataset's panoptic segments (data/segments.py: one per object with instances/,
one per stuff class, void and crowd excluded). Each image's top-N proposals are matched to its
segments one-to-one, greedily by IoU (the highest-IoU pair first); recall at t is the fraction of
all ground-truth segments whose match has IoU >= t. Everything is scored at a working resolution
(longer side ``work_size``, ground truth resized nearest), the same for every proposal source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from omniseg.backends.superpixels import feature_hierarchy_masks, superpixel_proposals
from omniseg.data.dataset import Dataset, open_dataset
from omniseg.data.segments import class_roles, ground_truth_segments, instance_path, read_instance_map
from omniseg.data.uniform import Sample, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.eval.evaluator import inference_on_dataset, split_label
from omniseg.masks import dedupe

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
MIN_COMPONENT = 0.002  # connected components smaller than this share of the image are not proposed


def model_proposer(segmenter, feature_hierarchy: bool = True) -> Proposer:
    """The native model's regions turned into ranked binary proposals, in groups:

    1. each region's share of the argmax partition (pixels where it is the strongest mask, > 0.2);
    2. the connected components of those shares: a model trained on semantic segments gives one
       mask per class, and separate objects of a class are separate components;
    3. each mask cut at 0.5, 0.3 and 0.7 (within a group by objectness);
    4. (feature_hierarchy) a hierarchy on the model's own pixel features: SLIC over the unit
       feature vectors, then adjacent segments merged by feature cosine (selective search's merging
       with learned features instead of colour, as COB uses learned boundaries), top merges first.
    Empty and duplicate (IoU > 0.95) masks are dropped."""

    def propose(image: np.ndarray, n: int) -> np.ndarray:
        regions = segmenter.regions(image)
        if len(regions) == 0:
            raise InputError("this model has no mask proposals (per-pixel arch): recall needs a region model")
        size = image.shape[:2]
        order = torch.argsort(regions.scores, descending=True)
        masks = F.interpolate(regions.masks[order][None].float(), size=size, mode="bilinear")[0]
        owner = masks.argmax(0)
        shares = ((owner == torch.arange(len(masks)).view(-1, 1, 1)) & (masks > 0.2)).numpy()
        groups = [shares, connected_components(shares, MIN_COMPONENT)]
        groups += [(masks > t).numpy() for t in MODEL_THRESHOLDS]
        if feature_hierarchy and regions.pixel_features is not None:
            groups.append(feature_hierarchy_masks(regions.pixel_features, size))
        return dedupe(np.concatenate([g for g in groups if len(g)]), n)

    return propose


def connected_components(masks: np.ndarray, min_share: float) -> np.ndarray:
    """[P, H, W] bool -> the connected components (8-connected) of the masks that have more than one,
    largest first within a mask, components below ``min_share`` of the image dropped."""
    from scipy import ndimage

    out = []
    min_pixels = min_share * masks.shape[1] * masks.shape[2]
    for mask in masks:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        if count < 2:
            continue
        sizes = np.bincount(labels.reshape(-1))[1:]
        out += [labels == i + 1 for i in np.argsort(-sizes) if sizes[i] > min_pixels]
    return np.stack(out) if out else np.zeros((0, *masks.shape[1:]), bool)


def superpixel_proposer(seed: int = 0) -> Proposer:
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


@dataclass(frozen=True)
class RecallItem:
    """One image at the working resolution with its ground-truth segments (non-crowd, present)."""

    image: np.ndarray
    gt: np.ndarray  # bool [S, h, w]


def recall_items(dataset: Dataset, samples: Sequence[Sample], work_size: int) -> Iterator[RecallItem]:
    """The samples with at least one ground-truth segment, resized to ``work_size`` (longer side)."""
    roles = class_roles(dataset)
    for sample in samples:
        image, classes = read_rgb(sample.image_path), read_mask(sample.truth_path)
        ipath = instance_path(dataset, sample)
        id_map, segments = ground_truth_segments(classes, read_instance_map(ipath) if ipath else None, roles)
        image, id_map = _resize(image, id_map, work_size)
        gt_ids = [s.id for s in segments if not s.iscrowd and (id_map == s.id).any()]
        if gt_ids:
            yield RecallItem(image, np.stack([id_map == i for i in gt_ids]))


class RecallEvaluator:
    """Class-agnostic recall at IoU 0.5/0.7/0.9: each image's top ``proposals`` masks matched
    one-to-one (greedy by IoU) to its ground-truth segments."""

    def __init__(self, proposals: int) -> None:
        self.proposals = proposals
        self.reset()

    def reset(self) -> None:
        self.matched: list[np.ndarray] = []
        self.n_props: list[int] = []

    def process(self, item: RecallItem, proposed: np.ndarray) -> None:
        props = proposed[: self.proposals]
        self.n_props.append(len(props))
        self.matched.append(greedy_match_ious(mask_ious(props, item.gt)) if len(props) else np.zeros(len(item.gt)))

    def evaluate(self) -> dict:
        best = np.concatenate(self.matched) if self.matched else np.zeros(0)
        return {
            "metric": "class-agnostic mask recall (one-to-one greedy matching)",
            "proposals": self.proposals,
            "mean_proposals_per_image": round(float(np.mean(self.n_props)), 1) if self.n_props else 0.0,
            **{f"recall@{t}": round(float((best >= t).mean()) * 100, 2) if len(best) else None for t in THRESHOLDS},
            "gt_segments": int(len(best)),
            "images": len(self.matched),
        }


def evaluate_recall(
    proposer: Proposer,
    dataset_dir: str | Path | UniformDataset,
    source: str,
    proposals: int = 100,
    work_size: int = 320,
    split: str = "all",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    dataset = open_dataset(dataset_dir)
    samples = dataset.eval_samples(split, val_fraction, split_seed, limit)
    report = inference_on_dataset(
        lambda item: proposer(item.image, proposals),
        recall_items(dataset, samples, work_size),
        RecallEvaluator(proposals),
        desc=f"recall {dataset.name}",
        progress=progress,
    )
    return {
        "dataset": dataset.name,
        "proposals_from": source,
        **report,
        "work_size": work_size,
        "split": split_label(split, val_fraction, split_seed),
    }


def format_recall(report: dict) -> str:
    parts = "  ".join(f"R@{t}: {report[f'recall@{t}']}" for t in THRESHOLDS)
    return (
        f"{report['dataset']} ({report['proposals_from']}, top {report['proposals']}, "
        f"{report['mean_proposals_per_image']} per image): {parts}  "
        f"({report['gt_segments']} segments, {report['images']} images, {report['seconds']:.1f} s)"
    )

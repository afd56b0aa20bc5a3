"""Class-agnostic mask proposals from a multi-scale superpixel hierarchy (MCG/COB stand-in).

Base segmentations: Felzenszwalb-Huttenlocher graph segmentation at several scales and SLIC at two
granularities (scikit-image). On each Felzenszwalb level, adjacent regions are merged greedily by
similarity (colour histogram + size + fill, as selective search does), and every merge is a
proposal: a hierarchy from superpixels to the whole image. Ranking follows selective search
(Uijlings et al.): a region's priority is its position in its hierarchy (1 = the last merge)
times a uniform random number (fixed seed); duplicates (IoU > 0.95) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from omniseg.masks import dedupe

FELZENSZWALB_SCALES = (100, 300, 1000)
SLIC_SEGMENTS = (32, 128)
HIST_BINS = 16
FEATURE_SEGMENTS = 48  # base segments of the feature hierarchy (SLIC on the model's pixel features)


def _histograms(image: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """L1-normalised colour histograms [n, 3 * HIST_BINS] of each label."""
    q = (image.astype(np.int64) * HIST_BINS) // 256  # [H, W, 3]
    flat = labels.reshape(-1)
    hist = np.zeros((n, 3 * HIST_BINS))
    for c in range(3):
        np.add.at(hist, (flat, c * HIST_BINS + q[..., c].reshape(-1)), 1.0)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def _adjacent_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return pairs


def _boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """[n, 4] (y0, x0, y1, x1) of each label (zeros for absent labels)."""
    rows, cols = np.indices(labels.shape)
    flat, ys, xs = labels.reshape(-1), rows.reshape(-1), cols.reshape(-1)
    boxes = np.zeros((n, 4))
    present = np.bincount(flat, minlength=n) > 0
    boxes[:, 0] = np.where(present, np.full(n, np.inf), 0)
    boxes[:, 1] = boxes[:, 0]
    np.minimum.at(boxes[:, 0], flat, ys)
    np.minimum.at(boxes[:, 1], flat, xs)
    np.maximum.at(boxes[:, 2], flat, ys)
    np.maximum.at(boxes[:, 3], flat, xs)
    return boxes


Similarity = Callable[[np.ndarray, np.ndarray], float]  # (descriptor a, descriptor b) -> affinity


def merge_hierarchy(labels: np.ndarray, descriptors: np.ndarray, affinity: Similarity) -> list[frozenset[int]]:
    """Greedy merging of adjacent regions of ``labels`` (ids 0..n-1), most similar pair first; returns
    the merged regions (sets of base ids) in merge order, the whole image (or component) last.

    A pair's similarity is ``affinity`` of the two regions' descriptors (a merged region's descriptor
    is the size-weighted mean of its parts') plus selective search's size and fill terms, which
    make small regions and regions filling each other's box merge early (Uijlings et al.)."""
    n = int(labels.max()) + 1
    size_total = labels.size
    desc = list(np.asarray(descriptors, dtype=np.float64))
    size = list(np.bincount(labels.reshape(-1), minlength=n).astype(float))
    boxes = [list(b) for b in _boxes(labels, n)]
    members: list[frozenset[int]] = [frozenset([i]) for i in range(n)]
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in _adjacent_pairs(labels):
        neighbours[a].add(b)
        neighbours[b].add(a)

    def union_box(a: int, b: int) -> list[float]:
        return [min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1])] + [
            max(boxes[a][2], boxes[b][2]),
            max(boxes[a][3], boxes[b][3]),
        ]

    def similarity(a: int, b: int) -> float:
        small = 1 - (size[a] + size[b]) / size_total
        box = union_box(a, b)
        box_area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        fill = 1 - (box_area - size[a] - size[b]) / size_total
        return affinity(desc[a], desc[b]) + small + fill

    sims = {(a, b): similarity(a, b) for a in neighbours for b in neighbours[a] if a < b}
    merged: list[frozenset[int]] = []
    while sims:
        a, b = max(sims, key=sims.get)  # type: ignore[arg-type]
        t = len(desc)
        desc.append((desc[a] * size[a] + desc[b] * size[b]) / max(size[a] + size[b], 1.0))
        size.append(size[a] + size[b])
        boxes.append(union_box(a, b))
        members.append(members[a] | members[b])
        merged.append(members[t])
        nb = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        sims = {k: v for k, v in sims.items() if a not in k and b not in k}
        neighbours[t] = nb
        for c in nb:
            neighbours[c] -= {a, b}
            neighbours[c].add(t)
            sims[(c, t)] = similarity(c, t)
    return merged


def colour_affinity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection of two L1-normalised colour histograms (3 channels: in 0..1)."""
    return float(np.minimum(a, b).sum()) / 3


def hierarchy(image: np.ndarray, labels: np.ndarray) -> list[frozenset[int]]:
    """Selective search's colour hierarchy over the superpixels ``labels`` of ``image``."""
    n = int(labels.max()) + 1
    return merge_hierarchy(labels, _histograms(image, labels, n), colour_affinity)


def hierarchy_levels(labels: np.ndarray, merged: list[frozenset[int]]) -> list[np.ndarray]:
    """The masks of a hierarchy from the top: the last merge first, the base regions last."""
    levels = list(reversed(merged)) + [frozenset([i]) for i in range(int(labels.max()) + 1)]
    return [np.isin(labels, list(region)) for region in levels]


def superpixel_proposals(image: np.ndarray, max_proposals: int = 100, seed: int = 0) -> np.ndarray:
    """Ranked class-agnostic masks [P, H, W] (bool) for an RGB uint8 image [H, W, 3]."""
    from skimage.segmentation import felzenszwalb, slic

    rng = np.random.default_rng(seed)
    candidates: list[tuple[float, np.ndarray]] = []  # (priority, mask); lower = earlier
    for scale in FELZENSZWALB_SCALES:
        labels = felzenszwalb(image, scale=scale, sigma=0.8, min_size=max(20, scale // 5))
        # position in the hierarchy: the last merge (whole image) is 1, base superpixels come last
        for pos, mask in enumerate(hierarchy_levels(labels, hierarchy(image, labels)), start=1):
            candidates.append((pos * rng.random(), mask))
    for n_segments in SLIC_SEGMENTS:
        labels = slic(image, n_segments=n_segments, compactness=10, start_label=0)
        for i in range(int(labels.max()) + 1):
            candidates.append((n_segments * rng.random(), labels == i))
    candidates.sort(key=lambda c: c[0])
    return dedupe(np.stack([m for _, m in candidates]), max_proposals)


def feature_hierarchy_masks(pixel_features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Masks [P, H, W] of a merge hierarchy over the model's unit pixel features [D, h, w], top first."""
    from skimage.segmentation import slic

    features = F.normalize(pixel_features.float(), dim=0).permute(1, 2, 0).numpy()  # [h, w, D]
    labels = slic(
        features,
        n_segments=FEATURE_SEGMENTS,
        compactness=0.1,  # features are unit vectors: distances in 0..2, so a small spatial weight
        channel_axis=-1,
        convert2lab=False,
        start_label=0,
    )
    n = int(labels.max()) + 1
    sums = np.zeros((n, features.shape[-1]))
    np.add.at(sums, labels.reshape(-1), features.reshape(-1, features.shape[-1]))
    means = sums / np.maximum(np.bincount(labels.reshape(-1), minlength=n), 1)[:, None]
    levels = hierarchy_levels(labels, merge_hierarchy(labels, means, _cosine))
    small = torch.from_numpy(np.stack(levels)).float()[None]
    return F.interpolate(small, size=size, mode="nearest")[0].bool().numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))

"""Class-agnostic mask proposals from a multi-scale superpixel hierarchy (MCG/COB stand-in).

Base segmentations: Felzenszwalb-Huttenlocher graph segmentation at several scales and SLIC at two
granularities (scikit-image). On each Felzenszwalb level, adjacent regions are merged greedily by
similarity (colour histogram + size + fill, as selective search does), and every merge is a
proposal: a hierarchy from superpixels to the whole image. Ranking follows selective search
(Uijlings et al.): a region's priority is its position in its hierarchy (1 = the last merge)
times a uniform random number (fixed seed); duplicates (IoU > 0.95) are dropped.
"""

from __future__ import annotations

import numpy as np

FELZENSZWALB_SCALES = (100, 300, 1000)
SLIC_SEGMENTS = (32, 128)
HIST_BINS = 16


def _histograms(image: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """L1-normalised colour histograms [n, 3 * HIST_BINS] of each label."""
    q = (image.astype(np.int64) * HIST_BINS) // 256  # [H, W, 3]
    flat = labels.reshape(-1)
    hist = np.zeros((n, 3 * HIST_BINS))
    for c in range(3):
        np.add.at(hist, (flat, c * HIST_BINS + q[..., c].reshape(-1)), 1.0)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def _adjacent_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return pairs


def hierarchy(image: np.ndarray, labels: np.ndarray) -> list[frozenset[int]]:
    """Greedy merging of adjacent regions of ``labels`` (ids 0..n-1); returns the merged regions
    (sets of base ids) in merge order, the whole image last."""
    n = int(labels.max()) + 1
    size_total = labels.size
    hist = list(_histograms(image, labels, n))
    size = list(np.bincount(labels.reshape(-1), minlength=n).astype(float))
    ys, xs = np.indices(labels.shape)
    flat = labels.reshape(-1)
    boxes = [
        [
            float(ys.reshape(-1)[flat == i].min()),
            float(xs.reshape(-1)[flat == i].min()),
            float(ys.reshape(-1)[flat == i].max()),
            float(xs.reshape(-1)[flat == i].max()),
        ]
        if size[i]
        else [0.0, 0.0, 0.0, 0.0]
        for i in range(n)
    ]
    members: list[frozenset[int]] = [frozenset([i]) for i in range(n)]
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in _adjacent_pairs(labels):
        neighbours[a].add(b)
        neighbours[b].add(a)

    def similarity(a: int, b: int) -> float:
        colour = float(np.minimum(hist[a], hist[b]).sum()) / 3
        small = 1 - (size[a] + size[b]) / size_total
        box = [min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1])]
        box += [max(boxes[a][2], boxes[b][2]), max(boxes[a][3], boxes[b][3])]
        box_area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        fill = 1 - (box_area - size[a] - size[b]) / size_total
        return colour + small + fill

    sims = {(a, b): similarity(a, b) for a in neighbours for b in neighbours[a] if a < b}
    merged: list[frozenset[int]] = []
    while sims:
        a, b = max(sims, key=sims.get)  # type: ignore[arg-type]
        t = len(hist)
        hist.append((hist[a] * size[a] + hist[b] * size[b]) / (size[a] + size[b]))
        size.append(size[a] + size[b])
        boxes.append(
            [min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1])]
            + [max(boxes[a][2], boxes[b][2]), max(boxes[a][3], boxes[b][3])]
        )
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


def superpixel_proposals(image: np.ndarray, max_proposals: int = 100, seed: int = 0) -> np.ndarray:
    """Ranked class-agnostic masks [P, H, W] (bool) for an RGB uint8 image [H, W, 3]."""
    from skimage.segmentation import felzenszwalb, slic

    rng = np.random.default_rng(seed)
    candidates: list[tuple[float, np.ndarray]] = []  # (priority, mask); lower = earlier
    for scale in FELZENSZWALB_SCALES:
        labels = felzenszwalb(image, scale=scale, sigma=0.8, min_size=max(20, scale // 5))
        merged = hierarchy(image, labels)
        # position in the hierarchy: the last merge (whole image) is 1, base superpixels come last
        levels = list(reversed(merged)) + [frozenset([i]) for i in range(int(labels.max()) + 1)]
        for pos, region in enumerate(levels, start=1):
            candidates.append((pos * rng.random(), np.isin(labels, list(region))))
    for n_segments in SLIC_SEGMENTS:
        labels = slic(image, n_segments=n_segments, compactness=10, start_label=0)
        for i in range(int(labels.max()) + 1):
            candidates.append((n_segments * rng.random(), labels == i))
    from omniseg.eval.proposals import dedupe

    candidates.sort(key=lambda c: c[0])
    return dedupe(np.stack([m for _, m in candidates]), max_proposals)

"""`omniseg eval --task video`: J&F on the video layout (DAVIS semi-supervised protocol).

Layout: images/<seq>/<frame>.jpg, masks/<seq>/<frame>.png (object ids, 0 = background, 255 = void).
Every sequence is propagated from its first frame's ground truth. As in the DAVIS toolkit
(davis2017-evaluation): the objects are the ids of the first frame's mask; the first and the last
frame are not scored; J is the region Jaccard and F the boundary F-measure with boundaries matched
within ceil(0.008 * image diagonal) pixels; per object, J and F are averaged over its frames, then
over all objects of all sequences; J&F is their mean. Void pixels (255) count for neither.

A source with its own video memory (omniseg.source.VideoSource: SAM 2 video) propagates the first
mask itself. With ``classes``, a concept tracker (ConceptTrackingSource: SAM 3 video) is given no
mask, only the names: its objects are matched one-to-one to the ground truth's by the largest total
IoU over the sequence (the DAVIS unsupervised protocol's global assignment), unmatched ones are
background, and the matched sequence is scored as above.

The baseline "copy the first mask" (every frame predicted as the first frame's ground truth) is
scored with the same code, so the gain over it is the part due to tracking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from omniseg.data.uniform import IMAGE_EXTS, read_mask
from omniseg.errors import InputError
from omniseg.eval.evaluator import inference_on_dataset
from omniseg.segmenter import Segmenter
from omniseg.source import ConceptTrackingSource, RegionSource, VideoSource
from omniseg.tasks.common import image_regions
from omniseg.tasks.video import VideoConfig, propagate_regions

VOID = 255
BOUND_TH = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """|P & G| / |P | G| over non-void pixels; 1 when both are empty (DAVIS db_eval_iou)."""
    keep = ~void if void is not None else np.ones(gt.shape, bool)
    inter = np.logical_and(pred, gt)[keep].sum()
    union = np.logical_or(pred, gt)[keep].sum()
    return 1.0 if union == 0 else float(inter / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary of a binary mask, offset half a pixel towards the origin (Martin et al.,
    as the DAVIS toolkit computes it: a pixel differing from its east, south or south-east neighbour)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """Binary disk x^2 + y^2 <= r^2 (skimage.morphology.disk)."""
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def boundary_f(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure (DAVIS f_measure): precision and recall of boundary pixels matched within
    a tolerance of ``bound_th`` * diagonal pixels (or ``bound_th`` pixels when >= 1)."""
    keep = ~void if void is not None else np.ones(gt.shape, bool)
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    fg_b = seg2bmap(pred.astype(bool) & keep)
    gt_b = seg2bmap(gt.astype(bool) & keep)
    structure = disk(int(bound_pix))
    fg_dil = ndimage.binary_dilation(fg_b, structure=structure)
    gt_dil = ndimage.binary_dilation(gt_b, structure=structure)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float((fg_b & gt_dil).sum()) / n_fg
        recall = float((gt_b & fg_dil).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score_sequence(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]
) -> dict[int, tuple[list[float], list[float]]]:
    """Per object of the first ground truth: J and F of every scored frame (first and last excluded)."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} frames")
    objects = [int(i) for i in np.unique(gts[0]) if i not in (0, VOID)]
    scored = range(1, len(gts) - 1) if len(gts) > 2 else range(len(gts))
    out: dict[int, tuple[list[float], list[float]]] = {k: ([], []) for k in objects}
    for t in scored:
        void = gts[t] == VOID
        for k in objects:
            p, g = preds[t] == k, gts[t] == k
            out[k][0].append(jaccard(p, g, void))
            out[k][1].append(boundary_f(p, g, void))
    return out


def summarize(per_object: dict[str, tuple[list[float], list[float]]]) -> dict:
    """DAVIS "M" (mean) and "R" (recall: share of frames above 0.5) of J and F, over all objects."""
    j_mean = [float(np.mean(j)) for j, _ in per_object.values()]
    f_mean = [float(np.mean(f)) for _, f in per_object.values()]
    j_rec = [float(np.mean(np.asarray(j) > 0.5)) for j, _ in per_object.values()]
    f_rec = [float(np.mean(np.asarray(f) > 0.5)) for _, f in per_object.values()]
    jm, fm = float(np.mean(j_mean)) * 100, float(np.mean(f_mean)) * 100
    return {
        "J&F": round((jm + fm) / 2, 2),
        "J_mean": round(jm, 2),
        "F_mean": round(fm, 2),
        "J_recall": round(float(np.mean(j_rec)) * 100, 2),
        "F_recall": round(float(np.mean(f_rec)) * 100, 2),
        "per_object": {
            name: {"J": round(float(np.mean(j)) * 100, 2), "F": round(float(np.mean(f)) * 100, 2)}
            for name, (j, f) in per_object.items()
        },
    }


def video_sequences(dataset_dir: str | Path) -> dict[str, list[tuple[Path, Path]]]:
    """{sequence: [(frame image, frame mask), ...] in frame order} of the video layout."""
    root = Path(dataset_dir)
    images = root / "images"
    if not images.is_dir() or not (root / "masks").is_dir():
        raise InputError(f"not a video dataset (needs images/<seq>/ and masks/<seq>/): {root}")
    out = {}
    for seq in sorted(p for p in images.iterdir() if p.is_dir()):
        frames = sorted(p for p in seq.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        pairs = [(f, root / "masks" / seq.name / f"{f.stem}.png") for f in frames]
        pairs = [(f, m) for f, m in pairs if m.is_file()]
        if len(pairs) >= 2:
            out[seq.name] = pairs
    if not out:
        raise InputError(f"no sequence with at least 2 annotated frames under {images}")
    return out


def match_to_truth(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Predicted object ids renamed to the ground truth's (first frame's) ids: a one-to-one assignment
    maximising the IoU summed over the frames (void excluded); unmatched predictions become 0."""
    objects = [int(i) for i in np.unique(gts[0]) if i not in (0, VOID)]
    found = sorted({int(i) for p in preds for i in np.unique(p) if i != 0})
    if not objects or not found:
        return [np.zeros_like(g, dtype=np.int64) for g in gts]
    overlap = np.zeros((len(found), len(objects)))
    for p, g in zip(preds, gts, strict=True):
        keep = g != VOID
        for a, pid in enumerate(found):
            pm = (p == pid) & keep
            for b, gid in enumerate(objects):
                gm = (g == gid) & keep
                union = (pm | gm).sum()
                overlap[a, b] += (pm & gm).sum() / union if union else 0.0
    rows, cols = linear_sum_assignment(-overlap)
    lookup = {found[r]: objects[c] for r, c in zip(rows, cols, strict=True)}
    return [np.vectorize(lambda v: lookup.get(int(v), 0), otypes=[np.int64])(p) for p in preds]


def first_mask(mask: np.ndarray) -> np.ndarray:
    """The first frame's ids as the method gets them: void pixels are background."""
    return np.where(mask == VOID, 0, mask)


class VideoEvaluator:
    """DAVIS J&F of propagated sequences and of the copy-first-mask baseline.

    sequences: {name: [(frame image, frame mask), ...]}; process(name, predicted id maps).
    """

    def __init__(self, sequences: dict[str, list[tuple[Path, Path]]]) -> None:
        self.sequences = sequences
        self.reset()

    def reset(self) -> None:
        self.method: dict[str, tuple[list[float], list[float]]] = {}
        self.baseline: dict[str, tuple[list[float], list[float]]] = {}
        self.frames = 0
        self.scored: list[str] = []

    def process(self, name: str, preds: list[np.ndarray]) -> None:
        gts = [read_mask(m) for _, m in self.sequences[name]]
        self.frames += len(preds)
        for k, jf in score_sequence(preds, gts).items():
            self.method[f"{name}_{k}"] = jf
        for k, jf in score_sequence([first_mask(gts[0])] * len(gts), gts).items():
            self.baseline[f"{name}_{k}"] = jf
        self.scored.append(name)

    def evaluate(self) -> dict:
        report = summarize(self.method)
        base = summarize(self.baseline)
        return {
            "metric": "J&F",
            **{k: v for k, v in report.items() if k != "per_object"},
            "baseline_copy_first_mask": {k: v for k, v in base.items() if k != "per_object"},
            "gain_over_baseline": round(report["J&F"] - base["J&F"], 2),
            "per_object": report["per_object"],
            "per_object_baseline": base["per_object"],
            "protocol": "DAVIS semi-supervised: objects of the first mask, first and last frames not scored, "
            f"boundary tolerance ceil({BOUND_TH} * diagonal) px",
            "sequences": len(self.scored),
            "frames": self.frames,
        }


def evaluate_video(
    segmenter: Segmenter,
    dataset_dir: str | Path,
    sequences: Sequence[str] | None = None,
    limit: int | None = None,
    config: VideoConfig | None = None,
    progress: bool = True,
    classes: Sequence[str] | None = None,
) -> dict:
    """J&F of propagating each sequence's first mask, and of the copy-first-mask baseline; with
    ``classes``, of tracking those names without a mask (module docstring)."""
    available = video_sequences(dataset_dir)
    names = list(sequences) if sequences else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown sequence(s): {', '.join(unknown)}")
    if limit is not None:
        names = names[: max(0, limit)]
    if not names:
        raise InputError("no sequences to evaluate")
    cfg = config or VideoConfig()

    source = getattr(segmenter, "source", None)  # duck-typed segmenters (tests) have only regions()

    def predict(name: str) -> list[np.ndarray]:
        pairs = available[name]
        frames = [f for f, _ in pairs]
        if classes is not None:
            if not isinstance(source, ConceptTrackingSource):
                raise InputError(f"{segmenter.model_id} does not track named concepts (needs a SAM 3 video model)")
            tracked = [t.id_map() for t in source.track(frames, list(classes))]
            return match_to_truth(tracked, [read_mask(m) for _, m in pairs])
        first = first_mask(read_mask(pairs[0][1]))
        if isinstance(source, VideoSource) and not isinstance(source, RegionSource):
            return list(source.propagate(frames, first))
        regions = (image_regions(segmenter, f)[1] for f in frames)
        return list(propagate_regions(regions, first, config))

    report = inference_on_dataset(
        predict, names, VideoEvaluator(available), desc=f"video {Path(dataset_dir).name}", progress=progress
    )
    return {
        "dataset": Path(dataset_dir).name,
        **report,
        "config": vars(cfg) if classes is None else {"classes": list(classes)},
        "model": segmenter.model_id,
    }


def format_video(report: dict) -> str:
    lines = [f"{'object':<28} {'J':>7} {'F':>7} {'J copy':>7} {'F copy':>7}"]
    for name, s in report["per_object"].items():
        b = report["per_object_baseline"][name]
        lines.append(f"{name[:28]:<28} {s['J']:7.2f} {s['F']:7.2f} {b['J']:7.2f} {b['F']:7.2f}")
    b = report["baseline_copy_first_mask"]
    lines.append(
        f"J&F: {report['J&F']:.2f} (J {report['J_mean']:.2f}, F {report['F_mean']:.2f})  copy-first-mask: "
        f"{b['J&F']:.2f}  gain: {report['gain_over_baseline']:+.2f}  ({report['sequences']} sequences, "
        f"{report['frames']} frames, {report['seconds']:.1f} s)"
    )
    return "\n".join(lines)

"""`omniseg eval --task incontext`: few-shot segmentation mIoU (FSS protocol).

An episode is one class c, K support images with their binary masks of c, and one query image
that contains c. The query is segmented from the supports alone (in-context, feature ensemble)
and its foreground IoU is accumulated per class: intersections and unions are summed over the
class's episodes, then the per-class IoU is averaged over classes (FSS-1000 / PANet rule).

Queries come from the ``split`` part of the fixed-seed split, supports from the other part
(``split="all"``: any other image), so the model never sees the query among its examples.
Episodes are drawn once for the largest K asked: the supports of K shots are the first K of the
same draw, so results for several K are paired and differences between them are not sampling
noise. Classes take turns (a shuffled round robin), so every eligible class gets episodes.

A source that segments from examples by itself (omniseg.source.ExampleSource: SegGPT, SAM 3's
exemplar prompts from the support images) is given each episode's first K supports with their
binary masks (ignore pixels marked) and its answer for the query is scored the same way.

Multi-class sets are evaluated per class (c vs. everything else); on binary sets (two classes,
e.g. drive, isbi2012_em, kvasir_seg, weizmann_horse) only class 1 is the foreground. Classes
named background/void/unlabeled are never a foreground class.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omniseg.data.dataset import open_dataset
from omniseg.data.uniform import IGNORE, Sample, UniformDataset, read_mask, read_rgb
from omniseg.errors import InputError
from omniseg.eval.evaluator import inference_on_dataset
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.source import ExampleSource, RegionSource
from omniseg.tasks.common import image_regions
from omniseg.tasks.incontext import Level, Method, encode_example, ensemble, segment_with_prototypes

NOT_FOREGROUND = {"background", "void", "unlabeled", "unlabelled", "ignore"}


@dataclass(frozen=True)
class Episode:
    class_id: int
    query: Sample
    supports: tuple[Sample, ...]  # ordered: K shots use the first K


def foreground_classes(classes: Sequence[str]) -> list[int]:
    """Class ids that can be an episode's foreground (see the module doc)."""
    if len(classes) == 2:
        return [1]
    return [k for k, name in enumerate(classes) if name.strip().lower() not in NOT_FOREGROUND]


def class_presence(samples: Sequence[Sample], class_ids: Sequence[int], min_fraction: float) -> dict[int, list[Sample]]:
    """Samples in which each class covers at least ``min_fraction`` of the labelled pixels, and so
    does the rest: an image that is all foreground has no background to learn or to miss."""
    present: dict[int, list[Sample]] = {c: [] for c in class_ids}
    wanted = set(class_ids)
    for sample in samples:
        assert sample.mask_path is not None
        mask = read_mask(sample.mask_path)
        valid = max(int((mask != IGNORE).sum()), 1)
        ids, counts = np.unique(mask[mask != IGNORE], return_counts=True)
        for c, n in zip(ids, counts, strict=True):
            if int(c) in wanted and min_fraction <= n / valid <= 1 - min_fraction:
                present[int(c)].append(sample)
    return present


def sample_episodes(
    queries: dict[int, list[Sample]],
    supports: dict[int, list[Sample]],
    episodes: int,
    shots: int,
    seed: int,
) -> tuple[list[Episode], list[int]]:
    """``episodes`` episodes with ``shots`` ordered supports each; also the classes that had too few images."""
    rng = random.Random(seed)
    eligible: list[int] = []
    skipped: list[int] = []
    for c in sorted(queries):
        pool_ok = any(len([s for s in supports.get(c, []) if s.id != q.id]) >= shots for q in queries[c])
        (eligible if queries[c] and pool_ok else skipped).append(c)
    if not eligible:
        return [], skipped
    order = eligible[:]
    rng.shuffle(order)
    out = []
    for e in range(episodes):
        c = order[e % len(order)]
        candidates = [q for q in queries[c] if len([s for s in supports[c] if s.id != q.id]) >= shots]
        query = rng.choice(candidates)
        pool = [s for s in supports[c] if s.id != query.id]
        rng.shuffle(pool)  # consumes the same randomness whatever ``shots`` is: K-shot episodes agree across calls
        out.append(Episode(c, query, tuple(pool[:shots])))
    return out, skipped


class RegionCache:
    """Regions (with pixel features) of recently used images: episodes reuse supports and queries."""

    def __init__(self, segmenter: Segmenter, capacity: int = 256) -> None:
        self.segmenter, self.capacity = segmenter, capacity
        self._items: OrderedDict[Path, Regions] = OrderedDict()

    def __call__(self, path: Path) -> Regions:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        _, regions = image_regions(self.segmenter, read_rgb(path))
        self._items[path] = regions
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return regions


class FewShotScores:
    """Foreground IoU per class, intersections and unions summed over the class's episodes."""

    def __init__(self, num_classes: int) -> None:
        self.inter = np.zeros(num_classes, dtype=np.int64)
        self.union = np.zeros(num_classes, dtype=np.int64)
        self.episodes = np.zeros(num_classes, dtype=np.int64)

    def update(self, class_id: int, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        """pred, gt: boolean foreground maps of one query; valid: pixels that count (not ignore)."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        keep = valid if valid is not None else np.ones(gt.shape, bool)
        p, g = pred.astype(bool) & keep, gt.astype(bool) & keep
        self.inter[class_id] += int((p & g).sum())
        self.union[class_id] += int((p | g).sum())
        self.episodes[class_id] += 1

    def per_class(self) -> dict[int, float]:
        """{class id: IoU in 0..1} for the classes with episodes (no union at all counts as 1)."""
        return {
            int(c): (float(self.inter[c] / self.union[c]) if self.union[c] else 1.0)
            for c in np.flatnonzero(self.episodes)
        }

    def miou(self) -> float:
        per_class = self.per_class()
        return float(np.mean(list(per_class.values()))) if per_class else float("nan")


def _binary(mask: np.ndarray, class_id: int) -> np.ndarray:
    """Class c -> 1, other classes -> 0, ignore stays 255."""
    return np.where(mask == IGNORE, IGNORE, (mask == class_id).astype(np.uint8)).astype(np.uint8)


class FewShotEvaluator:
    """Few-shot mIoU of episodes (one class, K ordered supports, one query) for every K in ``ks``:
    the K-shot prototypes are the first K supports' (the same episodes serve every K)."""

    def __init__(
        self, classes: list[str], ks: Sequence[int], level: Level, region_weight: float, method: Method
    ) -> None:
        self.classes, self.ks = classes, list(ks)
        self.level, self.region_weight, self.method = level, region_weight, method
        self.reset()

    def reset(self) -> None:
        self.scores = {k: FewShotScores(len(self.classes)) for k in self.ks}
        self.episodes = 0

    def process(self, ep: Episode, output: tuple[list[Regions], Regions] | dict[int, np.ndarray]) -> None:
        """output: the supports' and the query's Regions, or an example source's answer per K."""
        query_gt = _binary(read_mask(ep.query.truth_path, len(self.classes)), ep.class_id)
        if isinstance(output, dict):
            for k in self.ks:
                self.scores[k].update(ep.class_id, output[k] == 1, query_gt == 1, query_gt != IGNORE)
            self.episodes += 1
            return
        support_regions, query_regions = output
        per_example = []
        for s, regions in zip(ep.supports, support_regions, strict=True):
            assert regions.pixel_features is not None
            support_mask = _binary(read_mask(s.truth_path, len(self.classes)), ep.class_id)
            per_example.append(encode_example(regions.pixel_features, support_mask, IGNORE))
        for k in self.ks:
            prototypes = ensemble(per_example[:k])
            pred = segment_with_prototypes(
                query_regions, prototypes, self.level, self.region_weight, query_gt.shape, self.method
            )
            self.scores[k].update(ep.class_id, pred == 1, query_gt == 1, query_gt != IGNORE)
        self.episodes += 1

    def evaluate(self) -> dict:
        by_shots = {}
        for k in self.ks:
            per_class = {self.classes[c]: round(v * 100, 2) for c, v in self.scores[k].per_class().items()}
            by_shots[k] = {
                "metric": "few-shot mIoU",
                "shots": k,
                "mIoU": round(self.scores[k].miou() * 100, 2),
                "per_class_iou": per_class,
                "episodes": self.episodes,
                "classes_evaluated": len(per_class),
                "level": self.level,
                "method": self.method,
                "averaging": "FSS: IoU of the foreground summed over a class's episodes, then mean over classes",
            }
        return {"by_shots": by_shots}


def evaluate_incontext(
    segmenter: Segmenter,
    dataset_dir: str | Path | UniformDataset,
    shots: int | Sequence[int] = 1,
    episodes: int = 40,
    seed: int = 0,
    split: str = "val",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    level: Level = "category",
    region_weight: float = 0.5,
    method: Method = "knn",
    min_fraction: float = 0.002,
    progress: bool = True,
) -> dict:
    """Few-shot mIoU; with several ``shots`` (e.g. [1, 2, 4, 8]) one report per K on the same episodes.

    Returns a report dict (semantic eval style); for several K: {"dataset", ..., "by_shots": {K: report}}.
    """
    ks = [shots] if isinstance(shots, int) else sorted(set(int(k) for k in shots))
    if not ks or min(ks) < 1:
        raise InputError(f"shots must be >= 1, got {shots}")
    if episodes < 1:
        raise InputError(f"episodes must be >= 1, got {episodes}")
    dataset = open_dataset(dataset_dir)
    class_ids = foreground_classes(dataset.classes)
    if split == "all":
        query_samples = support_samples = dataset.split("all")
    elif split in ("val", "train"):
        query_samples = dataset.split(split, val_fraction, split_seed)
        support_samples = dataset.split("train" if split == "val" else "val", val_fraction, split_seed)
    else:
        raise InputError(f"unknown split {split!r}: use train, val or all")
    queries = class_presence(query_samples, class_ids, min_fraction)
    supports = queries if split == "all" else class_presence(support_samples, class_ids, min_fraction)
    drawn, skipped = sample_episodes(queries, supports, episodes, max(ks), seed)
    if not drawn:
        raise InputError(
            f"no class of {dataset.name} has a query in the {split} split and {max(ks)} other images as supports"
        )
    cache = RegionCache(segmenter)
    evaluator = FewShotEvaluator(dataset.classes, ks, level, region_weight, method)
    source = getattr(segmenter, "source", None)  # duck-typed segmenters (tests) have only regions()

    def answer(ep: Episode) -> tuple[list[Regions], Regions] | dict[int, np.ndarray]:
        if isinstance(source, ExampleSource) and not isinstance(source, RegionSource):
            shots = [(s.image_path, _binary(read_mask(s.truth_path), ep.class_id)) for s in ep.supports]
            return {k: source.incontext(shots[:k], [ep.query.image_path], level, IGNORE)[0] for k in ks}
        return [cache(s.image_path) for s in ep.supports], cache(ep.query.image_path)

    report = inference_on_dataset(
        answer,
        drawn,
        evaluator,
        desc=f"few-shot {dataset.name}",
        progress=progress,
    )
    seconds = report["seconds"]
    reports = {}
    for k in ks:
        reports[k] = {
            "dataset": dataset.name,
            **report["by_shots"][k],
            "classes_skipped": [dataset.classes[c] for c in skipped],
            "split": f"queries: {split}, supports: "
            + ("any other image" if split == "all" else f"the rest (val_fraction={val_fraction}, seed={split_seed})"),
            "seed": seed,
            "seconds": seconds,
            "model": segmenter.model_id,
        }
    if isinstance(shots, int):
        return reports[shots]
    return {
        "dataset": dataset.name,
        "metric": "few-shot mIoU",
        "mIoU_by_shots": {str(k): r["mIoU"] for k, r in reports.items()},
        "by_shots": {str(k): r for k, r in reports.items()},
        "episodes": len(drawn),
        "seconds": seconds,
        "model": segmenter.model_id,
    }


def format_fewshot(report: dict) -> str:
    """A table of per-class IoU (one K) or of mIoU per K."""
    if "by_shots" in report:
        lines = [f"{'shots':>5} {'mIoU':>7}"]
        lines += [f"{k:>5} {v:7.2f}" for k, v in report["mIoU_by_shots"].items()]
        lines.append(f"few-shot {report['dataset']}: {report['episodes']} episodes, {report['seconds']:.1f} s")
        return "\n".join(lines)
    lines = [f"{'class':<28} {'IoU':>7}"]
    lines += [f"{name[:28]:<28} {iou:7.2f}" for name, iou in report["per_class_iou"].items()]
    lines.append(
        f"{report['metric']} ({report['shots']}-shot): {report['mIoU']:.2f}  "
        f"({report['episodes']} episodes, {report['classes_evaluated']} classes, {report['seconds']:.1f} s)"
    )
    return "\n".join(lines)

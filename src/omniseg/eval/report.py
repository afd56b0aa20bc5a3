"""An HTML report of a semantic evaluation that a person can look at (`omniseg eval --report DIR`).

DIR/report.html is self-contained (pictures embedded as data URIs); the same pictures are also
written beside it as PNGs, with report.json:
  - the metrics table and the per-class IoU / accuracy table,
  - per_class_iou.png: a bar chart of per-class IoU (mIoU marked),
  - confusion.png: the confusion matrix, each row (ground-truth class) normalised to 1,
  - examples_best.png / examples_worst.png: the images with the highest / lowest per-image mIoU,
    as image | ground truth | prediction overlays.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omniseg.atomic import atomic_write_bytes, atomic_write_text
from omniseg.data.uniform import read_rgb
from omniseg.eval.metrics import ConfusionMatrix
from omniseg.viz import overlay, palette

MAX_MATRIX_CLASSES = 40  # a bigger confusion matrix shows the classes with the most ground-truth pixels


@dataclass
class Example:
    score: float  # per-image mIoU, %
    id: str
    image_path: Path
    pred: np.ndarray = field(repr=False)
    gt: np.ndarray = field(repr=False)


class ReportCollector:
    """Fed every (prediction, ground truth) of an evaluation: per-image mIoU, the k best and k worst
    images (only those are kept in memory) and, at the end, the dataset's confusion matrix."""

    def __init__(self, num_classes: int, ignore_index: int = 255, examples: int = 4) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.k = max(0, examples)
        self.per_image: dict[str, float | None] = {}
        self.best: list[Example] = []
        self.worst: list[Example] = []
        self.confusion: np.ndarray | None = None

    def add(self, image_id: str, image_path: Path, pred: np.ndarray, gt: np.ndarray) -> float | None:
        conf = ConfusionMatrix(self.num_classes, self.ignore_index)
        conf.update(pred, gt)
        miou = conf.scores()["mIoU"]
        score = None if math.isnan(miou) else round(miou, 2)
        self.per_image[image_id] = score
        if score is not None and self.k:
            example = Example(score, image_id, Path(image_path), pred.copy(), gt.copy())
            self.best = sorted([*self.best, example], key=lambda e: (-e.score, e.id))[: self.k]
            self.worst = sorted([*self.worst, example], key=lambda e: (e.score, e.id))[: 2 * self.k]
        return score

    def worst_examples(self) -> list[Example]:
        """The k lowest, never repeating one shown among the best (small datasets)."""
        shown = {e.id for e in self.best}
        return [e for e in self.worst if e.id not in shown][: self.k]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iou_bar_chart(report: dict) -> bytes:
    plt = _pyplot()
    items = sorted(report["per_class_iou"].items(), key=lambda kv: (kv[1] is None, -(kv[1] or 0), kv[0]))
    names = [n for n, _ in items]
    values = [v or 0.0 for _, v in items]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.26 * len(items)))
    y = np.arange(len(items))
    ax.barh(y, values, color=["C0" if v is not None else "0.8" for _, v in items])
    for yi, (_, v) in zip(y, items, strict=True):
        ax.text((v or 0) + 1, yi, "n/a" if v is None else f"{v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)")
    if report.get("mIoU") is not None:
        mean = f"{report['metric']} {report['mIoU']:.1f}"
        ax.axvline(report["mIoU"], color="C3", linestyle="--", linewidth=1, label=mean)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Per-class IoU, {report['dataset']} ({report['images']} images; grey: no ground truth)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def confusion_heat_map(matrix: np.ndarray, classes: list[str]) -> tuple[bytes, str]:
    """Rows normalised to 1 (what each ground-truth class was predicted as); the last column is
    'unlabeled' when any pixel was. Returns the PNG and a note on what is shown."""
    plt = _pyplot()
    k = len(classes)
    gt_pixels = matrix.sum(1)
    rows = [i for i in range(k) if gt_pixels[i] > 0]
    note = f"{len(rows)} classes with ground-truth pixels"
    if len(rows) > MAX_MATRIX_CLASSES:
        rows = sorted(sorted(rows, key=lambda i: -gt_pixels[i])[:MAX_MATRIX_CLASSES])
        note = f"the {MAX_MATRIX_CLASSES} classes with the most ground-truth pixels (of {int((gt_pixels > 0).sum())})"
    cols = list(rows) + ([k] if matrix[:, k].any() else [])
    sub = matrix[np.ix_(rows, cols)].astype(np.float64)
    norm = sub / np.maximum(gt_pixels[rows][:, None], 1)
    labels = [classes[i] for i in rows]
    size = 1.5 + 0.32 * len(cols)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), labels + (["unlabeled"] if len(cols) > len(rows) else []), rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if len(cols) <= 15:
        for r in range(len(rows)):
            for c in range(len(cols)):
                ax.text(c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if norm[r, c] > 0.5 else "white")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row's pixels")
    ax.set_title("Confusion matrix (row-normalised)")
    return _png(fig), note


def examples_grid(examples: list[Example], classes: list[str], title: str) -> bytes:
    """One row per example: image | ground truth | prediction; a legend of the classes they show."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    k = len(classes)
    fig, axes = plt.subplots(len(examples), 3, figsize=(12, 3.1 * len(examples)), squeeze=False)
    shown: set[int] = set()
    for row, ex in zip(axes, examples, strict=True):
        image = read_rgb(ex.image_path)
        pictures = [image]
        for labels in (ex.gt, ex.pred):
            ids = labels.astype(np.int64)
            ids = np.where((ids >= 0) & (ids < k), ids, -1)
            shown.update(int(c) for c in np.unique(ids) if c >= 0)
            pictures.append(np.asarray(overlay(image, ids, classes, -1, legend=False)))
        for ax, pic, name in zip(row, pictures, ("image", "ground truth", "prediction"), strict=True):
            ax.imshow(pic)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{ex.id}: mIoU {ex.score:.1f}" if name == "image" else name, fontsize=9)
    colours = palette(k) / 255.0
    handles = [Patch(color=colours[c], label=classes[c]) for c in sorted(shown)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.03 + 0.012 * (len(handles) // 6), 1, 0.97))
    return _png(fig)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}
.na{color:#999}figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em}"""


def _fmt(value) -> str:
    return '<span class="na">n/a</span>' if value is None else html.escape(f"{value:.2f}" if isinstance(value, float)
                                                                          else str(value))  # fmt: skip


def write_report(report: dict, collector: ReportCollector, classes: list[str], out_dir: str | Path) -> Path:
    """Writes DIR/report.html (+ the PNGs and report.json); returns the HTML's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures: list[tuple[str, str, bytes]] = [
        ("per_class_iou.png", "Per-class IoU (%), best first; the dashed line is the mean.", iou_bar_chart(report))
    ]
    if collector.confusion is not None:
        png, note = confusion_heat_map(collector.confusion, classes)
        pictures.append(("confusion.png", f"Confusion matrix, each row normalised to 1; {note}.", png))
    best, worst = collector.best, collector.worst_examples()
    if best:
        grid = examples_grid(best, classes, "Best images (highest per-image mIoU)")
        pictures.append(("examples_best.png", f"The {len(best)} images with the highest per-image mIoU.", grid))
    if worst:
        grid = examples_grid(worst, classes, "Worst images (lowest per-image mIoU)")
        pictures.append(("examples_worst.png", f"The {len(worst)} images with the lowest per-image mIoU.", grid))
    for name, _, data in pictures:
        atomic_write_bytes(out / name, data)
    full = {**report, "per_image_miou": collector.per_image}
    atomic_write_text(out / "report.json", json.dumps(full, indent=2))

    metrics = [
        ("dataset", report["dataset"]),
        (report["metric"], report["mIoU"]),
        ("mAcc", report["mAcc"]),
        ("pixel accuracy", report["pixel_acc"]),
        ("images", report["images"]),
        ("split", report["split"]),
        ("model", report["model"]),
        ("seconds", report["seconds"]),
        ("averaging", report["averaging"]),
    ]
    gt_share = {}
    if collector.confusion is not None:
        totals = collector.confusion.sum(1)
        gt_share = {c: float(totals[i]) / max(float(totals.sum()), 1.0) * 100 for i, c in enumerate(classes)}
    per_class_rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt(iou)}</td><td>{_fmt(report['per_class_acc'].get(name))}</td>"
        f"<td>{_fmt(gt_share.get(name))}</td></tr>"
        for name, iou in report["per_class_iou"].items()
    )
    figures = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(name)})</figcaption></figure>"
        for name, caption, data in pictures
    )
    title = f"omniseg evaluation: {report['dataset']}"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2>
<table>{"".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics)}</table>
<h2>Per class</h2>
<table><tr><th>class</th><th>IoU (%)</th><th>accuracy (%)</th><th>ground-truth pixels (%)</th></tr>
{per_class_rows}
</table>
<h2>Pictures</h2>
{figures}
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path

"""Tables of the issue-3 measurements (BENCHMARKS.md) from benchmarks/results/recipes/*.json.

usage: python benchmarks/recipes_report.py [--json benchmarks/results/recipes/summary.json]

Seen / unseen classes of a zero-shot fold: a held-out class is "seen" when its exact name (lower
case) is a class name of a training source of that fold's config; caption words do not count.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "recipes"
FOLDS = ("camvid", "msrc_v2", "coco128_seg")
ARCHS = ("openseg", "lseg")
ABLATIONS = (
    ("zs_msrc_v2_openseg", "", "full recipe (grounding on, kp 0.75, no ESS, no pseudo-labels)"),
    ("abl_no_grounding", "", "grounding loss off"),
    ("abl_kp1.0", "", "kp = 1.0"),
    ("abl_kp0.5", "", "kp = 0.5"),
    ("abl_ess", "", "ESS head on (aux loss), eq. 6 inference"),
    ("abl_ess", "_fused", "ESS head on, fused inference (pixel weight 0.5)"),
    ("abl_ess", "_pixels", "ESS head on, nearest-class inference (pixel weight 1)"),
    ("abl_pseudo", "", "+ pseudo-labels (loss weight 0.5)"),
)


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def training_class_names(config: Path) -> set[str]:
    cfg = yaml.safe_load(config.read_text())
    names: set[str] = set()
    for spec in cfg["datasets"]:
        if spec.get("task", "semantic") in ("caption", "pseudo"):
            continue
        path = (config.parent / spec["path"]).resolve()
        names |= {c.lower() for c in json.loads((path / "classes.json").read_text())}
    return names


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def zero_shot() -> dict:
    out: dict = {}
    for held in FOLDS:
        seen = training_class_names(ROOT / "configs" / "recipes" / f"zs_{held}_openseg.yaml")
        for arch in ARCHS:
            report = _load(f"zs_{held}_{arch}__{held}")
            if report is None:
                continue
            per_class = {k: v for k, v in report["per_class_iou"].items() if v is not None}
            out[f"{held}/{arch}"] = {
                "mIoU": report["mIoU"],
                "seen_mIoU": _mean([v for k, v in per_class.items() if k.lower() in seen]),
                "unseen_mIoU": _mean([v for k, v in per_class.items() if k.lower() not in seen]),
                "unseen_classes": sorted(k for k in per_class if k.lower() not in seen),
                "images": report["images"],
            }
    for arch in ARCHS:
        values = [out[f"{h}/{arch}"]["mIoU"] for h in FOLDS if f"{h}/{arch}" in out]
        unseen = [out[f"{h}/{arch}"]["unseen_mIoU"] for h in FOLDS if f"{h}/{arch}" in out]
        if values:
            out[f"summary/{arch}"] = {
                "folds": len(values),
                "mean_mIoU": round(statistics.mean(values), 2),
                "median_mIoU": round(statistics.median(values), 2),
                "mean_unseen_mIoU": _mean([u for u in unseen if u is not None]),
            }
    return out


def ablations() -> dict:
    out = {}
    for name, tag, label in ABLATIONS:
        report = _load(f"{name}__msrc_v2{tag}")
        if report is not None:
            out[label] = {"run": name, "msrc_v2_zero_shot_mIoU": report["mIoU"], "images": report["images"]}
    return out


def recall() -> dict:
    out = {}
    for path in sorted(RESULTS.glob("*_recall.json")) + sorted((RESULTS.parent).glob("recall_*.json")):
        r = json.loads(path.read_text())
        out[path.stem] = {k: r[k] for k in ("dataset", "proposals_from", "recall@0.5", "recall@0.7", "recall@0.9")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    summary = {"zero_shot": zero_shot(), "ablations": ablations(), "recall": recall()}
    print("| fold (held out) | model | mIoU | seen-class mIoU | unseen-class mIoU | unseen classes |")
    print("|---|---|---|---|---|---|")
    for key, row in summary["zero_shot"].items():
        if key.startswith("summary/"):
            continue
        held, arch = key.split("/")
        print(
            f"| {held} | {arch} | {row['mIoU']} | {row['seen_mIoU']} | {row['unseen_mIoU']} | "
            f"{', '.join(row['unseen_classes'])} |"
        )
    for key, row in summary["zero_shot"].items():
        if key.startswith("summary/"):
            print(
                f"\n{key[8:]}: mean {row['mean_mIoU']}, median {row['median_mIoU']} over {row['folds']} folds; "
                f"mean unseen-class mIoU {row['mean_unseen_mIoU']}"
            )
    print("\n| ablation (msrc_v2 fold) | zero-shot mIoU on msrc_v2 val |\n|---|---|")
    for label, row in summary["ablations"].items():
        print(f"| {label} | {row['msrc_v2_zero_shot_mIoU']} |")
    print("\n| proposals | dataset | R@0.5 | R@0.7 | R@0.9 |\n|---|---|---|---|---|")
    for name, row in summary["recall"].items():
        print(f"| {name} | {row['dataset']} | {row['recall@0.5']} | {row['recall@0.7']} | {row['recall@0.9']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

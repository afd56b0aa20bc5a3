"""Loss curves of a training log (log.jsonl) as a PNG: one panel per loss term."""

from __future__ import annotations

import json
from pathlib import Path


def plot_log(log_path: str | Path, out_path: str | Path, smooth: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"no records in {log_path}")
    terms = [k for k in records[0] if k not in ("step", "lr", "elapsed", "images_per_s")]
    steps = np.asarray([r["step"] for r in records])
    cols = 3
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, term in zip(axes.ravel(), terms, strict=False):
        values = np.asarray([r.get(term, np.nan) for r in records], dtype=float)
        ax.plot(steps, values, color="0.75", linewidth=0.8)
        if len(values) >= smooth:
            kernel = np.ones(smooth) / smooth
            ax.plot(steps[smooth - 1 :], np.convolve(values, kernel, mode="valid"), color="C0", linewidth=1.5)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(terms) :]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out

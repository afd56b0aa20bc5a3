"""docs/zero_shot.png: names the default model never trained on, with and without the frozen recognizer.

Each row is one scikit-image photo (public domain / CC0, skimage.data) and the words a new user
types: left, the trained scores alone (the recognizer switched off, every pixel forced into a
class); right, the default (recognizer fused, "unknown" left unlabeled, shown uncoloured). The
last row is a failure kept on purpose: the recognizer's stride-32 map is coarse, so small things
(the flag) stay unknown or bleed into their neighbours.

    python scripts/make_zero_shot_pictures.py --out docs/zero_shot.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from skimage import data  # noqa: E402

import omniseg  # noqa: E402

ROWS = (
    ("astronaut", "woman, helmet, space shuttle, flag"),
    ("coffee", "cup, saucer, spoon, table"),
    ("chelsea", "tabby, sofa, wall"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/zero_shot.png"))
    args = parser.parse_args()
    seg = omniseg.load()
    fig, axes = plt.subplots(len(ROWS), 2, figsize=(10, 4.2 * len(ROWS)))
    for row, (photo, classes) in enumerate(ROWS):
        image = getattr(data, photo)()
        fused = seg.segment(image, classes=classes)
        fusion, seg.fusion = seg.fusion, None
        try:
            plain = seg.segment(image, classes=classes, threshold=0)
        finally:
            seg.fusion = fusion
        for col, (result, title) in enumerate(
            ((plain, "trained scores alone, no 'unknown'"), (fused, "default: + frozen recognizer, 'unknown'"))
        ):
            ax = axes[row, col]
            ax.imshow(result.overlay())
            unknown = result.to_json()["unlabeled_fraction"]
            ax.set_title(f"{photo}: {classes}\n{title} (unlabeled {unknown:.0%})", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

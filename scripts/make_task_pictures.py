"""One picture per task for docs/tasks/: real results of the embedded default model.

Inputs are scikit-image's bundled photos (public domain / CC0, see skimage.data), so the pictures
can live in the repository; nothing from ../shared/data is copied. Where a task needs a mask as
input (in-context examples, the first video frame) it is made here and the caption says how.

    python scripts/make_task_pictures.py --out docs/tasks
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage import data, filters  # noqa: E402

import omniseg  # noqa: E402
from omniseg.viz import overlay  # noqa: E402

DPI = 100


def id_overlay(image: np.ndarray, ids: np.ndarray, names: dict[int, str], legend: bool = True) -> np.ndarray:
    """Colour an id map (0 = background, left as is) with a legend of ``names``."""
    order = sorted(names)
    label = np.full(ids.shape, 255, np.uint8)
    for k, i in enumerate(order):
        label[ids == i] = k
    return np.asarray(overlay(image, label, [names[i] for i in order], 255, legend=legend))


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    with Image.open(path) as im:  # 256 colours: a third of the bytes, no visible loss for overlays
        quantized = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    quantized.save(path, optimize=True)
    print(path)


def panels(titles: list[str], images: list[np.ndarray], suptitle: str, width: float = 5.2) -> plt.Figure:
    fig, axes = plt.subplots(1, len(images), figsize=(width * len(images), width * 0.72))
    for ax, title, im in zip(np.atleast_1d(axes), titles, images, strict=True):
        ax.imshow(im)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=12)
    return fig


def coins_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coins photo split in two: the left half is the example with three coins marked (Otsu
    threshold + connected components, a classical mask made here), the right half the target."""
    coins = data.coins()
    rgb = np.repeat(coins[..., None], 3, axis=2)
    half = coins.shape[1] // 2
    example, target = rgb[:, :half].copy(), rgb[:, half:].copy()
    binary = ndimage.binary_fill_holes(coins[:, :half] > filters.threshold_otsu(coins))
    labels, count = ndimage.label(binary)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    sizes = ndimage.sum_labels(binary, labels, np.arange(1, count + 1))
    inner = [i for i in np.argsort(-sizes) + 1 if int(i) not in border]  # whole coins only
    keep = [int(i) for i in inner[:3]]
    mask = np.isin(labels, keep).astype(np.uint8)
    return example, mask, target


def pan_clip(image: np.ndarray, frames: int = 6, crop: float = 0.8) -> list[np.ndarray]:
    """A camera pan synthesised from one photo: crops sliding left to right (same size)."""
    h, w = image.shape[:2]
    ch, cw = int(h * crop), int(w * crop)
    xs = np.linspace(0, w - cw, frames).round().astype(int)
    ys = np.linspace(0, h - ch, frames).round().astype(int)
    return [image[y : y + ch, x : x + cw].copy() for x, y in zip(xs, ys, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/tasks")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seg = omniseg.load()

    coffee = data.coffee()
    r = seg.segment(coffee, classes="cup,saucer,table")
    fig = panels(["input", "semantic"], [coffee, np.asarray(r.overlay())], 'semantic: "cup, saucer, table"')
    save(fig, out / "semantic.png")

    astronaut = data.astronaut()
    motorcycle = data.stereo_motorcycle()[0]
    inst = seg.segment(motorcycle, classes="motorcycle,person,car", task="instance")
    fig = panels(["input", "instance"], [motorcycle, np.asarray(inst.overlay())], 'instance: "motorcycle, person, car"')
    save(fig, out / "instance.png")

    pan = seg.segment(motorcycle, classes="motorcycle,person,wall [stuff],floor [stuff]", task="panoptic")
    title = 'panoptic: "motorcycle, person" (things) + "wall, floor" (stuff)'
    save(panels(["input", "panoptic"], [motorcycle, np.asarray(pan.overlay())], title), out / "panoptic.png")

    phrase = "the woman"
    ref = seg.refer(astronaut, phrase)
    shown = id_overlay(astronaut, ref.mask.astype(np.uint8), {1: phrase})
    save(panels(["input", f'refer: "{phrase}"'], [astronaut, shown], "referring"), out / "refer.png")

    points = [(300, 150, True), (300, 330, False)]
    clicked = seg.click(coffee, points, classes="cup,saucer,table,spoon")
    shown = id_overlay(coffee, clicked.mask.astype(np.uint8), {1: clicked.label or "selected"})
    fig = panels(
        ["input + clicks (green +, red -)", 'result, named from "cup, saucer, table, spoon"'],
        [coffee, shown],
        "interactive",
    )
    for ax in fig.axes:
        for x, y, positive in points:
            ax.plot(x, y, marker="o", markersize=11, color="lime" if positive else "red", markeredgecolor="black")
    save(fig, out / "click.png")

    example, mask, target = coins_example()
    found = seg.incontext([(example, mask)], target)[0]
    fig = panels(
        ["example (3 coins marked)", "target: what the example marks"],
        [id_overlay(example, mask, {1: "coin"}, legend=False), id_overlay(target, found, {1: "coin"}, legend=False)],
        "in-context: one example image + mask -> the same thing in a new image (coins photo split in two)",
    )
    save(fig, out / "incontext.png")

    frames = pan_clip(motorcycle)
    first = seg.click(frames[0], [(300, 230)]).mask.astype(np.uint8)
    labels = list(seg.video(frames, first))
    shown = [id_overlay(f, lab, {1: "motorcycle"}, legend=False) for f, lab in zip(frames, labels, strict=True)]
    picks = [0, len(frames) // 2, len(frames) - 1]
    fig = panels(
        [f"frame {i}" + (" (first mask from a click)" if i == 0 else "") for i in picks],
        [shown[i] for i in picks],
        "video: the first mask propagated through a camera pan synthesised from one photo",
        width=4.2,
    )
    save(fig, out / "video.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

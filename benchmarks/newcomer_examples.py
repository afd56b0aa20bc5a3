"""Re-run the newcomer examples of issue 15 (what a new user tries in the first minute) and report them.

Each example is a photo, the words a user types and what came out: the class fractions of the
label map (with the unlabeled share), the largest instance, the referred region. Run it against
two checkouts to show before / after (``PYTHONPATH=<checkout>/src``); it only uses the public API.

    python benchmarks/newcomer_examples.py --json benchmarks/results/newcomer_after.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import omniseg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def semantic(seg, image, classes: str, **kwargs) -> dict:
    result = seg.segment(image, classes=classes, **kwargs)
    out = result.to_json()
    fractions = dict(sorted(out["fractions"].items(), key=lambda kv: -kv[1]))
    return {"fractions": {k: round(v, 3) for k, v in fractions.items()}, "unlabeled": out["unlabeled_fraction"]}


def largest_instance(seg, image, classes: str, task: str) -> dict:
    result = seg.segment(image, classes=classes, task=task)
    data = result.to_json()
    items = data.get("instances") or data.get("segments_info") or []
    h, w = result.image.shape[:2]
    best = max(items, key=lambda i: i.get("area", 0), default=None)
    return {
        "count": len(items),
        "largest": None
        if best is None
        else {"class": best.get("class"), "area_fraction": round(best.get("area", 0) / (h * w), 3)},
    }


def refer(seg, image, phrase: str) -> dict:
    result = seg.refer(image, phrase)
    data = result.to_json()
    return {
        "found": data.get("found", True),
        "area_fraction": data["mask"]["area_fraction"],
        "selected": data["selected"],
    }


def first_image(dataset: str, stem: str | None = None) -> Path:
    images = sorted((DATA / dataset / "images").iterdir())
    return next(p for p in images if stem is None or p.stem == stem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--large", action="store_true", help="also the wordnet_nouns examples (encodes ~10^5 names)")
    args = parser.parse_args()
    seg = omniseg.load()
    astronaut, coffee = skimage_photo("astronaut"), skimage_photo("coffee")
    street = str(first_image("camvid"))
    dog = str(first_image("coco_mini", "000000377575"))  # a dog next to a fire hydrant
    dog_only = str(first_image("coco128_seg", "000000000309"))  # a dog and a teddy bear
    people = str(first_image("coco128_seg", "000000000074"))  # people, a bicycle, a dog
    report = {
        "astronaut: woman, flag, space shuttle, helmet": semantic(seg, astronaut, "woman, flag, space shuttle, helmet"),
        "coffee: cup, saucer, spoon, table": semantic(seg, coffee, "cup, saucer, spoon, table"),
        "kvasir frame: polyp": semantic(seg, str(first_image("kvasir_seg")), "polyp"),
        "dubai aerial tile: water": semantic(seg, str(first_image("dubai_aerial")), "water"),
        "camvid street: sky, road, red car": semantic(seg, street, "sky, road, red car"),
        "coco people: person, bicycle, dog (instance)": largest_instance(
            seg, people, "person, bicycle, dog", "instance"
        ),
        "coco people: person, bicycle, dog (panoptic)": largest_instance(
            seg, people, "person, bicycle, dog", "panoptic"
        ),
        "coco dog: refer 'the fire hydrant'": refer(seg, dog_only, "the fire hydrant"),
        "coco dog + hydrant: refer 'the fire hydrant'": refer(seg, dog, "the fire hydrant"),
        "coco dog: refer 'the dog'": refer(seg, dog_only, "the dog"),
    }
    if args.large:
        report["coco dog: wordnet_nouns"] = semantic(seg, dog_only, classes=None, vocab="wordnet_nouns")
        report["camvid street: wordnet_nouns"] = semantic(seg, street, classes=None, vocab="wordnet_nouns")
    for name, value in report.items():
        print(f"{name}: {json.dumps(value)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

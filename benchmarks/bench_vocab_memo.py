"""What passing the same large vocabulary call after call costs, with and without the door's memo.

    nice -n 5 .venv/bin/python benchmarks/bench_vocab_memo.py --names 100000 --images 8 \\
        --json benchmarks/results/vocab_memo.json

Per image (median over ``--images`` photos of MSRC-v2's val part, or scikit-image's photos without
../shared; the ways below interleaved image by image), ``Segmenter.segment`` with:

- ``object``: a prebuilt, embedded Vocabulary (the reference);
- ``names``: the same Python list of names on every call (the natural call);
- ``names, a new list``: a new list of the same names on every call (``list(names)``);
- ``file``: the same ``vocab=`` file on every call;
- ``names, no memo`` / ``file, no memo``: the same with the memo disabled (what every call cost
  before the memo: parse, embed = a store lookup keyed by every text, and reading the FAISS index);
- ``100 names``: a 100-name list, the flat-cost baseline (goal: natural call / 100 names <= 1.25).

Besides the medians of whole calls, the medians of the door's vocabulary stage and of everything but
the model's forward pass (the same for every way, and the stage a shared machine disturbs most).

The first call of each vocabulary embeds it into the cache (minutes for 10^5 names, once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_report import emit
from PIL import Image

from omniseg.data.dataset import open_dataset
from omniseg.registry import load
from omniseg.vocab import Vocabulary
from omniseg.vocab_memo import VocabularyMemo
from omniseg.vocabularies import synthetic_names

MSRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrc_v2"


def held_out_images(count: int) -> list[np.ndarray]:
    """The first ``count`` photos of MSRC-v2's val part (fixed split, seed 0), else scikit-image's."""
    if (MSRC / "classes.json").is_file():
        samples = open_dataset(MSRC).split("val")[:count]
        return [np.asarray(Image.open(s.image_path).convert("RGB")) for s in samples]
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    return photos[:count]


def medians(calls: dict, images: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per way, median seconds per call (``total``), of the door's vocabulary stage (``vocabulary``:
    what the memo saves) and of everything but the model's forward pass (``besides_model``: the
    vocabulary and labelling stages, which a loaded machine disturbs far less than the forward pass).
    The ways run interleaved image by image: a load that comes and goes on a shared machine weighs on
    every way alike, not on whichever ran at the time (``main`` runs the memo-free ways apart)."""
    for call in calls.values():
        call(images[0])  # warm: the first call may embed or build an index
    seen: dict[str, dict[str, list[float]]] = {
        name: {"total": [], "vocabulary": [], "besides_model": []} for name in calls
    }
    for image in images:
        for name, call in calls.items():
            start = time.perf_counter()
            timings = call(image).timings
            total = time.perf_counter() - start
            seen[name]["total"].append(total)
            seen[name]["vocabulary"].append(timings["vocabulary_s"])
            seen[name]["besides_model"].append(total - timings["model_s"])
    return {
        stage: {name: round(statistics.median(values[stage]), 4) for name, values in seen.items()}
        for stage in ("total", "vocabulary", "besides_model")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/omniseg-vocab-memo"))
    args = parser.parse_args()
    images = held_out_images(args.images)
    seg = load()
    names = synthetic_names(args.names)
    args.work.mkdir(parents=True, exist_ok=True)
    vocab_file = args.work / f"names_{args.names}.txt"
    vocab_file.write_text("\n".join(names) + "\n")
    prebuilt = Vocabulary.from_names(names).embed(seg.text_encoder)
    small = [f"{n}" for n in names[:100]]
    memo = seg._vocabularies

    def without_memo(call):
        def run(image):
            seg._vocabularies = VocabularyMemo(size=0)
            try:
                return call(image)
            finally:
                seg._vocabularies = memo

        return run

    calls = {
        "100 names": lambda image: seg.segment(image, classes=list(small)),
        "object": lambda image: seg.segment(image, classes=prebuilt),
        "names": lambda image: seg.segment(image, classes=names),
        "names, a new list": lambda image: seg.segment(image, classes=list(names)),
        "file": lambda image: seg.segment(image, vocab=str(vocab_file)),
    }
    # Apart, after the rest: rebuilding 10^5 embeddings and an index per call churns memory, and slowed
    # the forward pass of whatever ran next when they were interleaved with the others.
    before = {
        "names, no memo": without_memo(lambda image: seg.segment(image, classes=list(names))),
        "file, no memo": without_memo(lambda image: seg.segment(image, vocab=str(vocab_file))),
    }
    load_before = os.getloadavg()[0]
    report = medians(calls, images)
    for stage, values in medians(before, images).items():
        report[stage] |= values

    def ratios(stage: str) -> dict[str, float]:
        base = report[stage]["100 names"]
        return {
            f"{name} / 100 names": round(value / base, 2)
            for name, value in report[stage].items()
            if name != "100 names"
        }

    result = {
        "names": args.names,
        "images": len(images),
        "median_s_per_image": report["total"],
        "ratios": ratios("total"),
        "median_vocabulary_stage_s": report["vocabulary"],
        "median_s_besides_model": report["besides_model"],
        "ratios_besides_model": ratios("besides_model"),
        "images_from": "MSRC-v2 val part" if (MSRC / "classes.json").is_file() else "scikit-image",
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after
        "cpus": os.cpu_count(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()

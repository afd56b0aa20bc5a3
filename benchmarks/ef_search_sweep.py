"""efSearch sweep of the 10^6-prompt HNSW-SQ8 index: top-1 agreement with exact search and search time.

    python benchmarks/ef_search_sweep.py --images 64 --ef 256,384,512,768 [--rerank 128,512] \
        --json benchmarks/results/ef_search_sweep.json

Needs the embedding store and index of `omniseg bench vocab --sizes ...,1000000` (the first run builds both).
Queries: the region embeddings of the first N default images (CamVid frames); the search is PromptIndex's
(approximate candidates re-scored exactly), timed per image of regions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import omniseg
from omniseg.atomic import atomic_write_text
from omniseg.eval.scale import default_images
from omniseg.search import PromptIndex, SearchConfig, exact_topk
from omniseg.vocab import Vocabulary
from omniseg.vocabularies import synthetic_names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--ef", default="256,384,512,768")
    parser.add_argument("--rerank", default="128", help="approximate candidates re-scored exactly (list)")
    parser.add_argument("--json")
    args = parser.parse_args()
    segmenter = omniseg.load(max_size=512)
    vocab = Vocabulary.from_names(synthetic_names(args.size))
    vocab.embed(segmenter.text_encoder)  # opens the store (encodes only on the first run)
    per_image = [segmenter.regions(im).embeddings.float().numpy() for im in default_images(args.images)]
    exact = [exact_topk(q, vocab.embeddings, 1)[1][:, 0] for q in per_image]
    rows = []
    settings = [(int(e), int(r)) for e in args.ef.split(",") for r in args.rerank.split(",")]
    for ef, rerank in settings:
        config = replace(SearchConfig(), large_ef_search=ef, rerank=rerank)
        index = PromptIndex.build(vocab.embeddings, vocab.store_dir, config)
        same = total = 0
        times = []
        for q, e in zip(per_image, exact, strict=True):
            t = time.perf_counter()
            _, ids = index.search(q, 1)
            times.append(time.perf_counter() - t)
            same += int((ids[:, 0] == e).sum())
            total += len(e)
        row = {
            "ef_search": ef,
            "rerank": rerank,
            "index": index.kind,
            "top1_agreement": round(same / total, 4),
            "regions": total,
            "median_search_ms_per_image": round(statistics.median(times) * 1000, 1),
        }
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        atomic_write_text(args.json, json.dumps({"size": args.size, "images": args.images, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

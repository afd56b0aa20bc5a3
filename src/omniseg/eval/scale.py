"""Vocabulary-scale benchmark (`omniseg bench vocab`): does per-image cost stay flat from 10^2 to
10^6 classes?

One run, one model, the same images for every size. The vocabulary of size n is the first n names
of ``omniseg.vocabularies.synthetic_names`` (WordNet nouns, then '<modifier> <noun>' pairs),
embedded once for the largest size through the memory-mapped store (resumable) and sliced for the
smaller ones. Each size gets the index the library would choose (exact / HNSW / IVF) built or
loaded from the cache directory, then every image is segmented end to end (`Segmenter.segment`:
image -> model -> index lookups -> eq. 6 -> label map), sizes interleaved per image so that load
from other processes hits every size alike.

Reported per size: median (p10, p90) per-image latency, index kind and build or load time, the
process's peak RSS after setting up that size (sizes are set up in increasing order, all before
any timing), and for approximate indexes the top-1 agreement with exact search: the share of
regions whose best prompt is the same, and the share of pixels whose label is the same as with an
exact index. ``peak_rss_mib`` is the whole run's peak (every size loaded at once, plus the exact
search of the agreement check): an upper bound for any one size; ``--sizes 1000000`` alone gives
that size's own peak.
"""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from omniseg.search import PromptIndex, SearchConfig, exact_topk
from omniseg.segmenter import Segmenter
from omniseg.tasks.semantic import semantic_segmentation_vocab
from omniseg.vocab import Vocabulary
from omniseg.vocabularies import synthetic_names

SHARED_IMAGES = Path(__file__).resolve().parents[4] / "shared" / "data" / "camvid" / "images"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def default_images(count: int) -> list[np.ndarray]:
    """CamVid frames when ../shared is present, else scikit-image's photos (always the same ones)."""
    from PIL import Image

    if SHARED_IMAGES.is_dir():
        paths = sorted(SHARED_IMAGES.iterdir())[:count]
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    return [np.asarray(Image.fromarray(p).convert("RGB")) for p in photos[:count]]


def sized_vocabulary(full: Vocabulary, names: Sequence[str], size: int) -> Vocabulary:
    """The first ``size`` classes of an embedded one-prompt-per-class vocabulary, sharing its memory map."""
    assert full.embeddings is not None
    vocab = Vocabulary([[n] for n in names[:size]])
    vocab.embeddings = full.embeddings[:size]
    vocab.prompt_to_class = np.arange(size, dtype=np.int64)
    vocab.store_dir = full.store_dir
    return vocab


def run_vocab_benchmark(
    segmenter: Segmenter,
    sizes: Sequence[int],
    images: Sequence[np.ndarray],
    repeats: int = 1,
    config: SearchConfig | None = None,
    agreement: bool = True,
    log: Callable[[str], None] = print,
    vocabulary: Vocabulary | None = None,
    agreement_images: Sequence[np.ndarray] | None = None,
) -> dict:
    """vocabulary: an embedded one-prompt-per-class vocabulary of at least max(sizes) classes to
    use instead of embedding ``synthetic_names`` with the segmenter's text encoder.

    agreement_images: images for the approximate-vs-exact comparison (default: the timed ones). A
    few hundred regions decide 0.99 by two or three misses, so the check wants more images than the
    timing does."""

    sizes = sorted(set(int(s) for s in sizes))
    agreement_images = images if agreement_images is None else agreement_images
    config = config or SearchConfig()
    segmenter.search = config
    t0 = time.perf_counter()
    full = vocabulary or Vocabulary.from_names(synthetic_names(sizes[-1]))
    names = full.classes
    t_names = time.perf_counter() - t0
    t0 = time.perf_counter()
    if full.embeddings is None:
        full.embed(segmenter.text_encoder)
    t_embed = time.perf_counter() - t0
    log(f"{len(names):,} names in {t_names:.1f} s; embeddings ready in {t_embed:.2f} s ({full.store_dir})")
    report: dict = {
        "sizes": sizes,
        "images": len(images),
        "repeats": repeats,
        "top_k": segmenter.top_k,
        "agreement_images": len(agreement_images),
        "search": asdict(config),
        "names_seconds": round(t_names, 2),
        "embeddings_seconds": round(t_embed, 2),
        "store": str(full.store_dir) if full.store_dir else None,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "results": {},
    }
    vocabs: dict[int, Vocabulary] = {}
    for size in sizes:
        vocab = sized_vocabulary(full, names, size)
        t0 = time.perf_counter()
        index = vocab.index(config)
        seconds = time.perf_counter() - t0
        vocabs[size] = vocab
        how = "loaded" if index.loaded_from else ("built" if index.kind != "exact" else "none")
        report["results"][size] = {"index": index.kind, "index_" + how + "_seconds": round(seconds, 2)}
        report["results"][size]["peak_rss_after_setup_mib"] = peak_rss_mib()
        log(f"size {size:>9,}: index {index.kind} ({how} in {seconds:.1f} s), peak RSS so far {peak_rss_mib():.0f} MiB")
    for image in images[:1]:  # warm-up: first-call costs (allocator, lazy imports) out of the timings
        for size in sizes:
            segmenter.segment(image, classes=vocabs[size])
    times: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(repeats):
        for image in images:
            for size in sizes:
                t0 = time.perf_counter()
                segmenter.segment(image, classes=vocabs[size])
                times[size].append(time.perf_counter() - t0)
    for size in sizes:
        samples = sorted(times[size])
        row = report["results"][size]
        row["median_s"] = round(statistics.median(samples), 4)
        row["p10_s"] = round(samples[int(0.1 * (len(samples) - 1))], 4)
        row["p90_s"] = round(samples[int(0.9 * (len(samples) - 1))], 4)
        if agreement and row["index"] != "exact":
            row.update(_agreement(segmenter, vocabs[size], agreement_images))
        log(f"size {size:>9,}: {_describe(row)}")
    smallest, largest = sizes[0], sizes[-1]
    report["peak_rss_mib"] = peak_rss_mib()
    if 100_000 in times and smallest in times:
        report["latency_ratio_1e5_vs_smallest"] = round(
            report["results"][100_000]["median_s"] / report["results"][smallest]["median_s"], 3
        )
    report["latency_ratio_largest_vs_smallest"] = round(
        report["results"][largest]["median_s"] / report["results"][smallest]["median_s"], 3
    )
    return report


def _describe(row: dict) -> str:
    text = f"median {row['median_s'] * 1000:.0f} ms (p10 {row['p10_s'] * 1000:.0f}, p90 {row['p90_s'] * 1000:.0f})"
    if "region_top1_agreement" in row:
        text += f", top-1 agreement {row['region_top1_agreement']:.4f} (pixels {row['pixel_agreement']:.4f})"
    return text


@torch.inference_mode()
def _agreement(segmenter: Segmenter, vocab: Vocabulary, images: Sequence[np.ndarray]) -> dict:
    """Approximate vs exact search: same best prompt per region; same label per pixel."""

    approx = vocab.index()
    assert vocab.embeddings is not None
    exact_vocab = Vocabulary(vocab.synonyms)
    exact_vocab.embeddings, exact_vocab.prompt_to_class = vocab.embeddings, vocab.prompt_to_class
    exact_vocab._index = PromptIndex(vocab.embeddings, "exact", None, approx.config)
    same = total = 0
    same_px = total_px = 0
    for image in images:
        regions = segmenter.regions(image)
        queries = regions.embeddings.float().numpy()
        _, approx_ids = approx.search(queries, 1)
        _, exact_ids = exact_topk(queries, vocab.embeddings, 1)
        same += int((approx_ids[:, 0] == exact_ids[:, 0]).sum())
        total += len(queries)
        size = tuple(image.shape[:2])
        a, _ = semantic_segmentation_vocab(regions, vocab, size, k=segmenter.top_k, config=approx.config)
        e, _ = semantic_segmentation_vocab(regions, exact_vocab, size, k=segmenter.top_k, config=approx.config)
        same_px += int((a == e).sum())
        total_px += a.numel()
    return {"region_top1_agreement": round(same / total, 4), "pixel_agreement": round(same_px / total_px, 4)}

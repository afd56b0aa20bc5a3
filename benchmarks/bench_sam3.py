"""Cost of SAM 3 concept segmentation and SAM 2 clicks / video on CPU, at full size (issue 16).

The models are built from their default configs (facebook/sam3's architecture: ~850M parameters,
1008 px; SAM 2.1 Hiera-T at 1024 px) with random weights: the architecture's real cost, no
download. Accuracy is meaningless here, only time and memory.

For SAM 3 the image is encoded once and N concepts are decoded against that encoding in batches
(omniseg.backends.sam3); CPU seconds per image are reported for N = 1, 10, 100 (process CPU time,
all threads, and wall time), with the vision encoder's share, and the peak RSS during each run. Every
concept's mask head is run, as if every concept were found (the worst case); the mask head's share
is reported, the rest being the cost when no concept is found (omniseg skips the mask heads of
prompts without a detection).

    nice -n 5 python benchmarks/bench_sam3.py --out benchmarks/results/sam3_cost.json

--door measures SAM 3 as users get it: the registered ``sam3`` source (``Sam3Source``, what
``sam3:DIR`` builds) behind the door (``omniseg.load(source).segment(image, classes=vocabulary)``),
for 1, 10, 100 concepts and a --vocabulary of 1000 names (above 256 prompts the source shortlists
the names per image, sam3_shortlist). Each vocabulary's prompts are encoded first (``prepare``: once
per vocabulary, reported apart), then one new image is segmented: the per-image cost, mask heads
run only where SAM 3 finds something above its default threshold, as in use.

    nice -n 10 python benchmarks/bench_sam3.py --door --skip-sam2 --out benchmarks/results/sam3_door_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


class RssPeak:
    """Samples this process's resident set size (VmRSS) every few ms; peak over a ``with`` block, in MiB."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.peak, self._stop = every, 0.0, threading.Event()

    @staticmethod
    def now() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.every)

    def __enter__(self) -> RssPeak:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def measure(fn: Callable[[], Any]) -> dict:
    """Wall and process CPU seconds of fn(), and the peak RSS while it ran."""
    with RssPeak() as rss:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss.peak)}


class HashTokenizer:
    """Stands in for SAM 3's CLIP tokenizer (its vocabulary files are not available offline): words hashed
    into CLIP's 49408 ids, [BOS] words [EOS], padded to max_length. Tokenizing is not what is measured."""

    def __call__(self, texts, padding="max_length", max_length=32, truncation=True, return_tensors="pt"):
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, text in enumerate(texts):
            words = [1 + zlib.crc32(w.encode()) % 49000 for w in text.split()][: max_length - 2]
            row = [49406, *words, 49407]
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def image(size: tuple[int, int] = (480, 640), seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)


class Timed:
    """Wraps a module's ``forward``: process CPU seconds spent in it and the rows (prompts) it ran on."""

    def __init__(self, module: Any, rows: str | None = None) -> None:
        self.cpu_s, self.rows, self._rows = 0.0, 0, rows
        real = module.forward

        def forward(*a: Any, **k: Any) -> Any:
            start = time.process_time()
            try:
                return real(*a, **k)
            finally:
                self.cpu_s += time.process_time() - start
                if self._rows is not None:
                    self.rows += int(k[self._rows].shape[0])

        module.forward = forward

    def take(self) -> tuple[float, int]:
        spent, rows = round(self.cpu_s, 2), self.rows
        self.cpu_s, self.rows = 0.0, 0
        return spent, rows


def full_size_sam3(prompt_batch: int) -> Any:
    """SAM 3 at its default (facebook/sam3) configuration, random weights, as omniseg's adapter."""
    from transformers import Sam3Config, Sam3Model

    from omniseg.backends.sam3 import Sam3Backend

    torch.manual_seed(0)
    return Sam3Backend.from_model(Sam3Model(Sam3Config()).eval(), HashTokenizer(), prompt_batch=prompt_batch)


def bench_sam3_door(concepts: list[int], vocabulary: int, backend: Any, task: str = "semantic") -> dict:
    """Per-image cost of ``omniseg.load(Sam3Source).segment`` for each vocabulary size (see the docstring)."""
    import omniseg
    from omniseg.backends.sam3_source import SHORTLIST_ABOVE, Sam3Source
    from omniseg.vocab import Vocabulary

    source = Sam3Source("random-full-size", backend=backend)
    door = omniseg.load(source)
    heads = Timed(backend.model.mask_decoder, rows="decoder_queries")
    texts = Timed(backend.model.text_encoder, rows="input_ids")
    out: dict[str, Any] = {
        "parameters": sum(p.numel() for p in backend.model.parameters()),
        "input": backend.image_spec.size,
        "prompt_batch": backend.prompt_batch,
        "threshold": backend.threshold,
        "shortlist_above": SHORTLIST_ABOVE,
        "shortlist_k": source.shortlist,
        "task": task,
        "rss_after_build_mib": round(RssPeak.now()),
    }
    for seed, n in enumerate([*concepts, vocabulary], start=1):
        vocab = Vocabulary.from_names([f"concept number {k}" for k in range(n)])
        backend._text_cache.clear()
        prepare = measure(lambda vocab=vocab: source.prepare(vocab))
        heads.take(), texts.take()
        picture = image(seed=seed)  # a new image: its vision encoding is part of the cost
        found: dict[str, Any] = {}
        run = measure(
            lambda vocab=vocab, picture=picture, found=found: found.setdefault(
                "r", door.segment(picture, classes=vocab, task=task)
            )
        )
        run["mask_head_cpu_s"], run["mask_heads_run"] = heads.take()
        run["text_encoder_cpu_s"], run["texts_encoded"] = texts.take()
        run["prepare_vocabulary"] = prepare
        run["shortlisted"] = n > SHORTLIST_ABOVE
        run["timings"] = {k: round(v, 2) for k, v in found["r"].timings.items()}
        out[f"{n}_concepts"] = run
        print(n, run, flush=True)
    base = out[f"{concepts[0]}_concepts"]["cpu_s"]
    out["ratio_cpu_vs_first"] = {n: round(out[f"{n}_concepts"]["cpu_s"] / base, 2) for n in [*concepts, vocabulary]}
    return out


def bench_sam3(concepts: list[int], prompt_batch: int, shortlist: int | None = None) -> dict:
    from transformers import Sam3Config, Sam3Model

    from omniseg.backends.sam3 import Sam3Backend
    from omniseg.backends.sam3_shortlist import segment_many

    torch.manual_seed(0)
    model = Sam3Model(Sam3Config()).eval()
    params = sum(p.numel() for p in model.parameters())
    backend = Sam3Backend.from_model(model, HashTokenizer(), prompt_batch=prompt_batch)
    names = [f"concept number {i}" for i in range(max(concepts))]
    picture = image()
    out: dict[str, Any] = {
        "parameters": params,
        "input": backend.image_spec.size,
        "rss_after_build_mib": round(RssPeak.now()),
    }
    encoding: dict[str, Any] = {}
    out["vision_encoder"] = measure(lambda: encoding.setdefault("e", backend.encode_image(picture)))
    # the mask head's CPU time, to split each run into "score every concept" and "masks for the found ones"
    head = backend.model.mask_decoder
    real_forward, spent = head.forward, [0.0]

    def timed_forward(*a: Any, **k: Any) -> Any:
        start = time.process_time()
        try:
            return real_forward(*a, **k)
        finally:
            spent[0] += time.process_time() - start

    head.forward = timed_forward
    # every concept's mask head runs (the worst case: every concept found), whatever the scores; instances
    # are kept at the default threshold (keeping every query of 100 concepts would be 20000 image-size masks)
    decode = backend.decode
    backend.decode = lambda encoding, prompts, threshold=None: decode(encoding, prompts, None)  # type: ignore[method-assign]
    for n in concepts:
        backend._text_cache.clear()  # text encoding counted in each run
        spent[0] = 0.0
        if shortlist:  # every name scored, the best `shortlist` decoded
            run = measure(lambda n=n: segment_many(backend, picture, names[:n], k=shortlist))
        else:
            run = measure(lambda n=n: backend.segment(picture, names[:n]))
        run["mask_head_cpu_s"] = round(spent[0], 2)
        run["cpu_s_if_no_concept_found"] = round(run["cpu_s"] - spent[0], 2)
        out[f"{n}_concepts"] = run
        print(n, run, flush=True)
    base = out[f"{concepts[0]}_concepts"]["cpu_s"]
    out["ratio_cpu_vs_first"] = {n: round(out[f"{n}_concepts"]["cpu_s"] / base, 2) for n in concepts}
    if shortlist:
        out["shortlist_k"] = shortlist
    return out


def bench_sam2(frames: int) -> dict:
    from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel

    from omniseg.backends.sam2 import ClickBackend
    from omniseg.backends.sam2_video import VideoPropagator

    torch.manual_seed(0)
    out: dict[str, Any] = {}
    clicker = ClickBackend.from_model(Sam2Model(Sam2Config()))
    out["click_parameters"] = sum(p.numel() for p in clicker.model.parameters())
    picture = image()
    clicker.predict(picture, [(100.0, 100.0)], [1])  # warm-up
    encoded: dict[str, Any] = {}
    out["click_encode"] = measure(lambda: encoded.setdefault("e", clicker.encode(picture)))
    out["click_one_click_after_encode"] = measure(lambda: clicker.predict(encoded["e"], [(320.0, 240.0)], [1]))
    out["click_image_plus_3_clicks"] = measure(
        lambda: [
            clicker.predict(picture if k == 0 else encoded["e"], [(320.0, 240.0)] * (k + 1), [1] * (k + 1))
            for k in range(3)
        ]
    )
    video = VideoPropagator.from_model(Sam2VideoModel(Sam2VideoConfig()))
    clip = [np.roll(image(), 8 * i, axis=1) for i in range(frames)]
    first = np.zeros(clip[0].shape[:2], np.uint8)
    first[100:300, 200:400] = 1
    out["video_parameters"] = sum(p.numel() for p in video.model.parameters())
    out[f"video_{frames}_frames_1_object"] = measure(lambda: list(video.propagate(clip, first)))
    run = out[f"video_{frames}_frames_1_object"]
    out["video_cpu_s_per_frame"] = round(run["cpu_s"] / frames, 2)
    out["video_wall_s_per_frame"] = round(run["wall_s"] / frames, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concepts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--prompt-batch", type=int, default=8)
    parser.add_argument("--shortlist", type=int, help="decode only the best K names per image (segment_many)")
    parser.add_argument("--door", action="store_true", help="SAM 3 through omniseg.load(Sam3Source), not the adapter")
    parser.add_argument("--vocabulary", type=int, default=1000, help="--door: names of the large vocabulary")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--skip-sam3", action="store_true")
    parser.add_argument("--skip-sam2", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "note": "random weights, default (full-size) configs; machine shared with other jobs",
    }
    report["load_average_at_start"] = os.getloadavg()
    if not args.skip_sam3 and args.door:
        report["sam3_door"] = bench_sam3_door(args.concepts, args.vocabulary, full_size_sam3(args.prompt_batch))
        print(json.dumps(report["sam3_door"], indent=1), flush=True)
    elif not args.skip_sam3:
        report["sam3"] = bench_sam3(args.concepts, args.prompt_batch, args.shortlist)
        print(json.dumps(report["sam3"], indent=1), flush=True)
    if not args.skip_sam2:
        report["sam2"] = bench_sam2(args.frames)
        print(json.dumps(report["sam2"], indent=1), flush=True)
    report["load_average_at_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    with torch.inference_mode():
        main()

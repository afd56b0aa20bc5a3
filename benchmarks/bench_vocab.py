"""Vocabulary-scale benchmark: the same as `omniseg bench vocab` (see omniseg.eval.scale).

    nice -n 19 .venv/bin/python benchmarks/bench_vocab.py --sizes 100,1000,10000,100000,1000000 \\
        --json benchmarks/results/vocab_scale.json

The first run embeds the largest vocabulary (10^6 prompts: about half an hour of one CPU core;
progress bar, resumable: run it again after an interruption) and builds the FAISS indexes; later
runs load both from the cache directory ($OMNISEG_CACHE or ~/.cache/omniseg).

``--stand-in-above N`` (this script only) is for machines where encoding 10^6 prompts is out of
reach: classes 0..N-1 are the real MiniLM embeddings of the first N synthetic names (their store
must exist: run with ``--sizes ...,N`` first), and every class from N on is a compound
"<noun b> <noun a>" of two real names whose embedding is normalize(0.65 e(a) + 0.35 e(b)), a
stand-in for how the encoder places compound nouns. Shapes, memory and index work are those of a
real vocabulary of that size; search agreement is measured on the stand-in distribution, so
report it as such.
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np

from omniseg.cli import main


def stand_in_vocabulary(real_count: int, total: int, seed: int = 0):
    from omniseg.text.cache import default_cache_dir
    from omniseg.text.encoder import default_text_encoder
    from omniseg.text.store import EmbeddingStore
    from omniseg.vocab import Vocabulary
    from omniseg.vocabularies import synthetic_names

    names = synthetic_names(real_count)
    encoder = default_text_encoder()
    store = EmbeddingStore(default_cache_dir(), encoder.encoder_id, names)
    real = store.load()
    if real is None:
        raise SystemExit(f"no embedding store of the first {real_count:,} names yet: run --sizes ...,{real_count}")
    key = hashlib.sha256(f"{store.key}:{total}:{seed}".encode()).hexdigest()[:16]
    directory = store.directory.parent / f"standin-{key}"
    directory.mkdir(parents=True, exist_ok=True)
    for built in store.directory.glob("index-*"):  # the real rows are the same: reuse their indexes
        if not (directory / built.name).exists():
            (directory / built.name).symlink_to(built)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, real_count, total - real_count)
    b = rng.integers(0, real_count, total - real_count)
    path = directory / "vectors.npy"
    if not (directory / "complete").is_file():
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, real.shape[1]))
        out[:real_count] = real
        for lo in range(0, total - real_count, 65_536):
            hi = min(total - real_count, lo + 65_536)
            mix = 0.65 * real[a[lo:hi]] + 0.35 * real[b[lo:hi]]
            out[real_count + lo : real_count + hi] = mix / np.linalg.norm(mix, axis=1, keepdims=True)
        out.flush()
        del out
        (directory / "complete").write_text("ok\n")
    compound = [f"{names[j]} {names[i]}" for i, j in zip(a, b, strict=True)]
    vocab = Vocabulary([[n] for n in names + compound])
    vocab.embeddings = np.load(path, mmap_mode="r")
    vocab.prompt_to_class = np.arange(total, dtype=np.int64)
    vocab.store_dir = directory
    return vocab


def run_with_stand_in(argv: list[str]) -> int:
    from omniseg.cli import build_parser
    from omniseg.commands.bench import run_vocab

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--stand-in-above", type=int, required=True)
    known, rest = extra.parse_known_args(argv)
    args = build_parser().parse_args(["bench", "vocab", *rest])
    vocab = stand_in_vocabulary(known.stand_in_above, max(args.sizes))
    return run_vocab(args, vocabulary=vocab, extra={"stand_in_above": known.stand_in_above})


if __name__ == "__main__":
    argv = sys.argv[1:]
    if any(a.startswith("--stand-in-above") for a in argv):
        sys.exit(run_with_stand_in(argv))
    sys.exit(main(["bench", "vocab", *argv]))

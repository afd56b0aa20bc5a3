"""Fault injection into the caches and stores (issue 13, items 6 and 7): corrupt, truncate, lock,
read-only, NaN. Every case must end in the right answer (rebuilt, or computed without the cache)
with one warning naming the file, never an internal error and never a silently wrong answer."""

from __future__ import annotations

import copy
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, make_scene
from omniseg.errors import CacheWarning

TEXTS = ["sky", "road", "red car", "tree"]


@pytest.fixture
def reference(text_encoder) -> np.ndarray:
    return text_encoder.encode_uncached(TEXTS)


def encoder_with_cache(text_encoder, directory: Path):
    """The session's MiniLM (loaded once) with its own SQLite cache under ``directory``."""
    from omniseg.text.cache import EmbeddingCache

    encoder = copy.copy(text_encoder)
    encoder.cache = EmbeddingCache(directory, encoder.encoder_id)
    return encoder


def cache_warnings(run) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def filled_cache(text_encoder, directory: Path) -> Path:
    encoder_with_cache(text_encoder, directory).encode(TEXTS)
    path = directory / "text_embeddings.sqlite"
    assert path.stat().st_size > 0
    return path


def assert_right(result: np.ndarray, reference: np.ndarray) -> None:
    assert result.shape == reference.shape and np.allclose(result, reference, atol=1e-5)


@pytest.mark.parametrize("damage", ["random", "truncated", "zero-page"])
def test_damaged_sqlite_cache_is_rebuilt(text_encoder, reference, tmp_path, damage) -> None:
    path = filled_cache(text_encoder, tmp_path)
    data = path.read_bytes()
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # the header intact, the pages zeroed
        path.write_bytes(data[:100] + bytes(len(data) - 100))
    result, said = cache_warnings(lambda: encoder_with_cache(text_encoder, tmp_path).encode(TEXTS))
    assert_right(result, reference)
    assert len(said) == 1 and str(path) in said[0] and "rebuilt" in said[0], said
    again, said = cache_warnings(lambda: encoder_with_cache(text_encoder, tmp_path).encode(TEXTS))
    assert_right(again, reference)
    assert said == []  # healed: the next run reads the rebuilt cache quietly


@pytest.mark.parametrize("blob", [b"\x00\x01\x02", np.full(384, np.nan, np.float32).tobytes(), b"\x00" * 64])
def test_damaged_stored_vector_is_recomputed(text_encoder, reference, tmp_path, blob) -> None:
    path = filled_cache(text_encoder, tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE emb SET vec=? WHERE text=?", (blob, "road"))
    result, said = cache_warnings(lambda: encoder_with_cache(text_encoder, tmp_path).encode(TEXTS))
    assert_right(result, reference)
    assert len(said) == 1 and str(path) in said[0] and "recomputed" in said[0], said
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT vec FROM emb WHERE text='road'").fetchone()
    assert np.allclose(np.frombuffer(stored, np.float32), reference[1], atol=1e-5)  # replaced


def test_cache_dir_that_is_a_file_runs_uncached(text_encoder, reference, tmp_path) -> None:
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    result, said = cache_warnings(lambda: encoder_with_cache(text_encoder, a_file).encode(TEXTS))
    assert_right(result, reference)
    assert len(said) == 1 and str(a_file) in said[0] and "without the cache" in said[0], said


def test_read_only_cache_runs_uncached(text_encoder, reference, tmp_path, monkeypatch) -> None:
    import omniseg.text.cache as cache_module

    path = filled_cache(text_encoder, tmp_path)
    real = sqlite3.connect

    def read_only(database, *args, **kwargs):  # what a read-only file system gives (root ignores chmod)
        return real(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(cache_module.sqlite3, "connect", read_only)
    texts = [*TEXTS, "bicycle"]  # one new text: it must be stored, and cannot be
    result, said = cache_warnings(lambda: encoder_with_cache(text_encoder, tmp_path).encode(texts))
    assert_right(result, text_encoder.encode_uncached(texts))
    assert len(said) == 1 and str(path) in said[0] and "readonly" in said[0], said


def test_locked_cache_runs_uncached(text_encoder, reference, tmp_path, monkeypatch) -> None:
    import omniseg.text.cache as cache_module

    path = filled_cache(text_encoder, tmp_path)
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
    try:
        result, said = cache_warnings(lambda: encoder_with_cache(text_encoder, tmp_path).encode(TEXTS))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_right(result, reference)
    assert len(said) == 1 and str(path) in said[0] and "locked" in said[0], said


# ------------------------------------------------------------------------ memory-mapped store
def fake_encode(texts) -> np.ndarray:
    """Deterministic unit vectors per text (the store's logic does not need a real encoder)."""
    out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


STORE_TEXTS = [f"name {i}" for i in range(50)]


def built_store(root: Path):
    from omniseg.text.store import EmbeddingStore

    store = EmbeddingStore(root, "fake", STORE_TEXTS)
    store.build(fake_encode, 16, chunk=16, progress=False)
    return store


@pytest.mark.parametrize("damage", ["truncated", "nan-rows", "wrong-shape", "random"])
def test_damaged_store_is_encoded_again(tmp_path, damage) -> None:
    from omniseg.text.store import EmbeddingStore

    store = built_store(tmp_path)
    path = store.vectors_path
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-700])
    elif damage == "nan-rows":
        vectors = np.load(path, mmap_mode="r+")
        vectors[7] = np.nan
        vectors.flush()
        del vectors
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later write
    elif damage == "wrong-shape":
        np.save(path, np.zeros((50, 8), np.float32))
    else:
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    fresh = EmbeddingStore(tmp_path, "fake", STORE_TEXTS)
    result, said = cache_warnings(lambda: np.array(fresh.build(fake_encode, 16, chunk=16, progress=False)))
    assert np.allclose(result, fake_encode(STORE_TEXTS)), "a damaged row reached the answer"
    assert len(said) == 1 and str(path) in said[0] and "encoded again" in said[0], said
    again, said = cache_warnings(lambda: EmbeddingStore(tmp_path, "fake", STORE_TEXTS).load(16))
    assert again is not None and said == []


def test_store_root_that_is_a_file_runs_in_memory(tmp_path, monkeypatch) -> None:
    import omniseg.text.store as store_module

    class Fake:
        encoder_id, dim = "fake", 16

        def encode(self, texts):
            return fake_encode(texts)

    monkeypatch.setattr(store_module, "LARGE_PROMPTS", 10)
    a_file = tmp_path / "cache_file"
    a_file.write_text("x")
    (vectors, directory), said = cache_warnings(lambda: store_module.embed_texts(Fake(), STORE_TEXTS, False, a_file))
    assert directory is None and np.allclose(vectors, fake_encode(STORE_TEXTS))
    assert len(said) == 1 and str(a_file) in said[0], said


@pytest.mark.parametrize("damage", ["random", "other-vectors"])
def test_damaged_faiss_index_is_rebuilt(tmp_path, damage) -> None:
    pytest.importorskip("faiss")
    from omniseg.search import PromptIndex

    vectors = fake_encode([f"p{i}" for i in range(300)])
    first = PromptIndex.build(vectors, tmp_path, kind="hnsw")
    (path,) = tmp_path.glob("index-hnsw-*.faiss")
    if damage == "random":
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    else:  # a valid index file, of other vectors
        other = PromptIndex.build(fake_encode([f"q{i}" for i in range(100)]), tmp_path / "o", kind="hnsw")
        (other_path,) = (tmp_path / "o").glob("*.faiss")
        path.write_bytes(other_path.read_bytes())
        assert other.index.ntotal == 100
    index, said = cache_warnings(lambda: PromptIndex.build(vectors, tmp_path, kind="hnsw"))
    assert index.loaded_from is None and index.index.ntotal == 300
    scores, ids = index.search(vectors[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1, atol=1e-5)
    assert len(said) == 1 and str(path) in said[0] and "rebuilt" in said[0], said
    assert PromptIndex.build(vectors, tmp_path, kind="hnsw").loaded_from == path  # the rebuilt file is read
    del first


# ---------------------------------------------------------------------------------------- CLI
def run_segment(tiny_model_dir, image: Path, out: Path, cache: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "omniseg", "segment", str(image), "--classes", "sky,road,car", "--model"]
    argv += [str(tiny_model_dir), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMNISEG_CACHE": str(cache)}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH") or str(REPO_ROOT / "src")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_cli_on_damaged_caches_gives_the_right_answer_and_one_warning(tiny_model_dir, tmp_path) -> None:
    """The CLI end to end (fresh processes): a corrupt cache and a cache 'directory' that is a file
    give exit 0, the label map of a clean run, and exactly one warning line naming the file."""
    image = tmp_path / "street.png"
    Image.fromarray(make_scene(np.random.default_rng(4))[0]).save(image)
    clean = run_segment(tiny_model_dir, image, tmp_path / "clean", tmp_path / "clean_cache")
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr
    expected = (tmp_path / "clean" / "street.png").read_bytes()
    corrupt = tmp_path / "corrupt_cache"
    corrupt.mkdir()
    (corrupt / "text_embeddings.sqlite").write_bytes(b"this is not a database" * 100)
    a_file = tmp_path / "cache_is_a_file"
    a_file.write_text("x")
    for cache, named in ((corrupt, corrupt / "text_embeddings.sqlite"), (a_file, a_file)):
        out = tmp_path / f"out_{cache.name}"
        done = run_segment(tiny_model_dir, image, out, cache)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 0, done.stderr
        assert len(lines) == 1 and lines[0].startswith("omniseg: warning: cache") and str(named) in lines[0], lines
        assert (out / "street.png").read_bytes() == expected

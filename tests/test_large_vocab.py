"""Shipped vocabularies, prompt templates, the memory-mapped embedding store, nearest-neighbour
search, large-vocabulary segmentation and outputs beyond 65,535 classes (issue 5).

A hash-seeded fake text encoder stands in for MiniLM wherever thousands of texts are embedded:
these tests check plumbing and exactness, not language."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from omniseg import vocabularies
from omniseg.errors import InputError
from omniseg.regions import Regions
from omniseg.results import SemanticResult, encode_label_map
from omniseg.search import PromptIndex, SearchConfig, exact_topk
from omniseg.segmenter import Segmenter
from omniseg.tasks.semantic import semantic_segmentation, semantic_segmentation_vocab, upsampled_argmax
from omniseg.text.store import EmbeddingStore, embed_texts
from omniseg.vocab import TEMPLATE_SETS, Vocabulary, parse_templates
from test_cli import run


class HashEncoder:
    """Deterministic unit vectors seeded by a text's CRC32; counts what it encodes."""

    encoder_id = "hash-test"
    dim = 384

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts):
        self.encoded += len(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _unit(rows: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------ shipped vocabularies
EXPECTED_SIZES = {
    "voc21": 21,
    "coco80": 80,
    "coco_panoptic133": 133,
    "ade150": 150,
    "ade847": 847,
    "pascal_context59": 59,
    "pascal_context459": 459,
    "cityscapes19": 19,
    "camvid11": 11,
    "lvis1203": 1203,
    "imagenet1k": 1000,
    "msrc23": 23,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_shipped_vocabulary_sizes(name):
    vocab = Vocabulary.load(name)
    assert len(vocab) == EXPECTED_SIZES[name]
    assert vocabularies.description(name)
    if (vocabularies.VOCAB_DIR / f"{name}-pe.txt").is_file():
        pe = Vocabulary.load(f"{name}-pe")
        assert len(pe) == len(vocab) and pe.stuff == vocab.stuff
        assert sum(map(len, pe.synonyms)) > len(pe)  # the variant adds synonyms / context


def test_coco_panoptic_marks_53_stuff_classes_after_80_things():
    vocab = Vocabulary.load("coco_panoptic133")
    assert vocab.stuff == [False] * 80 + [True] * 53
    assert vocab.classes[:80] == Vocabulary.load("coco80").classes


def test_polysemous_names_get_context():
    pe = dict(zip(Vocabulary.load("ade150").classes, Vocabulary.load("ade150-pe").synonyms, strict=True))
    assert pe["fan"] == ["ceiling fan", "floor fan"]
    assert pe["glass"][0] == "drinking glass"


def test_wordnet_nouns_is_large_and_clean():
    nouns = vocabularies.wordnet_nouns()
    assert len(nouns) >= 50_000 and len(set(nouns)) == len(nouns)
    assert {"dog", "electric fan", "traffic light", "sidewalk", "woman"} <= set(nouns)
    assert not any("," in n or "_" in n for n in nouns)
    # issue 15: not visual (an act) and offensive (WordNet's gloss says so) names are filtered out
    assert not {"backgrounding", "colored person", "happiness"} & set(nouns)


def test_synthetic_names_are_distinct_and_prefix_stable():
    big = vocabularies.synthetic_names(130_000)
    assert len(set(big)) == len(big)
    assert vocabularies.synthetic_names(1_000) == big[:1_000]
    assert len(big[-1].split(" ", 1)[0]) > 0 and big[-1] not in vocabularies.wordnet_nouns()[:10]


def test_resolve_name_or_path(tmp_path):
    assert vocabularies.resolve("camvid11").name == "camvid11.txt"
    path = tmp_path / "mine.txt"
    path.write_text("sky\n")
    assert vocabularies.resolve(str(path)) == path
    with pytest.raises(InputError, match="unknown vocabulary"):
        vocabularies.resolve("no-such-vocab")
    with pytest.raises(InputError, match="not found"):
        vocabularies.resolve(tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------------- templates
def test_parse_templates():
    assert parse_templates("scene") == TEMPLATE_SETS["scene"]
    assert parse_templates("a photo of a {}. | {}") == ("a photo of a {}.", "{}")
    for bad in ("no slot", "{} and {}", "{0} x", "a {name}"):
        with pytest.raises(InputError):
            parse_templates(bad)


def test_file_settings_and_overrides(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# street\n#! templates: a photo of a {}. | {}\n#! template_mode: max\nsky [stuff]\ncar, auto\n")
    vocab = Vocabulary.from_file(path)
    assert vocab.templates == ("a photo of a {}.", "{}") and vocab.template_mode == "max"
    assert vocab.stuff == [True, False]
    assert Vocabulary.from_file(path, template_mode="average").template_mode == "average"
    path.write_text("#! colour: red\nsky\n")
    with pytest.raises(InputError, match="unknown setting"):
        Vocabulary.from_file(path)


def test_average_mode_averages_templates_and_keeps_synonyms_apart():
    enc = HashEncoder()
    templates = ("a photo of a {}.", "{}")
    avg = Vocabulary([["sky", "heaven"], ["car"]], templates=templates).embed(enc)
    mx = Vocabulary([["sky", "heaven"], ["car"]], templates=templates, template_mode="max").embed(enc)
    assert avg.embeddings.shape == (3, 384) and avg.prompt_to_class.tolist() == [0, 0, 1]
    assert mx.embeddings.shape == (6, 384)
    mean = mx.embeddings[0:2].mean(0)
    np.testing.assert_allclose(avg.embeddings[0], mean / np.linalg.norm(mean), atol=1e-6)


# ------------------------------------------------------------------------------------- embedding store
def test_store_encodes_once_resumes_and_memory_maps(tmp_path):
    texts = [f"thing {i}" for i in range(50)]
    enc = HashEncoder()
    calls = []

    def failing(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed in the middle of the third chunk
        return enc.encode(batch)

    store = EmbeddingStore(tmp_path, enc.encoder_id, texts)
    with pytest.raises(KeyboardInterrupt):
        store.build(failing, enc.dim, chunk=16, progress=False)
    assert store.load() is None  # incomplete stores are never read
    calls.clear()
    vectors = EmbeddingStore(tmp_path, enc.encoder_id, texts).build(enc.encode, enc.dim, chunk=16, progress=False)
    np.testing.assert_allclose(vectors, enc.encode(texts), atol=1e-6)
    assert isinstance(vectors, np.memmap)
    before = enc.encoded
    again = EmbeddingStore(tmp_path, enc.encoder_id, texts).build(enc.encode, enc.dim, chunk=16, progress=False)
    assert enc.encoded == before and isinstance(again, np.memmap)
    assert EmbeddingStore(tmp_path, "other-encoder", texts).directory != store.directory
    assert EmbeddingStore(tmp_path, enc.encoder_id, texts[::-1]).load() is None


def test_store_resume_encodes_only_missing_chunks(tmp_path):
    texts = [f"word {i}" for i in range(40)]
    enc = HashEncoder()
    seen: list[int] = []

    def stop_after_two(batch):
        seen.append(len(batch))
        if len(seen) > 2:
            raise RuntimeError("interrupted")
        return enc.encode(batch)

    with pytest.raises(RuntimeError):
        EmbeddingStore(tmp_path, enc.encoder_id, texts).build(stop_after_two, enc.dim, chunk=10, progress=False)
    rest: list[int] = []

    def counting(batch):
        rest.append(len(batch))
        return enc.encode(batch)

    EmbeddingStore(tmp_path, enc.encoder_id, texts).build(counting, enc.dim, chunk=10, progress=False)
    assert rest == [10, 10]


def test_large_vocabulary_goes_through_the_store(tmp_path, monkeypatch):
    import omniseg.text.store as store_module

    monkeypatch.setattr(store_module, "LARGE_PROMPTS", 10)
    enc = HashEncoder()
    vectors, directory = embed_texts(enc, [f"n{i}" for i in range(30)], progress=False, root=tmp_path)
    assert directory is not None and (directory / "vectors.npy").is_file()
    small, none = embed_texts(enc, ["a", "b"], progress=False, root=tmp_path)
    assert none is None and small.shape == (2, 384)


# ------------------------------------------------------------------------------------------------ search
def test_exact_topk_streams_blocks_and_matches_brute_force():
    vectors, queries = _unit(1000, 32, 1), _unit(7, 32, 2)
    scores, ids = exact_topk(queries, vectors, 5, block=128)
    sims = queries @ vectors.T
    np.testing.assert_array_equal(ids, np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(sims, axis=1)[:, ::-1][:, :5], atol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "hnsw_sq8", "ivf"])
def test_faiss_indexes_agree_with_exact_search_and_persist(tmp_path, kind):
    vectors = _unit(4000, 64, 3)
    queries = vectors[:50] + 0.05 * _unit(50, 64, 4)  # near some prompts, as regions near their class
    large = "ivf" if kind == "ivf" else "hnsw_sq8"
    config = SearchConfig(exact_max=100, hnsw_max=10_000 if kind == "hnsw" else 1000, ivf_nprobe=16, large_kind=large)
    index = PromptIndex.build(vectors, tmp_path, config)
    assert index.kind == kind and index.loaded_from is None
    scores, ids = index.search(queries, 3)
    exact_scores, exact_ids = exact_topk(queries, vectors, 3)
    assert (ids[:, 0] == exact_ids[:, 0]).mean() >= 0.95
    agree = ids[:, 0] == exact_ids[:, 0]
    np.testing.assert_allclose(scores[agree, 0], exact_scores[agree, 0], atol=1e-5)  # re-scored exactly
    again = PromptIndex.build(vectors, tmp_path, config)
    assert again.loaded_from is not None and again.loaded_from.is_file()
    np.testing.assert_array_equal(again.search(queries, 3)[1], ids)


def test_index_kind_is_chosen_by_size():
    config = SearchConfig()
    assert config.kind(1_000) == "exact" and config.kind(100_000) == "hnsw" and config.kind(1_000_000) == "hnsw_sq8"
    assert SearchConfig(large_kind="ivf").kind(1_000_000) == "ivf"
    assert [config.ivf_lists(n) for n in (200, 1_000, 2_000, 1_000_000)] == [5, 25, 32, 1024]


# ------------------------------------------------------------------------------------------ segmentation
def _regions(n: int = 6, h: int = 12, w: int = 16, seed: int = 0) -> Regions:
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, h, w, generator=g) ** 3
    emb = torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=-1)
    return Regions(masks=masks, embeddings=emb, scores=torch.ones(n), image_size=(4 * h, 4 * w))


def test_pruned_upsampling_matches_full_argmax():
    torch.manual_seed(0)
    logits = torch.nn.functional.avg_pool2d(torch.randn(1, 200, 14, 18), 3, 1, 1)[0]
    label, score = upsampled_argmax(logits, (56, 72))
    full = torch.nn.functional.interpolate(logits[None], size=(56, 72), mode="bilinear", align_corners=False)[0]
    best, ref = full.max(0)
    assert (label == ref).float().mean() >= 0.999
    torch.testing.assert_close(score[label == ref], best[label == ref])


def test_large_vocabulary_segmentation_matches_all_class_eq6():
    regions = _regions()
    emb = _unit(3000, seed=5)
    emb[:6] = regions.embeddings.numpy()  # class i is region i's best match
    vocab = Vocabulary([[f"c{i}"] for i in range(3000)])
    vocab.embeddings, vocab.prompt_to_class = emb, np.arange(3000)
    label, _ = semantic_segmentation_vocab(regions, vocab, (48, 64), config=SearchConfig())
    full, _ = semantic_segmentation(regions, torch.from_numpy(emb), torch.arange(3000), 3000, (48, 64))
    assert (label == full).float().mean() >= 0.99
    assert set(label.unique().tolist()) <= set(range(6))


def test_label_map_region_ids_above_65535_classes():
    label = np.array([[70_000, 5, -1], [5, 69_999, 70_000]])
    small, none = encode_label_map(label.clip(max=300), 301)
    assert none is None and small.dtype == np.uint16 and small[0, 2] == 65535
    regions_map, classes = encode_label_map(label, 70_001)
    assert classes.tolist() == [5, 69_999, 70_000]
    assert regions_map.dtype == np.uint8 and regions_map.tolist() == [[2, 0, 255], [0, 1, 2]]
    names = [f"n{i}" for i in range(70_001)]
    result = SemanticResult(np.zeros((2, 3, 3), np.uint8), regions_map, names, "m", {}, classes)
    np.testing.assert_array_equal(result.class_map(), label)


def test_70000_classes_round_trip_segment_png_json(tiny_model_dir, tmp_path):
    from omniseg.backends.native import NativeSource
    from omniseg.models.openseg import OpenSegModel

    seg = Segmenter(NativeSource(OpenSegModel.from_pretrained(tiny_model_dir)), HashEncoder())
    seg.search = SearchConfig(exact_max=1_000_000)  # exact search: no index build in a unit test
    names = [f"class number {i}" for i in range(70_000)]
    vocab = Vocabulary.from_names(names)
    image = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    regions = seg.regions(image)
    # make the last classes the best matches of the regions, so ids above 65,535 must appear
    vocab.embed(seg.text_encoder, progress=False)
    emb = np.array(vocab.embeddings)
    emb[-len(regions) :] = regions.embeddings.numpy()
    vocab.embeddings = emb
    result = seg.segment(image, classes=vocab)
    assert result.region_classes is not None and result.region_classes.max() >= 65_535
    paths = result.save(tmp_path, "big")
    with Image.open(paths["label_map"]) as im:
        stored = np.asarray(im)
    np.testing.assert_array_equal(stored, result.label_map)
    data = json.loads(paths["json"].read_text())
    assert data["label_map"]["values"] == "region ids" and data["vocabulary_size"] == 70_000
    assert [r["class"] for r in data["regions"]] == data["classes"]
    unlabeled = data["label_map"]["unlabeled"]
    expected = result.class_map()
    for value in np.unique(stored):
        if value == unlabeled:
            continue
        assert data["classes"][value] == names[data["regions"][value]["class_id"]]
        assert set(expected[stored == value].tolist()) == {data["regions"][value]["class_id"]}
    # the classes on the map are the regions' best matches (equivalence with all-class eq. 6 is
    # tested above on 3,000 classes, where the full computation is cheap)
    assert set(np.unique(expected[expected >= 0]).tolist()) <= set(range(70_000 - len(regions), 70_000))


# ----------------------------------------------------------------------------------------------- bench
def test_bench_vocab_reports_every_size(tiny_model_dir):
    from omniseg.backends.native import NativeSource
    from omniseg.eval.scale import run_vocab_benchmark
    from omniseg.models.openseg import OpenSegModel

    seg = Segmenter(NativeSource(OpenSegModel.from_pretrained(tiny_model_dir)), HashEncoder())
    images = [(np.random.default_rng(i).random((32, 40, 3)) * 255).astype(np.uint8) for i in range(2)]
    config = SearchConfig(exact_max=50, hnsw_max=500)
    report = run_vocab_benchmark(seg, [1_000, 10, 300], images, config=config, log=lambda _: None)
    assert report["sizes"] == [10, 300, 1_000]
    kinds = {size: row["index"] for size, row in report["results"].items()}
    assert kinds == {10: "exact", 300: "hnsw", 1_000: "hnsw_sq8"}
    for row in report["results"].values():
        assert row["median_s"] > 0 and row["peak_rss_after_setup_mib"] > 0
    assert report["peak_rss_mib"] > 0
    assert 0 <= report["results"][300]["region_top1_agreement"] <= 1
    json.dumps(report)


def test_bench_vocab_agreement_on_its_own_images(tiny_model_dir):
    """The agreement check may run on more images than are timed; the report says how many."""
    from omniseg.backends.native import NativeSource
    from omniseg.eval.scale import run_vocab_benchmark
    from omniseg.models.openseg import OpenSegModel

    seg = Segmenter(NativeSource(OpenSegModel.from_pretrained(tiny_model_dir)), HashEncoder())
    images = [(np.random.default_rng(i).random((32, 40, 3)) * 255).astype(np.uint8) for i in range(3)]
    config = SearchConfig(exact_max=50, hnsw_max=500)
    report = run_vocab_benchmark(seg, [10, 300], images[:1], config=config, log=lambda _: None, agreement_images=images)
    assert report["images"] == 1 and report["agreement_images"] == 3
    assert 0 <= report["results"][300]["region_top1_agreement"] <= 1


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_vocab_list_and_show(capsys):
    code, out, _ = run(["vocab", "list"], capsys)
    assert code == 0 and "ade150" in out and "wordnet_nouns" in out and "69,953" in out
    code, out, _ = run(["vocab", "show", "camvid11-pe", "--limit", "2"], capsys)
    assert code == 0 and "0\tsky, clouds [stuff]" in out and out.count("\n") == 3
    code, out, _ = run(["vocab", "show", "voc21", "--templates", "photo", "--prompts", "--limit", "1"], capsys)
    assert code == 0 and "0\ta photo of a background." in out
    code, _, err = run(["vocab", "show", "nope"], capsys)
    assert code == 2 and "unknown vocabulary" in err


def test_cli_segment_accepts_a_vocabulary_name(tiny_model_dir, tiny_dataset, tmp_path, capsys):
    image = sorted((tiny_dataset / "images").iterdir())[0]
    args = ["segment", image, "--vocab", "camvid11", "--model", tiny_model_dir, "--out", tmp_path, "--quiet"]
    code, _, err = run([*args, "--templates", "photo"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / f"{image.stem}.json").read_text())
    assert report["classes"] == Vocabulary.load("camvid11").classes


def test_cli_eval_vocab_must_match_the_dataset(tiny_model_dir, tiny_dataset, tmp_path, capsys):
    base = ["eval", tiny_dataset, "--model", tiny_model_dir, "--quiet"]
    code, _, err = run([*base, "--vocab", "camvid11"], capsys)
    assert code == 2 and "3" in err and "11" in err
    vocab = tmp_path / "street.txt"
    vocab.write_text("sky, heaven\nroad, street\ncar, automobile\n")
    out_json = tmp_path / "r.json"
    code, _, err = run([*base, "--vocab", vocab, "--templates", "scene", "--json", out_json], capsys)
    assert code == 0, err
    prompts = json.loads(out_json.read_text())["prompts"]
    assert prompts["names"][0] == "sky, heaven" and len(prompts["templates"]) == 8
    code, _, err = run([*base, "--task", "panoptic", "--templates", "scene"], capsys)
    assert code == 2 and "semantic only" in err


@pytest.mark.parametrize("task", ["instance", "panoptic"])
def test_objects_with_a_large_vocabulary_list_the_candidate_classes(tiny_model_dir, task):
    from omniseg.backends.native import NativeSource
    from omniseg.models.openseg import OpenSegModel

    seg = Segmenter(NativeSource(OpenSegModel.from_pretrained(tiny_model_dir)), HashEncoder())
    vocab = Vocabulary.from_names([f"thing {i}" + (" [stuff]" if i % 2 else "") for i in range(1_000)])
    image = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    result = seg.segment(image, classes=vocab, task=task, threshold=0.0)
    assert 0 < len(result.classes) <= seg.top_k * len(seg.regions(image))
    assert set(result.classes) <= set(vocab.classes)
    assert result.stuff == [vocab.stuff[vocab.classes.index(c)] for c in result.classes]
    json.dumps(result.to_json())

"""Vocabulary parsing and prompts; the real MiniLM text encoder and its on-disk cache."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from omniseg.errors import InputError
from omniseg.text.cache import EmbeddingCache
from omniseg.vocab import Vocabulary

VOCAB_TEXT = """# a street vocabulary
sky, heaven

road,street , highway
   # an indented comment
red car
"""


def test_from_file_parses_classes_synonyms_and_skips_comments(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text(VOCAB_TEXT, encoding="utf-8")
    vocab = Vocabulary.from_file(path)
    assert vocab.classes == ["sky", "road", "red car"]
    assert vocab.synonyms == [["sky", "heaven"], ["road", "street", "highway"], ["red car"]]
    assert len(vocab) == 3


def test_from_file_accepts_non_ascii_utf8(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("café\nstraße, road\n", encoding="utf-8")
    assert Vocabulary.from_file(path).classes == ["café", "straße"]


def test_from_string_commas_separate_classes():
    vocab = Vocabulary.from_string(" sky, road ,red car,, ")
    assert vocab.classes == ["sky", "road", "red car"]
    assert Vocabulary.from_names(["car|automobile", "sky"]).synonyms == [["car", "automobile"], ["sky"]]


@pytest.mark.parametrize("text", ["", " ", ", ,"])
def test_from_string_empty_is_input_error(text):
    with pytest.raises(InputError):
        Vocabulary.from_string(text)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"# only a comment\n"])
def test_from_file_without_classes_is_input_error(tmp_path, content):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(InputError):
        Vocabulary.from_file(path)


def test_from_file_missing_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Vocabulary.from_file(tmp_path / "nope.txt")


def test_from_file_not_utf8_is_input_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("sky\ncaf\u00e9\n".encode("latin-1"))  # 0xE9 alone is invalid UTF-8
    with pytest.raises(InputError, match="UTF-8"):
        Vocabulary.from_file(path)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


def test_prompts_cross_synonyms_with_templates():
    vocab = Vocabulary([["sky", "heaven"], ["car"]], templates=("a photo of a {}.", "{}"))
    texts, owner = vocab.prompts()
    # 3 names x 2 templates, class by class, synonym by synonym, template by template
    assert texts == ["a photo of a sky.", "sky", "a photo of a heaven.", "heaven", "a photo of a car.", "car"]
    assert owner.tolist() == [0, 0, 0, 0, 1, 1]
    assert owner.dtype == np.int64


def test_embed_gives_one_row_per_prompt(text_encoder):
    vocab = Vocabulary([["sky", "heaven"], ["car"]], templates=("a photo of a {}.", "{}"), template_mode="max")
    vocab.embed(text_encoder)
    assert vocab.embeddings.shape == (6, 384)
    assert vocab.prompt_to_class.tolist() == [0, 0, 0, 0, 1, 1]
    # Row 5 is the prompt "car" and must equal a direct encoding of "car".
    np.testing.assert_allclose(vocab.embeddings[5], text_encoder.encode(["car"])[0], atol=1e-6)


# ---------------------------------------------------------------------------------------- text encoder
def test_minilm_embeddings_are_384d_unit_norm(text_encoder):
    emb = text_encoder.encode(["car", "automobile", "sky", "a red car on the road"])
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert text_encoder.encode([]).shape == (0, 384)


def test_minilm_semantics_car_closer_to_automobile_than_sky(text_encoder):
    car, automobile, sky = text_encoder.encode(["car", "automobile", "sky"])
    assert car @ automobile > car @ sky + 0.1


def test_minilm_batch_order_and_duplicates(text_encoder):
    single = {t: text_encoder._encode_uncached([t])[0] for t in ("tree", "boat")}
    batch = text_encoder.encode(["boat", "tree", "boat"])
    np.testing.assert_allclose(batch[0], single["boat"], atol=1e-5)
    np.testing.assert_allclose(batch[1], single["tree"], atol=1e-5)
    np.testing.assert_array_equal(batch[0], batch[2])


def _counting_copy(encoder, cache: EmbeddingCache):
    """The same real model, with its own cache and a counter around the uncached path."""
    enc = copy.copy(encoder)
    enc.cache = cache
    calls: list[list[str]] = []
    real = encoder._encode_uncached

    def counted(texts):
        calls.append(list(texts))
        return real(texts)

    enc._encode_uncached = counted
    return enc, calls


def test_cache_second_encode_does_not_call_model(text_encoder, tmp_path):
    enc, calls = _counting_copy(text_encoder, EmbeddingCache(tmp_path, text_encoder.encoder_id))
    first = enc.encode(["car", "sky", "car"])
    assert calls == [["car", "sky"]]  # duplicates are encoded once
    second = enc.encode(["sky", "car"])
    assert len(calls) == 1  # all cached
    np.testing.assert_array_equal(second, first[[1, 0]])
    enc.encode(["car", "tree"])
    assert calls[1:] == [["tree"]]  # only the new text reaches the model
    # The cache is on disk: a fresh cache object on the same directory still hits.
    enc2, calls2 = _counting_copy(text_encoder, EmbeddingCache(tmp_path, text_encoder.encoder_id))
    np.testing.assert_array_equal(enc2.encode(["car", "sky"]), first[:2])
    assert calls2 == []
    assert (tmp_path / "text_embeddings.sqlite").is_file()


def test_cache_keys_include_encoder_id(tmp_path):
    a, b = EmbeddingCache(tmp_path, "encoder-a"), EmbeddingCache(tmp_path, "encoder-b")
    a.store(["car"], np.ones((1, 3), np.float32))
    assert b.lookup(["car"]) == {}
    b.store(["car"], np.full((1, 3), 2.0, np.float32))
    np.testing.assert_array_equal(a.lookup(["car"])["car"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(b.lookup(["car"])["car"], [2.0, 2.0, 2.0])


def test_cache_of_other_encoder_id_is_not_reused(text_encoder, tmp_path):
    enc_a, calls_a = _counting_copy(text_encoder, EmbeddingCache(tmp_path, "encoder-a"))
    enc_b, calls_b = _counting_copy(text_encoder, EmbeddingCache(tmp_path, "encoder-b"))
    enc_a.encode(["car"])
    enc_b.encode(["car"])
    assert calls_a == [["car"]] and calls_b == [["car"]]

"""The Python API contract: omniseg.load(...).segment(...) on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
from omniseg.models.openseg import OpenSegModel

CLASSES = ["sky", "road", "red car"]


@pytest.fixture(scope="module")
def seg(tiny_model_dir, text_encoder):
    return omniseg.load(tiny_model_dir)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    arr[:30] = (90, 150, 230)
    path = tmp_path_factory.mktemp("api") / "street.png"
    Image.fromarray(arr).save(path)
    return path


def test_path_pil_and_array_give_the_same_label_map(seg, image_path):
    by_path = seg.segment(image_path, classes=CLASSES)
    by_str = seg.segment(str(image_path), classes=CLASSES)
    with Image.open(image_path) as im:
        by_pil = seg.segment(im.copy(), classes=CLASSES)
        arr = np.asarray(im.convert("RGB"))
    by_array = seg.segment(arr, classes=CLASSES)
    for other in (by_str, by_pil, by_array):
        np.testing.assert_array_equal(other.label_map, by_path.label_map)
    # A random tiny model may label everything alike, so also compare what the model saw:
    # the soft masks vary per pixel and must be identical for the three input forms.
    masks = seg.regions(image_path).masks
    with Image.open(image_path) as im:
        torch.testing.assert_close(seg.regions(im.copy()).masks, masks, rtol=0, atol=0)
    torch.testing.assert_close(seg.regions(arr).masks, masks, rtol=0, atol=0)
    assert masks.std() > 0


def test_result_contract(seg, image_path):
    result = seg.segment(image_path, classes=CLASSES)
    assert result.label_map.shape == (70, 90)
    assert result.label_map.dtype == np.uint8
    assert result.classes == CLASSES
    assert set(np.unique(result.label_map)) <= {0, 1, 2}
    pic = result.overlay()
    assert isinstance(pic, Image.Image)
    assert pic.height == 70 and pic.width >= 90
    data = json.loads(json.dumps(result.to_json()))
    assert data["classes"] == CLASSES
    assert data["label_map"] == {"dtype": "uint8", "unlabeled": 255, "height": 70, "width": 90, "values": "class ids"}
    assert data["vocabulary_size"] == len(CLASSES) and "regions" not in data
    # fractions are the share of each class's pixels; with the unlabeled share they sum to 1
    counts = np.bincount(result.label_map.ravel(), minlength=3) / result.label_map.size
    expected = {c: counts[i] for i, c in enumerate(CLASSES) if counts[i] > 0}
    assert data["fractions"].keys() == expected.keys()
    for c, v in expected.items():
        assert data["fractions"][c] == pytest.approx(v, abs=1e-6)
    assert sum(data["fractions"].values()) + data["unlabeled_fraction"] == pytest.approx(1.0, abs=1e-5)
    assert data["model"] == str(seg.model_id)
    assert set(data["timings"]) >= {"total_s"}


def test_classes_string_and_vocabulary_forms_agree(seg, image_path, tmp_path):
    base = seg.segment(image_path, classes=CLASSES).label_map
    np.testing.assert_array_equal(seg.segment(image_path, classes="sky, road, red car").label_map, base)
    vocab_file = tmp_path / "v.txt"
    vocab_file.write_text("sky\nroad\nred car\n")
    np.testing.assert_array_equal(seg.segment(image_path, vocab=vocab_file).label_map, base)
    np.testing.assert_array_equal(seg.segment(image_path, vocab=str(vocab_file)).label_map, base)


def test_threshold_above_one_leaves_everything_unlabeled(seg, image_path):
    # scores are weighted mean cosines, at most 1
    result = seg.segment(image_path, classes=CLASSES, threshold=1.01)
    assert (result.label_map == 255).all()
    assert result.fractions() == {}
    assert result.to_json()["unlabeled_fraction"] == 1.0


def test_large_image_is_downscaled_for_the_model_but_labelled_at_full_size(tiny_model_dir, text_encoder):
    small = omniseg.load(tiny_model_dir, max_size=64)
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    assert small.segment(image, classes=CLASSES).label_map.shape == (100, 150)
    assert small.regions(image).masks.shape[-2:] == (11, 16)  # model input 43x64 -> ceil(/4) = 11x16


def test_both_or_neither_of_classes_and_vocab_is_input_error(seg, image_path, tmp_path):
    vocab_file = tmp_path / "v.txt"
    vocab_file.write_text("sky\n")
    with pytest.raises(omniseg.InputError):
        seg.segment(image_path, classes=CLASSES, vocab=vocab_file)
    with pytest.raises(omniseg.InputError):
        seg.segment(image_path)


@pytest.mark.parametrize("classes", [[], "", " , "])
def test_empty_classes_is_input_error(seg, image_path, classes):
    with pytest.raises(omniseg.InputError):
        seg.segment(image_path, classes=classes)


def test_tiny_image_is_input_error(seg):
    with pytest.raises(omniseg.InputError, match="too small"):
        seg.segment(np.zeros((4, 4, 3), np.uint8), classes=CLASSES)


def test_regions_contract(seg, image_path):
    regions = seg.regions(image_path)
    n = 8  # num_queries of the tiny model
    assert regions.masks.shape == (n, 18, 23)  # ceil(70/4), ceil(90/4)
    assert regions.embeddings.shape == (n, 384)
    torch.testing.assert_close(regions.embeddings.norm(dim=1), torch.ones(n))
    assert ((regions.masks >= 0) & (regions.masks <= 1)).all()
    assert ((regions.scores >= 0) & (regions.scores <= 1)).all()
    assert regions.image_size == (70, 90)


def test_load_missing_model_dir_is_missing_resource(tmp_path):
    with pytest.raises(omniseg.MissingResourceError):
        omniseg.load(tmp_path / "no-model")


def test_save_pretrained_roundtrip_is_deterministic(tiny_model_dir, tmp_path):
    a = OpenSegModel.from_pretrained(tiny_model_dir)
    a.save_pretrained(tmp_path)  # weights are stored as float16: a second round trip is exact
    b = OpenSegModel.from_pretrained(tmp_path)
    x = torch.rand(1, 3, 32, 40)
    with torch.inference_mode():
        out_a, out_b = a(x), b(x)
    for key in ("mask_logits", "embeddings", "objectness"):
        torch.testing.assert_close(out_a[key], out_b[key], rtol=0, atol=0)

"""Image loading errors and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from omniseg.atomic import atomic_save_png, atomic_write_text
from omniseg.errors import InputError
from omniseg.images import load_image


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_text_writes_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_atomic_write_replaces_the_file_rather_than_rewriting_it(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with open(target) as reader:  # a reader holding the old file...
        atomic_write_text(target, "new")
        assert reader.read() == "old"  # ...keeps seeing a complete old file (rename, not truncate)
    assert target.read_text() == "new"


def test_failed_write_keeps_old_content_and_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "intact")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "bad \ud800 surrogate")  # fails while writing
    assert target.read_text() == "intact"
    assert _leftovers(tmp_path) == []


def test_atomic_save_png_roundtrip(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    atomic_save_png(tmp_path / "m.png", arr)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")), arr)
    assert _leftovers(tmp_path) == []


def test_load_image_missing_path(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError):
        load_image(tmp_path)  # a directory is not an image


def test_load_image_corrupt_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="cannot read"):
        load_image(path)


def test_load_image_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(InputError):
        load_image(path)


@pytest.mark.parametrize("shape", [(4, 5, 2), (4, 5, 5), (2, 4, 5, 3), (7,)])
def test_load_image_wrong_array_shape(shape):
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("channel_axis", [False, True])
def test_load_image_grayscale_array_becomes_rgb(channel_axis):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = load_image(gray[..., None] if channel_axis else gray)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_load_image_rgba_array_drops_alpha():
    rgba = np.random.default_rng(1).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    out = load_image(rgba)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_load_image_float_array_in_unit_range_is_scaled():
    x = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    # 0..1 floats are read as fractions of 255: 0.5 * 255 = 127.5 -> 127 after truncation
    np.testing.assert_array_equal(load_image(x), [[[0, 127, 255]]])


def test_load_image_path_pil_and_modes(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "g.png")
    gray = load_image(tmp_path / "g.png")
    assert gray.shape == (6, 7, 3)
    np.testing.assert_array_equal(gray[..., 2], rgb[..., 0])

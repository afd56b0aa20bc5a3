"""Plain image folders as a Dataset without ground truth (omniseg.data.folder), the reader batch uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniseg.batch import collect_images
from omniseg.data.folder import IMAGE_EXTENSIONS, ImageFolder
from omniseg.errors import InputError, SkippedInputWarning


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """b/x.jpg and a/x.png share a name; a GIF deep down; a hidden folder, a text file and an
    output folder that must not be read."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in ["z.png", "b/x.jpg", "a/x.png", "a/deep/y.gif", "w.JPEG"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path, format=None)
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / ".hidden" / "no.png")
    (root / "notes.txt").write_text("not an image")
    (root / "out").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "out" / "result.png")
    return root


def test_a_folder_is_a_dataset_of_its_images_without_labels(folder: Path) -> None:
    dataset = ImageFolder(folder, exclude=folder / "out")
    ids = [s.id for s in dataset.samples]
    assert ids == ["w", "z", "a/x", "a/deep/y", "b/x"]  # each folder: its files sorted, then its subfolders
    assert all(s.mask_path is None for s in dataset.samples)
    assert dataset.samples[0].image_path == folder / "w.JPEG"
    assert dataset.name == "photos" and dataset.classes == [] and not dataset.labelled() and len(dataset) == 5
    assert "out/result" in [s.id for s in ImageFolder(folder).samples]  # not excluded: read like any folder


def test_splits_are_fixed_and_evaluation_is_refused(folder: Path) -> None:
    dataset = ImageFolder(folder)
    val, train = dataset.split("val", 0.4), dataset.split("train", 0.4)
    assert len(val) == 2 and sorted(val + train, key=lambda s: s.id) == sorted(dataset.samples, key=lambda s: s.id)
    assert dataset.split("val", 0.4) == val and dataset.split("all") == dataset.samples
    with pytest.raises(InputError, match="plain image folder: no ground truth"):
        dataset.eval_samples("val")


def test_an_empty_or_missing_folder_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"no images \(\.jpg, .*\.avif\) under"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="image folder not found"):
        ImageFolder(tmp_path / "nowhere")


def test_batch_reads_folders_through_the_reader(folder: Path) -> None:
    items = collect_images([folder], exclude=folder / "out")
    dataset = ImageFolder(folder, exclude=folder / "out")
    assert [(i.key, i.path) for i in items] == [(s.id, s.image_path) for s in dataset.samples]
    assert ".gif" in IMAGE_EXTENSIONS and ".avif" in IMAGE_EXTENSIONS  # what batch accepted before


def test_a_symbolic_link_loop_lists_each_image_once(folder: Path) -> None:
    (folder / "a" / "loop").symlink_to(folder / "a", target_is_directory=True)
    with pytest.warns(SkippedInputWarning, match="already walked"):
        ids = [s.id for s in ImageFolder(folder).samples]
    assert ids.count("a/x") == 1 and not any(i.startswith("a/loop") for i in ids)

"""The dataset seam (issue 14): COCO instances JSON and COCO panoptic JSON + PNGs are evaluated and
trained on directly, through their uniform-layout conversion; files written here, no network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import TINY_MODEL_CONFIG, make_scene
from omniseg.cli import main
from omniseg.data.dataset import open_dataset
from omniseg.data.segments import class_roles
from omniseg.data.uniform import read_mask
from omniseg.errors import InputError, MissingResourceError

CATEGORIES = [{"id": 3, "name": "car", "isthing": 1}, {"id": 7, "name": "sky", "isthing": 0}]


def _scenes(n: int = 4):
    rng = np.random.default_rng(11)
    return [make_scene(rng) for _ in range(n)]


def _box_polygon(mask: np.ndarray) -> list[list[float]]:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture(scope="module")
def coco_instances(tmp_path_factory):
    """val2017/ images and annotations/instances_val2017.json: cars as polygons, sky as RLE."""
    root = tmp_path_factory.mktemp("coco")
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i, (image, mask) in enumerate(_scenes(), start=1):
        name = f"{i:012d}.jpg"
        Image.fromarray(image).save(root / "val2017" / name, quality=95)
        images.append({"id": i, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
        car = mask == 2
        annotations.append(
            {"id": 10 * i, "image_id": i, "category_id": 3, "iscrowd": 0, "area": int(car.sum()),
             "segmentation": _box_polygon(car), "bbox": [0, 0, 1, 1]}
        )  # fmt: skip
        sky = mask_utils.encode(np.asfortranarray((mask == 0).astype(np.uint8)))
        sky["counts"] = sky["counts"].decode("ascii")
        annotations.append(
            {"id": 10 * i + 1, "image_id": i, "category_id": 7, "iscrowd": 0, "area": int((mask == 0).sum()),
             "segmentation": sky, "bbox": [0, 0, 1, 1]}
        )  # fmt: skip
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


@pytest.fixture(scope="module")
def coco_panoptic(tmp_path_factory):
    """panoptic.json + panoptic/ PNGs (ids as R + 256 G) + the images beside it."""
    root = tmp_path_factory.mktemp("pan")
    (root / "panoptic").mkdir()
    images, annotations = [], []
    for i, (image, mask) in enumerate(_scenes(), start=1):
        name = f"img{i}.png"
        Image.fromarray(image).save(root / name)
        ids = np.zeros(mask.shape, np.int64)
        ids[mask == 0], ids[mask == 2] = 300, 5  # sky segment id 300 (G channel used), car 5
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "panoptic" / f"img{i}.png")
        images.append({"id": i, "file_name": name, "height": mask.shape[0], "width": mask.shape[1]})
        segments = [{"id": 300, "category_id": 7, "iscrowd": 0}, {"id": 5, "category_id": 3, "iscrowd": 0}]
        annotations.append({"image_id": i, "file_name": f"img{i}.png", "segments_info": segments})
    path = root / "panoptic.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def test_coco_instances_read_as_the_uniform_layout(coco_instances):
    dataset = open_dataset(coco_instances)
    assert dataset.name == "instances_val2017" and dataset.classes == ["car", "sky"] and len(dataset) == 4
    (_, mask), sample = _scenes()[0], dataset.samples[0]
    converted = read_mask(sample.truth_path, 2)
    assert (converted[mask == 2] == 0).all() and (converted[mask == 0] == 1).all()  # car polygon, sky RLE
    assert (converted[mask == 1] == 255).all()  # road was never annotated: ignore, not background
    instances = np.asarray(Image.open(dataset.root / "instances" / f"{sample.id}.png"))
    assert set(np.unique(instances[mask == 2])) == {2} and (instances[mask == 0] == 0).all()  # sky: stuff, no id
    assert open_dataset(coco_instances).root == dataset.root  # converted once, then reused


def test_coco_panoptic_keeps_stuff_and_things(coco_panoptic):
    dataset = open_dataset(coco_panoptic)
    roles = class_roles(dataset)
    assert dataset.classes == ["car", "sky"] and roles.isthing == [True, False]
    mask = _scenes()[0][1]
    instances = np.asarray(Image.open(dataset.root / "instances" / f"{dataset.samples[0].id}.png"))
    assert (instances[mask == 0] == 0).all() and (instances[mask == 2] > 0).all()  # stuff has no object id


@pytest.mark.parametrize("task", ["semantic", "instance", "panoptic"])
def test_eval_takes_a_coco_json(coco_instances, coco_panoptic, tiny_model_dir, tmp_path, capsys, task):
    source = coco_panoptic if task == "panoptic" else coco_instances
    out = tmp_path / "report.json"
    argv = ["eval", str(source), "--task", task, "--model", str(tiny_model_dir), "--json", str(out), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["images"] == 4 and report["dataset"] == source.stem
    key = {"semantic": "mIoU", "instance": "AP", "panoptic": "PQ"}[task]
    assert report[key] is None or 0 <= report[key] <= 100


def test_train_takes_a_coco_json(coco_instances, tmp_path, capsys):
    cfg = {
        "datasets": [{"path": str(coco_instances)}],
        "out_dir": str(tmp_path / "run"),
        "steps": 1,
        "batch_size": 2,
        "crop": 48,
        "short_side": 48,
        "checkpoint_every": 1,
        "log_every": 1,
        "warmup_steps": 1,
        "threads": 1,
        "model": {**TINY_MODEL_CONFIG, "trainable_backbone_from": 16},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_bad_coco_files_are_one_line_errors(tmp_path, coco_instances):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="not COCO annotations"):
        open_dataset(bad)
    moved = tmp_path / "elsewhere" / "instances_val2017.json"
    moved.parent.mkdir()
    moved.write_text(coco_instances.read_text())
    with pytest.raises(MissingResourceError, match="images of"):
        open_dataset(moved)
    assert open_dataset(moved, images_dir=coco_instances.parent.parent / "val2017").classes == ["car", "sky"]


def test_eval_images_option_finds_a_coco_files_images(coco_instances, tiny_model_dir, tmp_path, capsys):
    moved = tmp_path / "ann" / "instances_val2017.json"
    moved.parent.mkdir()
    moved.write_text(coco_instances.read_text())
    argv = ["eval", str(moved), "--model", str(tiny_model_dir), "--quiet"]
    assert main(argv) == 2 and "images of" in capsys.readouterr().err
    assert main([*argv, "--images", str(coco_instances.parent.parent / "val2017")]) == 0, capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--images", str(tmp_path), "--quiet"]) == 2  # not a COCO file

"""The `omniseg` command-line contract: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omniseg
from conftest import REPO_ROOT, assert_one_line_error, write_uniform_dataset
from conftest import run_cli as run

CLASSES = ["sky", "road", "red car"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-images")
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    Image.fromarray(a).save(d / "street.png")
    Image.fromarray(b).save(d / "park.jpg", quality=95)
    return {"street": (d / "street.png", (64, 80)), "park": (d / "park.jpg", (72, 96))}


def _read_label_map(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ---------------------------------------------------------------------------------------- segment
def test_segment_writes_label_map_overlay_and_json(images, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run(
        [
            "segment",
            images["street"][0],
            images["park"][0],
            "--classes",
            "sky,road,red car",
            "--out",
            out,
            "--model",
            tiny_model_dir,
        ],
        capsys,
    )
    assert code == 0
    for stem, (_, (h, w)) in images.items():
        with Image.open(out / f"{stem}.png") as im:
            assert im.mode == "L"
            labels = np.asarray(im)
        assert labels.dtype == np.uint8 and labels.shape == (h, w)
        assert np.all((labels < 3) | (labels == 255))
        with Image.open(out / f"{stem}_overlay.png") as im:
            assert im.mode == "RGB"
            assert im.height == h and im.width >= w
        report = json.loads((out / f"{stem}.json").read_text())
        assert {"classes", "fractions", "model"} <= report.keys()
        assert "timings" not in report  # files are reproducible byte for byte
        assert report["classes"] == CLASSES
        assert set(report["fractions"]) <= set(CLASSES)
        assert report["model"] == str(tiny_model_dir)
        assert stem in stdout  # one summary line per image
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        f"{s}{suffix}" for s in images for suffix in (".png", "_overlay.png", ".json")
    )


def test_segment_with_vocab_file(images, tiny_model_dir, tmp_path, capsys):
    vocab = tmp_path / "street.txt"
    vocab.write_text("# classes\nsky, heaven\nroad,street\n\nred car\n")
    code, _, _ = run(
        [
            "segment",
            images["street"][0],
            "--vocab",
            vocab,
            "--out",
            tmp_path / "o",
            "--model",
            tiny_model_dir,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0
    report = json.loads((tmp_path / "o" / "street.json").read_text())
    assert report["classes"] == CLASSES  # first synonym names the class


def test_segment_threshold_above_one_is_all_unlabeled(images, tiny_model_dir, tmp_path, capsys):
    code, _, _ = run(
        [
            "segment",
            images["street"][0],
            "--classes",
            "sky,road,red car",
            "--threshold",
            "1.01",
            "--out",
            tmp_path,
            "--model",
            tiny_model_dir,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0
    assert (_read_label_map(tmp_path / "street.png") == 255).all()
    report = json.loads((tmp_path / "street.json").read_text())
    assert report["fractions"] == {} and report["unlabeled_fraction"] == 1.0


def test_segment_300_classes_writes_uint16(images, tiny_model_dir, tmp_path, capsys):
    vocab = tmp_path / "big.txt"
    vocab.write_text("\n".join(f"object number {i}" for i in range(300)) + "\n")
    args = ["segment", images["street"][0], "--vocab", vocab, "--model", tiny_model_dir, "--quiet"]
    code, _, _ = run([*args, "--out", tmp_path / "a"], capsys)
    assert code == 0
    with Image.open(tmp_path / "a" / "street.png") as im:
        assert im.mode == "I;16"
    labels = _read_label_map(tmp_path / "a" / "street.png")
    assert labels.dtype == np.uint16 and labels.shape == (64, 80)
    assert np.all(labels < 300)
    report = json.loads((tmp_path / "a" / "street.json").read_text())
    assert len(report["classes"]) == 300
    assert report["label_map"]["dtype"] == "uint16" and report["label_map"]["unlabeled"] == 65535
    # unlabeled pixels are 65535 (255 would be a valid class id here)
    code, _, _ = run([*args, "--out", tmp_path / "b", "--threshold", "1.01"], capsys)
    assert code == 0
    labels = _read_label_map(tmp_path / "b" / "street.png")
    assert labels.dtype == np.uint16 and (labels == 65535).all()


def test_segment_skip_existing_keeps_outputs(images, tiny_model_dir, tmp_path, capsys):
    args = [
        "segment",
        images["street"][0],
        "--classes",
        "sky,road,red car",
        "--out",
        tmp_path,
        "--model",
        tiny_model_dir,
        "--quiet",
    ]
    assert run(args, capsys)[0] == 0
    files = [tmp_path / n for n in ("street.png", "street_overlay.png", "street.json")]
    (tmp_path / "street.json").write_text('{"sentinel": true}')
    before = {f: f.stat().st_mtime_ns for f in files}
    assert run([*args, "--skip-existing"], capsys)[0] == 0
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert json.loads((tmp_path / "street.json").read_text()) == {"sentinel": True}
    # Without the flag the outputs are rewritten (so the check above can fail).
    assert run(args, capsys)[0] == 0
    assert "classes" in json.loads((tmp_path / "street.json").read_text())


@pytest.mark.parametrize(
    "case",
    [
        "missing image",
        "corrupt image",
        "empty classes",
        "missing vocab",
        "no classes",
        "unknown subcommand",
        "duplicate stems",
    ],
)
def test_segment_input_errors_exit_2_with_one_line(case, images, tiny_model_dir, tmp_path, capsys):
    good = images["street"][0]
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    other = tmp_path / "x" / "street.png"
    other.parent.mkdir()
    other.write_bytes(good.read_bytes())
    out = tmp_path / "out"
    common = ["--out", out, "--model", tiny_model_dir]
    argv = {
        "missing image": ["segment", tmp_path / "nope.png", "--classes", "sky", *common],
        "corrupt image": ["segment", corrupt, "--classes", "sky", *common],
        "empty classes": ["segment", good, "--classes", "", *common],
        "missing vocab": ["segment", good, "--vocab", tmp_path / "nope.txt", *common],
        "no classes": ["segment", good, *common],
        "unknown subcommand": ["frobnicate", good],
        "duplicate stems": ["segment", good, other, "--classes", "sky", *common],
    }[case]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err)
    assert not out.exists() or not any(out.iterdir())


def test_segment_one_bad_image_does_not_stop_the_others(images, tiny_model_dir, tmp_path, capsys):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg" * 50)
    code, _, err = run(
        [
            "segment",
            corrupt,
            images["street"][0],
            "--classes",
            "sky,road",
            "--out",
            tmp_path / "o",
            "--model",
            tiny_model_dir,
            "--quiet",
        ],
        capsys,
    )
    assert code == 2
    assert "broken.jpg" in err and "Traceback" not in err
    assert (tmp_path / "o" / "street.png").is_file()
    assert not (tmp_path / "o" / "broken.png").exists()


def test_console_script_real_exit_code(tiny_model_dir, tmp_path):
    exe = REPO_ROOT / ".venv" / "bin" / "omniseg"
    if not exe.is_file():
        exe = Path(sys.executable).with_name("omniseg")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(exe),
            "segment",
            str(corrupt),
            "--classes",
            "sky,road",
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(tiny_model_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omniseg: error:") and "broken.jpg" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------- eval
def _iou_reference(tiny_dataset, seg, classes, limit=None):
    """Independent mIoU: label maps from the public API, IoU counted with plain numpy."""
    ids = sorted(p.stem for p in (tiny_dataset / "images").iterdir())[:limit]
    inter, union, present = np.zeros(len(classes)), np.zeros(len(classes)), np.zeros(len(classes), bool)
    for i in ids:
        gt = np.asarray(Image.open(tiny_dataset / "masks" / f"{i}.png")).astype(np.int64)
        pred = seg.segment(tiny_dataset / "images" / f"{i}.png", classes=classes).label_map.astype(np.int64)
        valid = gt != 255
        for c in range(len(classes)):
            g, p = (gt == c) & valid, (pred == c) & valid
            inter[c] += (g & p).sum()
            union[c] += (g | p).sum()
            present[c] |= g.any()
    return float(np.mean(inter[present] / union[present]) * 100)


def test_eval_prints_table_and_writes_json(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code, stdout, _ = run(["eval", tiny_dataset, "--model", tiny_model_dir, "--json", report_path, "--quiet"], capsys)
    assert code == 0
    classes = json.loads((tiny_dataset / "classes.json").read_text())
    for name in classes:
        assert name in stdout
    assert "mIoU" in stdout
    report = json.loads(report_path.read_text())
    assert {"mIoU", "mAcc", "per_class_iou", "images", "seconds"} <= report.keys()
    assert list(report["per_class_iou"]) == classes
    assert report["images"] == 6
    assert report["seconds"] >= 0
    assert 0 <= report["mIoU"] <= 100
    expected = _iou_reference(tiny_dataset, omniseg.load(tiny_model_dir), classes)
    assert report["mIoU"] == pytest.approx(expected, abs=0.006)  # the report rounds to 2 decimals


def test_eval_limit(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    code, _, _ = run(
        ["eval", tiny_dataset, "--model", tiny_model_dir, "--limit", "2", "--json", tmp_path / "r.json", "--quiet"],
        capsys,
    )
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["images"] == 2


def test_eval_grounding(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    code, stdout, _ = run(
        ["eval", tiny_dataset, "--model", tiny_model_dir, "--grounding", "--json", tmp_path / "r.json", "--quiet"],
        capsys,
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metric"] == "grounding mIoU" and "grounding mIoU" in stdout
    assert 0 <= report["mIoU"] <= 100


def test_eval_grounding_single_class_images_is_perfect(tiny_model_dir, tmp_path, capsys):
    # When an image's ground truth holds a single class, grounding restricts the vocabulary to
    # that class, so every valid pixel is right whatever the model: IoU 100; class 2 is absent (None).
    root = write_uniform_dataset(tmp_path / "single", n=2, classes=["sky", "road", "car"])
    for i, cls in enumerate((0, 1)):
        mask_path = root / "masks" / f"img{i:02d}.png"
        mask = np.asarray(Image.open(mask_path)).copy()
        mask[mask != 255] = cls
        Image.fromarray(mask).save(mask_path)
    code, _, _ = run(
        ["eval", root, "--model", tiny_model_dir, "--grounding", "--json", tmp_path / "r.json", "--quiet"], capsys
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mIoU"] == 100.0
    assert report["per_class_iou"] == {"sky": 100.0, "road": 100.0, "car": None}


def test_eval_without_classes_json_exits_2(tiny_dataset, tiny_model_dir, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes((tiny_dataset / "images" / "img00.png").read_bytes())
    code, _, err = run(["eval", tmp_path, "--model", tiny_model_dir, "--quiet"], capsys)
    assert_one_line_error(code, err)
    assert "classes.json" in err
    code, _, err = run(["eval", tmp_path / "missing", "--model", tiny_model_dir, "--quiet"], capsys)
    assert_one_line_error(code, err)


@pytest.mark.shared
def test_eval_on_real_camvid(shared_data, tiny_model_dir, tmp_path, capsys):
    camvid = shared_data / "camvid"
    if not (camvid / "classes.json").is_file():
        pytest.skip("camvid not in shared data")
    code, _, _ = run(
        [
            "eval",
            camvid,
            "--limit",
            "2",
            "--model",
            tiny_model_dir,
            "--json",
            tmp_path / "r.json",
            "--quiet",
            "--max-size",
            "128",
        ],
        capsys,
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 2
    assert list(report["per_class_iou"]) == json.loads((camvid / "classes.json").read_text())

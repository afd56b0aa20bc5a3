"""Batch jobs: inputs (files, directories, globs), mirrored outputs, workers, resume after a kill, Ray."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omniseg.batch import MARKER_DIR, collect_images
from omniseg.cli import main
from omniseg.errors import InputError

CLASSES = "sky,road,red car"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (markers included) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _tree(root).items() if not k.startswith(".omniseg/")}


def _run(argv, capsys=None) -> int:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    if capsys is not None:
        capsys.readouterr()
    return code


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """A small tree: a/x.png and b/x.jpg share a name; a hidden folder and a text file are ignored."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    names = ["a/x.png", "b/x.jpg", "b/deep/y.png", "z.png", "w.jpeg", "v.png"]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + len(name), 56, 3), dtype=np.uint8)).save(path)
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / ".hidden" / "no.png")
    (root / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------------------------------- inputs
def test_collect_directory_mirrors_sub_paths(photo_dir):
    keys = [i.key for i in collect_images([photo_dir])]
    assert sorted(keys) == sorted(["a/x", "b/x", "b/deep/y", "z", "w", "v"])
    assert len(keys) == len(set(keys))


def test_collect_glob_file_and_dedup(photo_dir):
    items = collect_images([str(photo_dir / "**" / "*.png"), photo_dir / "z.png"])
    assert sorted(i.key for i in items) == ["a/x", "b/deep/y", "v", "z"]  # z named twice, kept once
    assert [i.key for i in collect_images([photo_dir / "b" / "x.jpg"])] == ["x"]


def test_collect_skips_the_output_directory(photo_dir, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "img.png").write_bytes((photo_dir / "z.png").read_bytes())
    (root / "out").mkdir()
    (root / "out" / "img.png").write_bytes((photo_dir / "z.png").read_bytes())
    assert [i.key for i in collect_images([root], exclude=root / "out")] == ["img"]


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["missing.png"], "image not found"),
        (["nothing*.png"], "no images match"),
        (["empty_dir"], "no images"),
        (["a/x.png", "b/x.jpg"], "would both write the outputs x"),
    ],
)
def test_collect_errors(photo_dir, tmp_path, monkeypatch, inputs, message):
    monkeypatch.chdir(photo_dir)
    (photo_dir / "empty_dir").mkdir(exist_ok=True)
    with pytest.raises(InputError, match=message):
        collect_images(inputs)


# ---------------------------------------------------------------------------------------- local batch
@pytest.fixture(scope="module")
def reference(photo_dir, tiny_model_dir, tmp_path_factory) -> Path:
    """One uninterrupted run, one process: the bytes every other way of running must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    assert _run(["segment", photo_dir, "--classes", CLASSES, "--out", out, "--model", tiny_model_dir, "--quiet"]) == 0
    return out


def test_directory_outputs_mirror_inputs(reference):
    files = _outputs(reference)
    for key in ["a/x", "b/x", "b/deep/y", "z", "w", "v"]:
        for suffix in (".png", "_overlay.png", ".json"):
            assert f"{key}{suffix}" in files
        assert (reference / MARKER_DIR / f"{key}.json").is_file()
    assert len(files) == 18


def test_two_workers_give_identical_bytes(photo_dir, tiny_model_dir, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", photo_dir, "--classes", CLASSES, "--out", out, "--model", tiny_model_dir, "--workers", "2"]
    assert _run([*argv, "--quiet"], capsys) == 0
    assert _outputs(out) == _outputs(reference)


def test_panoptic_batch_is_the_same_with_two_workers(photo_dir, tiny_model_dir, tmp_path, capsys):
    common = ["--classes", "person,car,sky [stuff]", "--task", "panoptic", "--model", tiny_model_dir, "--quiet"]
    for workers in ("1", "2"):
        assert _run(["segment", photo_dir, *common, "--out", tmp_path / workers, "--workers", workers], capsys) == 0
    one = _outputs(tmp_path / "1")
    assert len(one) == 18 and "b/deep/y_panoptic.json" in one
    assert _outputs(tmp_path / "2") == one


def test_resume_skips_finished_and_redoes_unfinished(photo_dir, tiny_model_dir, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", photo_dir, "--classes", CLASSES, "--out", out, "--model", tiny_model_dir, "--resume"]
    assert _run([*argv, "--quiet"], capsys) == 0
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # Three ways an image is not finished: marker gone (killed before it), an output gone, another job's marker.
    (out / MARKER_DIR / "z.json").unlink()
    (out / "b" / "x_overlay.png").unlink()
    marker = out / MARKER_DIR / "a" / "x.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "job": "another job"}))
    (out / "b" / ".x.png.abc123xy.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    assert _run(argv, capsys) == 0
    redone = {p.relative_to(out).as_posix() for p, m in mtimes.items() if p.exists() and p.stat().st_mtime_ns != m}
    assert {"z.png", "a/x.png", "b/x.png"} <= redone
    assert not any(k.startswith(("v", "w", "b/deep")) for k in redone)
    assert _outputs(out) == _outputs(reference)
    assert not list(out.rglob("*.tmp"))
    # A different job (other classes) is not "finished" by these markers.
    assert _run(["segment", photo_dir, "--classes", "sky,road", *argv[4:], "--quiet"], capsys) == 0
    assert json.loads((out / "v.json").read_text())["classes"] == ["sky", "road"]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_bytes(photo_dir, tiny_model_dir, reference, tmp_path):
    """SIGKILL a real `omniseg segment` process at a random point, rerun with --resume: same bytes."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    images = tmp_path / "many"
    for copy in range(2):  # 12 images, so the kill lands mid-way
        for item in collect_images([photo_dir]):
            dst = images / f"c{copy}" / item.path.relative_to(photo_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(item.path.read_bytes())
    cmd = [sys.executable, "-m", "omniseg", "segment", str(images), "--out", str(tmp_path / "killed")]
    cmd += ["--classes", CLASSES, "--model", str(tiny_model_dir), "--quiet", "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd, env=env)
    finished_before_kill = rng.randint(1, 8)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list((killed / MARKER_DIR).rglob("*.json"))) if (killed / MARKER_DIR).is_dir() else 0
        if done >= finished_before_kill:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next image(s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = len(list((killed / MARKER_DIR).rglob("*.json")))
    assert partial < 12, f"the run finished before the kill (seed {seed})"
    subprocess.run(cmd, env=env, check=True, timeout=600)
    # The uninterrupted run of the same images is the reference, once per copy.
    expected = {f"c{copy}/{name}": data for copy in range(2) for name, data in _outputs(reference).items()}
    assert _outputs(killed) == expected, f"seed {seed}, killed after {partial} images"
    markers = {k for k in _tree(killed) if k.startswith(".omniseg/")}
    assert len(markers) == 12 and not list(killed.rglob("*.tmp")), f"seed {seed}"


def test_batch_command_without_ray_is_the_local_batch(photo_dir, tiny_model_dir, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(["batch", photo_dir, "--classes", CLASSES, "--out", out, "--model", tiny_model_dir], capsys) == 0
    assert _outputs(out) == _outputs(reference)


# ---------------------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_batch_equals_local_batch(photo_dir, tiny_model_dir, reference, tmp_path, capsys):
    pytest.importorskip("ray.data", reason="Ray Data not installed (pip install 'omniseg[ray]')")
    out = tmp_path / "ray"
    argv = ["batch", photo_dir, "--classes", CLASSES, "--out", out, "--model", tiny_model_dir, "--quiet"]
    assert _run([*argv, "--ray", "--workers", "2"], capsys) == 0
    assert _tree(out).keys() == _tree(reference).keys()
    assert _outputs(out) == _outputs(reference)
    # Resume across runners: the local batch accepts what Ray finished.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert _run(["segment", *argv[1:], "--resume"], capsys) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_ray_flag_before_the_images_is_a_clear_error(photo_dir, tmp_path, capsys):
    argv = ["batch", "--ray", photo_dir, photo_dir / "z.png", "--classes", "sky", "--out", tmp_path]
    code = main([str(a) for a in argv])
    assert code == 2
    err = capsys.readouterr().err
    assert "put --ray after the images" in err and len(err.strip().splitlines()) == 1

"""Issue 13, batch runs and file-system inputs: orphaned workers, symlink loops, odd file names,
concurrent runs into one --out, unreadable files, FIFOs, folder scans, stderr on accepted input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, assert_one_line_error, make_scene, run_cli

CLASSES = "sky,road,car"


def write_photos(folder: Path, n: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(make_scene(rng)[0]).save(folder / f"p{i:03d}.png")
    return folder


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing (spawn) workers whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state  # a zombie has exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_exit_when_the_driver_is_killed(tiny_model_dir, tmp_path) -> None:
    """Item 5: after kill -9 of a --workers 2 batch, both workers were alive 136 s later."""
    photos = write_photos(tmp_path / "photos", 300)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "omniseg", "segment", str(photos), "--classes", CLASSES, "--model"]
    argv += [str(tiny_model_dir), "--out", str(out), "--workers", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(REPO_ROOT / "src")}
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            workers = spawned_children(driver.pid)
            if len(workers) == 2 and out.is_dir() and any(out.glob("*.png")):  # both started, work under way
                break
            time.sleep(0.2)
        assert len(workers) == 2 and driver.poll() is None, "the batch did not start two workers in time"
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        gone_by = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "workers outlived their killed driver by 5 s"
    finally:
        for pid in workers:  # never leave the test's own orphans behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()


def segment(tiny_model_dir, capsys, *inputs, out, extra=()) -> tuple[int, str]:
    argv = ["segment", *map(str, inputs), "--classes", CLASSES, "--model", str(tiny_model_dir)]
    code, _, err = run_cli([*argv, "--out", str(out), "--quiet", *extra], capsys)
    return code, err


def label_maps(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if not p.name.endswith("_overlay.png"))


def test_symlink_loops_are_skipped_with_one_warning_each(tiny_model_dir, tmp_path, capsys) -> None:
    """Item 9: a loop inside an input folder gave exit 1 and nothing was processed."""
    photos = write_photos(tmp_path / "photos", 2)
    (photos / "loop").symlink_to(photos, target_is_directory=True)  # a directory linking to itself
    (photos / "self.png").symlink_to(photos / "self.png")  # a link to itself (ELOOP)
    code, err = segment(tiny_model_dir, capsys, photos, out=tmp_path / "out")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("omniseg: warning: skipped") for line in lines), err
    assert label_maps(tmp_path / "out") == ["p000.png", "p001.png"]


def test_a_double_star_glob_walks_a_self_link_once(tiny_model_dir, tmp_path, capsys) -> None:
    """Item 9: 'photos/**/*.png' followed photos/loop -> photos 40 times: 41 copies of one image."""
    photos = write_photos(tmp_path / "photos", 1)
    (photos / "loop").symlink_to(photos, target_is_directory=True)
    code, err = segment(tiny_model_dir, capsys, f"{photos}/**/*.png", out=tmp_path / "out")
    assert code == 0, err
    assert label_maps(tmp_path / "out") == ["p000.png"]
    assert err.strip().splitlines() == [
        f"omniseg: warning: skipped {photos / 'loop'}: " + err.split(": ", 3)[-1].strip()
    ]


@pytest.mark.parametrize("name", ["z\nnewline.png", "z\\backslash.png", "z" * 230 + ".png"])
def test_an_odd_file_name_is_refused_before_any_work(tiny_model_dir, tmp_path, capsys, name) -> None:
    """Item 11: a newline, a backslash or a long name stopped the batch after work had started, and
    the long-name message showed an internal temporary path."""
    photos = write_photos(tmp_path / "photos", 1)  # p000.png, processed before the z... name
    Image.fromarray(make_scene(np.random.default_rng(1))[0]).save(photos / name, format="PNG")
    out = tmp_path / "out"
    code, err = segment(tiny_model_dir, capsys, photos, out=out)
    assert_one_line_error(code, err)
    assert "omniseg-batch" not in err and "/tmp/" not in err.replace(str(tmp_path), "")
    assert not out.exists() or label_maps(out) == [], "work started before the name was checked"


def test_two_runs_into_one_out_keep_each_others_temp_files(tmp_path) -> None:
    """Item 14: a run's start-up cleaning deleted the temporary files another run was writing."""
    from omniseg.atomic import atomic_write_bytes, remove_stale_temp_files

    other = subprocess.Popen(["sleep", "30"])  # a live process standing for the other run
    try:
        out = tmp_path / "out"
        out.mkdir()
        theirs = out / f".a.png.{other.pid}.k3j4h5g6.tmp"
        dead = out / ".b.png.999999999.k3j4h5g6.tmp"  # no such pid: left by a killed run
        old_style = out / ".c.png.k3j4h5g6.tmp"
        for path in (theirs, dead, old_style):
            path.write_bytes(b"in flight")
        assert remove_stale_temp_files(out) == 2
        assert theirs.read_bytes() == b"in flight" and not dead.exists() and not old_style.exists()
        atomic_write_bytes(out / "mine.png", b"x")  # our own temporary names carry our pid
        seen = []
        real = os.replace
        try:
            os.replace = lambda src, dst: (seen.append(Path(src).name), real(src, dst))[1]  # type: ignore[assignment]
            atomic_write_bytes(out / "mine.png", b"y")
        finally:
            os.replace = real
        assert f".{os.getpid()}." in seen[0], seen
    finally:
        other.kill()
        other.wait()


def test_fifo_and_devices_are_not_regular_files(tiny_model_dir, tmp_path, capsys) -> None:
    """Item 15: a FIFO or /dev/zero was reported as 'image not found'."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        code, err = segment(tiny_model_dir, capsys, path, out=tmp_path / "out")
        assert_one_line_error(code, err)
        assert "not a regular file" in err, err
    photos = write_photos(tmp_path / "photos", 1)
    os.mkfifo(photos / "pipe.png")  # inside a scanned folder: skipped with a warning, the rest done
    code, err = segment(tiny_model_dir, capsys, photos, out=tmp_path / "out2")
    assert code == 0 and err.strip().splitlines() == [
        f"omniseg: warning: skipped {photos / 'pipe.png'}: not a regular file"
    ]


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch) -> None:
    """Item 15: an unreadable file was reported as 'not an image file'."""
    from omniseg.errors import InputError
    from omniseg.images import load_image

    photo = write_photos(tmp_path / "photos", 1) / "p000.png"
    if os.geteuid() == 0:  # root reads anything: simulate the EACCES a user would get
        import PIL.Image

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(PIL.Image, "open", refuse)
    else:
        photo.chmod(0)
    with pytest.raises(InputError, match=r"cannot be read \(permission denied\)"):
        load_image(photo)


def test_gif_and_avif_are_found_by_a_folder_scan(tiny_model_dir, tmp_path, capsys) -> None:
    """Item 17: .gif and .avif were read when named but skipped when a folder was scanned."""
    from PIL import features

    photos = tmp_path / "photos"
    photos.mkdir()
    scene = Image.fromarray(make_scene(np.random.default_rng(2))[0])
    scene.save(photos / "a.gif")
    expected = ["a.png"]
    if features.check("avif"):
        scene.save(photos / "b.avif")
        expected.append("b.png")
    code, err = segment(tiny_model_dir, capsys, photos, out=tmp_path / "out")
    assert code == 0, err
    assert label_maps(tmp_path / "out") == expected


def corrupt_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF block announces 5 entries and holds 1 and 2 bytes (Pillow: 'Corrupt EXIF data')."""
    import struct

    ifd = struct.pack("<H", 5) + struct.pack("<HHI4s", 0x0112, 3, 1, b"\x06\x00\x00\x00") + b"\x01\x02"
    Image.fromarray(make_scene(np.random.default_rng(3))[0]).save(
        path, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd
    )
    return path


def test_corrupt_exif_prints_nothing(tiny_model_dir, tmp_path) -> None:
    """Item 13: Pillow's 'Corrupt EXIF data' warning leaked as 2 stderr lines on an accepted image."""
    photo = corrupt_exif_jpeg(tmp_path / "exif.jpg")
    argv = [sys.executable, "-m", "omniseg", "segment", str(photo), "--classes", CLASSES, "--model"]
    argv += [str(tiny_model_dir), "--out", str(tmp_path / "out"), "--quiet"]  # a process: pytest records warnings
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(REPO_ROOT / "src")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert label_maps(tmp_path / "out") == ["exif.png"]


def test_quiet_hides_the_encoding_progress_bar(tiny_model_dir, tmp_path, capsys, monkeypatch) -> None:
    """Item 13: --quiet did not hide the large-vocabulary encoding bar (10-21 lines)."""
    import omniseg.text.store

    monkeypatch.setattr(omniseg.text.store, "LARGE_PROMPTS", 4)  # 8 names take the large-vocabulary path
    monkeypatch.setenv("OMNISEG_CACHE", str(tmp_path / "cache"))
    photo = write_photos(tmp_path / "photos", 1) / "p000.png"
    names = ",".join(f"thing {i}" for i in range(8))
    argv = ["segment", str(photo), "--classes", names, "--model", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    code, _, err = run_cli([*argv, "--quiet"], capsys)
    assert code == 0 and err == "", err
    assert (tmp_path / "cache" / "stores").is_dir(), "the large-vocabulary path was not taken"

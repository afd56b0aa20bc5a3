"""Shared fixtures. The machine has 2 cores and a training job in the background: every test
process uses one thread and only tiny images/datasets."""

from __future__ import annotations

import json
import os

# Child processes (the console-script test) inherit these; set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set (e.g. by another plugin); harmless
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]
FUZZ_COUNTS: dict[str, int] = {}  # inputs each fuzz target of test_properties.py ran this session
TINY_CLASSES = ["sky", "road", "car"]
TINY_MODEL_CONFIG = {"num_queries": 8, "feature_dim": 32, "fpn_dim": 32, "ffn_dim": 64, "num_heads": 2}


@pytest.fixture(scope="session", autouse=True)
def omniseg_cache_dir(tmp_path_factory):
    """All text-embedding caches of the session (and of child processes) go to a tmp dir."""
    path = tmp_path_factory.mktemp("omniseg-cache")
    old = os.environ.get("OMNISEG_CACHE")
    os.environ["OMNISEG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("OMNISEG_CACHE", None)
    else:
        os.environ["OMNISEG_CACHE"] = old


@pytest.fixture(scope="session")
def text_encoder(omniseg_cache_dir):
    """The real all-MiniLM-L6-v2 encoder (the process-wide one the library also uses)."""
    from omniseg.text.encoder import default_text_encoder

    encoder = default_text_encoder()
    assert str(encoder.cache.path).startswith(str(omniseg_cache_dir)), "cache must live in the tmp dir"
    return encoder


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, text_encoder):
    """The tiny model loaded once per test module."""
    import omniseg

    return omniseg.load(tiny_model_dir)


def assert_json_error(response, status: int, *hidden: str) -> str:
    """A server error answer: ``status``, JSON ``{"error": one line}``, no traceback, no path (nor ``hidden``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    message = body["error"]
    assert "\n" not in message and "Traceback" not in response.text, message
    for path in ("/tmp", "/work", "/home", str(REPO_ROOT), *hidden):
        assert path not in response.text, (path, message)
    return message


@pytest.fixture
def shared_data() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_sam3_dir(tmp_path_factory) -> Path:
    """A tiny random Sam3Model checkpoint (tests/tiny_hf16.py), shared by the SAM 3 tests; read-only."""
    import tiny_hf16

    with torch.random.fork_rng():
        return tiny_hf16.make_sam3(tmp_path_factory.mktemp("sam3-shared") / "tiny")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, omniseg_cache_dir) -> Path:
    """A randomly initialised (seeded) tiny model: for contract tests, never for quality."""
    from omniseg.models.openseg import OpenSegConfig, OpenSegModel

    directory = tmp_path_factory.mktemp("tiny-model")
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        model = OpenSegModel(OpenSegConfig(**TINY_MODEL_CONFIG))
    model.save_pretrained(directory)
    return directory


def make_scene(rng: np.random.Generator, height: int = 64, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A street-like picture (sky on top, road below, a red car) and its class-id mask.

    Mask: 0 sky, 1 road, 2 car, 255 ignore (a 2-pixel frame and the horizon line).
    """
    horizon = int(rng.integers(height // 3, height // 2))
    image = np.zeros((height, width, 3), np.float32)
    mask = np.zeros((height, width), np.uint8)
    image[:horizon] = (90, 150, 230)
    image[horizon:] = (110, 110, 110)
    mask[horizon:] = 1
    cy = int(rng.integers(horizon + 4, height - 14))
    cx = int(rng.integers(2, width - 26))
    image[cy : cy + 10, cx : cx + 24] = (200, 30, 30)
    mask[cy : cy + 10, cx : cx + 24] = 2
    image += rng.normal(0, 8, image.shape)
    mask[horizon] = 255
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 255, 255, 255, 255
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_uniform_dataset(root: Path, n: int = 6, classes: list[str] | None = None, seed: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = make_scene(rng)
        Image.fromarray(image, "RGB").save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(mask, "L").save(root / "masks" / f"img{i:02d}.png")
    (root / "classes.json").write_text(json.dumps(classes or TINY_CLASSES))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """6 images 64 (H) x 80 (W) in the uniform layout; treat as read-only."""
    return write_uniform_dataset(tmp_path_factory.mktemp("data") / "tiny")


def pytest_terminal_summary(terminalreporter):
    """One line in every CI log: how many inputs each loader was fuzzed with."""
    if FUZZ_COUNTS:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(FUZZ_COUNTS.items()))
        terminalreporter.write_line(f"fuzz iterations: {counts}")


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """omniseg's main() in-process -> (exit code, stdout, stderr); argparse errors exit via SystemExit."""
    from omniseg.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_batch_resumes_and_ray_matches(argv, out: Path, images: int, compared, capsys) -> None:
    """``omniseg batch`` ``argv`` into out/a, resumed (every image already done), then through Ray into
    out/b: the Ray worker rebuilds the source from the job's specs, so ``compared`` files are byte-equal."""
    code, _, err = run_cli([*argv, "--out", out / "a"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*argv, "--out", out / "a", "--resume"], capsys)
    assert code == 0 and f"0 segmented, {images} already done" in err
    pytest.importorskip("ray.data", reason="Ray Data not installed (pip install 'omniseg[ray]')")
    code, _, err = run_cli([*argv, "--out", out / "b", "--workers", "1", "--ray"], capsys)
    assert code == 0, err
    for name in compared:
        assert (out / "a" / name).read_bytes() == (out / "b" / name).read_bytes()


def assert_one_line_error(code, err) -> None:
    """Bad input: exit 2 and exactly one 'omniseg: error:' line on stderr, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("omniseg: error:") and "Traceback" not in err

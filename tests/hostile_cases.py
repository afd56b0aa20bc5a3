"""The table of hostile inputs: one row per case, one column per surface (CLI, API, server).

Every row is a test (tests/test_hostile.py runs each surface it names) and a row of the table in
RELIABILITY.md (``python tests/hostile_cases.py`` prints it; a test keeps the two equal).

A refused input must give, on the CLI, exit 2 and one ``omniseg: error:`` line (no traceback); in
the API, the documented omniseg exception (omniseg.errors). An accepted input must give the right
result, and nothing on stderr but the expected ``omniseg: warning:`` line. To add a surface (the
server of issue 7), add a runner in test_hostile.py and replace the rows' ``server`` text.

The server (``omniseg serve``) gets every row whose input can reach it (``SERVER`` below: an HTTP
request and the status it must answer, 4xx with a one-line JSON ``{"error": ...}`` and no path
echoed, or 200), or says why the row has no server surface.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from hostile_corpus import MILLION, SCENE, Corpus
from omniseg.errors import InputError, MissingResourceError, ModelLoadError, OutputError
from omniseg.eval.semantic import evaluate_semantic
from omniseg.images import load_image
from omniseg.text.cache import default_cache_dir
from omniseg.train.config import TrainConfig

CLASSES = "sky,road,car"
PENDING_SERVER = "pending #7"


@dataclass
class Ctx:
    """What a case's callables get: the corpus, the tiny model, a fresh output dir, a Segmenter."""

    corpus: Corpus
    model: str
    out: str
    seg: object = None
    monkeypatch: object = None

    def f(self, name: str) -> str:
        return self.corpus.f(name)


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    input: str  # the hostile input, in words (table column)
    error: type[Exception] | None  # what the API raises; None = accepted
    match: str  # in the CLI's error line and the API's message (refused), or in the warning (accepted)
    cli: Callable[[Ctx], list[str]] | None = None
    api: Callable[[Ctx], object] | None = None
    outcome: str = ""  # accepted: what "right" means (table column)
    check: Callable[[Ctx, object], None] | None = None  # accepted: the API's result is right
    cli_check: Callable[[Ctx], None] | None = None  # accepted: the CLI's outputs are right
    after: Callable[[Ctx], None] | None = None  # after either surface: nothing lost, nothing unpickled
    setup: Callable[[Ctx], None] | None = None  # e.g. simulate a full disk
    warns: bool = False  # accepted with a warning
    cli_na: str = "n/a"  # why no CLI run (when cli is None)
    api_na: str = "n/a"
    server: str = PENDING_SERVER  # the table cell; filled from SERVER below
    http: Http | None = None  # the request the server runner sends (None: n/a, see ``server``)


@dataclass(frozen=True)
class Http:
    """A request to the server: endpoint, multipart files (field, corpus file), form fields, the status due."""

    path: str
    files: tuple[tuple[str, str], ...]
    status: int
    data: dict = field(default_factory=dict, hash=False)
    note: str = ""  # shown after the status in the table

    def cell(self) -> str:
        status = f"{self.status} JSON" if self.status >= 400 else str(self.status)
        return f"{status} ({self.note})" if self.note else status


def seg_http(image: str, status: int, **data: str) -> Http:
    return Http("/v1/segment", (("image", image),), status, {"classes": CLASSES} | data)


def rgb_http(path: str, status: int, **data: str) -> Http:
    return Http(path, (("image", "rgb.png"),), status, data)


def incontext_http(mask: str, status: int) -> Http:
    return Http("/v1/incontext", (("example", "rgb.png"), ("example_mask", mask), ("target", "target.png")), status)


# --------------------------------------------------------------------------------------- helpers
def seg_cli(image: str, *extra: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [
        "segment",
        c.f(image),
        "--classes",
        CLASSES,
        "--model",
        c.model,
        "--out",
        c.out,
        "--quiet",
        *extra,
    ]


def seg_api(image: str, **kw) -> Callable[[Ctx], object]:
    return lambda c: c.seg.segment(c.f(image), **({"classes": CLASSES} | kw))


def vocab_cli(vocab: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["segment", c.f("rgb.png"), "--vocab", c.f(vocab), "--model", c.model, "--out", c.out, "--quiet"]


def vocab_api(vocab: str) -> Callable[[Ctx], object]:
    from omniseg.vocab import Vocabulary

    return lambda c: Vocabulary.from_file(c.f(vocab))


def model_cli(model: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["segment", c.f("rgb.png"), "--classes", CLASSES, "--model", c.f(model), "--out", c.out]


def model_api(model: str) -> Callable[[Ctx], object]:
    import omniseg

    return lambda c: omniseg.load(c.f(model))


def incontext_cli(mask: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [
        "incontext",
        "--example",
        c.f("rgb.png"),
        c.f(mask),
        c.f("target.png"),
        "--model",
        c.model,
        "--out",
        c.out,
        "--quiet",
    ]


def incontext_api(mask: str | Callable[[Ctx], np.ndarray]) -> Callable[[Ctx], object]:
    def run(c: Ctx) -> object:
        example = c.f(mask) if isinstance(mask, str) else mask(c)
        return c.seg.incontext([(c.f("rgb.png"), example)], c.f("target.png"))

    return run


def frames_dir(c: Ctx) -> str:
    for name in ("frames/00.png", "frames/01.png", "frames/02.png"):
        c.f(name)
    return str(Path(c.f("frames/00.png")).parent)


def video_cli(mask: str, out: Callable[[Ctx], str] | None = None) -> Callable[[Ctx], list[str]]:
    return lambda c: [
        "video",
        frames_dir(c),
        "--first-mask",
        c.f(mask),
        "--model",
        c.model,
        "--out",
        out(c) if out else c.out,
        "--quiet",
    ]


def video_api(mask: str) -> Callable[[Ctx], object]:
    return lambda c: list(c.seg.video(sorted(Path(frames_dir(c)).glob("*.png")), c.f(mask)))


def label_map(c: Ctx, stem: str) -> np.ndarray:
    with Image.open(Path(c.out) / f"{stem}.png") as im:
        return np.asarray(im)


def accepts_image(name: str, shape: tuple[int, int], pixels: Callable[[np.ndarray], bool]) -> dict:
    """An image that must load as an RGB array of ``shape`` whose pixels pass ``pixels``, and segment."""

    def api(c: Ctx) -> object:
        return load_image(c.f(name)), c.seg.segment(c.f(name), classes=CLASSES)

    def check(c: Ctx, result: object) -> None:
        array, segmented = result
        assert array.shape == (*shape, 3) and array.dtype == np.uint8
        assert pixels(array), "pixel values are not what the file holds"
        assert segmented.label_map.shape == shape

    def cli_check(c: Ctx) -> None:
        assert label_map(c, Path(name).stem).shape == shape

    return {"error": None, "cli": seg_cli(name), "api": api, "check": check, "cli_check": cli_check}


def image_accepted(case_id: str, what: str, outcome: str, image: str, shape, pixels, **kw) -> Case:  # noqa: ANN001
    kw.setdefault("match", "")
    return Case(case_id, "image", what, outcome=outcome, **accepts_image(image, shape, pixels), **kw)


def close_to_scene(array: np.ndarray, tolerance: float = 8.0) -> bool:
    return float(np.abs(array.astype(float) - SCENE.astype(float)).mean()) < tolerance


def ids_within(allowed: set[int]) -> Callable[[Ctx, object], None]:
    def check(c: Ctx, result: object) -> None:
        (answer,) = result  # one typed result per target
        assert set(np.unique(answer.id_map).tolist()) <= allowed

    return check


def keeps_ids(ids: set[int]) -> dict:
    """An accepted example mask: the output holds only its ids (and uint16 ones when they need it)."""
    return {
        "outcome": f"accepted, output ids in {sorted(ids)}",
        "check": ids_within(ids),
        "cli_check": cli_ids_within(ids),
    }


def cli_ids_within(allowed: set[int], stem: str = "target") -> Callable[[Ctx], None]:
    return lambda c: set(np.unique(label_map(c, stem)).tolist()) <= allowed or _fail(f"ids beyond {allowed}")


def _fail(message: str) -> None:
    raise AssertionError(message)


def sentinel_absent(name: str) -> Callable[[Ctx], None]:
    def after(c: Ctx) -> None:
        assert not c.corpus.sentinel(name).exists(), "the pickle was unpickled: its payload ran"

    return after


def unchanged(name: str) -> Callable[[Ctx], None]:
    """The corpus file is still the one the corpus made (an output did not overwrite it)."""

    def after(c: Ctx) -> None:
        with Image.open(c.f(name)) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), SCENE), f"{name} was overwritten"

    return after


def no_partial_files(c: Ctx) -> None:
    out = Path(c.out)
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert not [n for n in left if n.endswith(".tmp")], left
    if (out / "rgb.png").exists():
        assert (out / "rgb.png").read_bytes() == b"previous result", "the previous result was damaged"


def keep_previous_result(c: Ctx) -> None:
    Path(c.out).mkdir(parents=True, exist_ok=True)
    (Path(c.out) / "rgb.png").write_bytes(b"previous result")


def full_disk(c: Ctx) -> None:
    """Every atomic write fails with ENOSPC after writing part of the file."""
    import omniseg.atomic

    keep_previous_result(c)
    real = omniseg.atomic._open_temp

    class Full:
        def __init__(self, fd: int) -> None:
            self.fh = real(fd)

        def write(self, data: bytes) -> int:
            self.fh.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str):  # noqa: ANN204 - seek, tell, flush, ... of the real file
            return getattr(self.fh, name)

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc) -> None:  # noqa: ANN002
            self.fh.close()

    c.monkeypatch.setattr(omniseg.atomic, "_open_temp", Full)


def read_only_dir(c: Ctx) -> None:
    """The output directory refuses new files (as root, chmod would not stop us: simulate EACCES)."""
    import omniseg.atomic

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(errno.EACCES, "Permission denied")

    c.monkeypatch.setattr(omniseg.atomic.tempfile, "mkstemp", refuse)


def save_result(out: Callable[[Ctx], str], stem: str = "rgb") -> Callable[[Ctx], object]:
    return lambda c: c.seg.segment(c.f("rgb.png"), classes=CLASSES).save(out(c), stem)


def escape_checked(c: Ctx) -> None:
    assert not any(p.name.startswith("escape") for p in Path(c.out).parent.iterdir()), "wrote outside --out"


def backbone_from_pickle(c: Ctx) -> object:
    import omniseg.models.backbone as backbone

    c.monkeypatch.setattr(backbone, "pretrained_weights_path", lambda: c.f("backbone_pickle.pth"))
    return backbone.load_pretrained_backbone()


def million_names(c: Ctx) -> object:
    import time

    from omniseg.vocab import Vocabulary

    start = time.perf_counter()
    vocab = Vocabulary.from_file(c.f("vocab_million.txt"))
    return vocab, time.perf_counter() - start


def check_million(c: Ctx, result: object) -> None:
    vocab, seconds = result
    assert len(vocab) == MILLION and vocab.synonyms[-1] == [f"class {MILLION - 1:07d}", f"synonym {MILLION - 1:07d}"]
    assert seconds < 60, f"parsing took {seconds:.1f} s"


def classes_are(expected: list[str]) -> Callable[[Ctx, object], None]:
    def check(c: Ctx, vocab: object) -> None:
        assert vocab.classes == expected

    return check


def cli_classes_are(expected: list[str]) -> Callable[[Ctx], None]:
    import json

    def check(c: Ctx) -> None:
        assert json.loads((Path(c.out) / "rgb.json").read_text(encoding="utf-8"))["classes"] == expected

    return check


INTL = ["\U0001f697 car", "\u05e9\u05de\u05d9\u05d9\u05dd", "\u0637\u0631\u064a\u0642"]
NAN, INF = float("nan"), float("inf")
ARRAY_ONLY = "n/a: arrays are API input"
NAMES_FROM_FILES = "n/a: file names hold no '/'"


def eval_cli(dataset: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["eval", c.f(dataset), "--model", c.model, "--quiet"]


def eval_api(dataset: str) -> Callable[[Ctx], object]:
    return lambda c: evaluate_semantic(c.seg, c.f(dataset), progress=False)


SURFACES = {
    "eval": (eval_cli, eval_api),
    "seg": (seg_cli, seg_api),
    "incontext": (incontext_cli, incontext_api),
    "vocab": (vocab_cli, vocab_api),
    "model": (model_cli, model_api),
}


def row(case_id: str, group: str, what: str, error, match: str, kind: str, arg: str, **kw) -> Case:  # noqa: ANN001
    """A case whose CLI and API runs feed the same corpus file to one command (``kind``)."""
    cli, api = SURFACES[kind]
    return Case(case_id, group, what, error, match, cli(arg), api(arg), **kw)


# ------------------------------------------------------------------------------------------ cases
CASES: list[Case] = [
    # -- image files -------------------------------------------------------------------------
    row("zero-byte-image", "image", "zero-byte .jpg", InputError, "empty file (0 bytes)", "seg", "zero.jpg"),
    row("truncated-jpeg", "image", "JPEG cut in half", InputError, "truncated or corrupt", "seg", "truncated.jpg"),
    row("truncated-png", "image", "PNG cut in half", InputError, "truncated or corrupt", "seg", "truncated.png"),
    row("text-as-jpeg", "image", "text file named .jpg", InputError, "not an image file", "seg", "text.jpg"),
    row("decompression-bomb", "image", "40000x40000 PNG of a few KB", InputError, "too large", "seg", "bomb.png"),
    row(
        "directory-as-image", "image", "a directory named .png", InputError, "a_directory.png", "seg", "a_directory.png"
    ),
    row("missing-image", "image", "path that does not exist", InputError, "not found", "seg", "missing.png"),
    row("one-pixel", "image", "1x1 image", InputError, "image too small: 1x1", "seg", "one_pixel.png"),
    image_accepted(
        "16-bit-gray",
        "16-bit grayscale PNG (I;16)",
        "accepted, scaled /257 (not clipped)",
        "gray16.png",
        (64, 80),
        lambda a: a[0, 0, 0] == 0 and a[-1, -1, 0] == 255 and 100 < a[32, 40, 0] < 155,
    ),
    image_accepted(
        "16-bit-rgb",
        "48-bit RGB PNG",
        "accepted, 0x8000 -> 128",
        "rgb16.png",
        (64, 80),
        lambda a: bool((a == 128).all()),
    ),
    image_accepted(
        "cmyk-jpeg", "CMYK JPEG", "accepted, colours as the RGB original", "cmyk.jpg", (64, 80), close_to_scene
    ),
    image_accepted(
        "palette-transparency",
        "palette PNG with a transparent index",
        "accepted, palette colours, no Pillow warning",
        "palette_alpha.png",
        (64, 80),
        lambda a: close_to_scene(a, 12),
    ),
    image_accepted(
        "grayscale",
        "8-bit grayscale PNG",
        "accepted, R = G = B = the gray value",
        "gray.png",
        (64, 80),
        lambda a: np.array_equal(a[..., 1], SCENE[..., 0]) and np.array_equal(a[..., 2], SCENE[..., 0]),
    ),
    image_accepted(
        "gray-alpha",
        "grayscale + alpha PNG (LA)",
        "accepted, gray kept, alpha dropped",
        "gray_alpha.png",
        (64, 80),
        lambda a: np.array_equal(a[..., 0], SCENE[..., 0]),
    ),
    image_accepted(
        "rgba",
        "RGBA PNG, transparent on one side",
        "accepted, RGB kept as stored, alpha dropped",
        "rgba.png",
        (64, 80),
        lambda a: np.array_equal(a, SCENE),
    ),
    image_accepted(
        "exif-rotated",
        "JPEG with EXIF orientation 6",
        "accepted, rotated as shown (64x80 -> 80x64)",
        "exif_rotated.jpg",
        (80, 64),
        lambda a: close_to_scene(np.rot90(a, k=1)),
    ),
    image_accepted(
        "animated-gif",
        "2-frame animated GIF",
        "accepted, first frame (red), warning",
        "animated.gif",
        (64, 80),
        lambda a: a[0, 0, 0] > 200 and a[0, 0, 2] < 60,
        warns=True,
        match="has 2 frames",
    ),
    image_accepted(
        "multi-page-tiff",
        "2-page TIFF",
        "accepted, first page (red), warning",
        "multipage.tiff",
        (64, 80),
        lambda a: a[0, 0, 0] > 200 and a[0, 0, 2] < 60,
        warns=True,
        match="has 2 frames",
    ),
    image_accepted(
        "wide-10000x10", "10000x10 image", "accepted, 10x10000 label map", "wide.png", (10, 10_000), lambda a: True
    ),
    # -- image arrays (API) -----------------------------------------------------------------
    Case(
        "array-nan",
        "image",
        "float array with NaN and inf",
        None,
        "",
        api=lambda c: c.seg.segment(
            np.full((32, 32, 3), NAN).astype(np.float32) + np.eye(32)[..., None] * INF, classes=CLASSES
        ),
        outcome="accepted, NaN -> 0, inf -> 255",
        check=lambda c, r: r.label_map.shape == (32, 32) or _fail("shape"),
        cli_na=ARRAY_ONLY,
    ),
    Case(
        "array-negative",
        "image",
        "int array with negative values",
        InputError,
        "must lie in 0..255",
        api=lambda c: c.seg.segment(np.full((32, 32, 3), -5), classes=CLASSES),
        cli_na=ARRAY_ONLY,
    ),
    Case(
        "array-object",
        "image",
        "array of Python objects",
        InputError,
        "must hold numbers",
        api=lambda c: c.seg.segment(np.full((32, 32, 3), None, dtype=object), classes=CLASSES),
        cli_na=ARRAY_ONLY,
    ),
    Case(
        "array-empty",
        "image",
        "array of shape (0, 5, 3)",
        InputError,
        "no pixels",
        api=lambda c: c.seg.segment(np.zeros((0, 5, 3), np.uint8), classes=CLASSES),
        cli_na=ARRAY_ONLY,
    ),
    Case(
        "array-uint16",
        "image",
        "uint16 RGB array",
        None,
        "",
        api=lambda c: load_image(np.full((4, 4, 3), 65535, np.uint16)),
        outcome="accepted, 65535 -> 255",
        check=lambda c, a: bool((a == 255).all()) or _fail("not scaled"),
        cli_na=ARRAY_ONLY,
    ),
    # -- example / first masks ---------------------------------------------------------------
    row(
        "mask-wrong-size",
        "mask",
        "example mask 40x32 for an 80x64 image",
        InputError,
        "is 40x32 but its image is 80x64",
        "incontext",
        "mask_small.png",
    ),
    row(
        "mask-non-binary-ids",
        "mask",
        "example mask with ids 0, 1, 2",
        None,
        "",
        "incontext",
        "mask_multi.png",
        **keeps_ids({0, 1, 2}),
    ),
    row(
        "mask-0-255",
        "mask",
        "example mask 0/255",
        None,
        "",
        "incontext",
        "mask_255.png",
        **keeps_ids({0, 255}),
    ),
    row(
        "mask-16-bit",
        "mask",
        "16-bit example mask, ids 0/1000",
        None,
        "",
        "incontext",
        "mask_16bit.png",
        **keeps_ids({0, 1000}),
    ),
    row(
        "mask-soft",
        "mask",
        "example mask with 256 gray levels (soft/JPEG)",
        InputError,
        "256 distinct values",
        "incontext",
        "mask_soft.png",
    ),
    Case(
        "mask-float-soft",
        "mask",
        "float example mask in 0..1",
        InputError,
        "fractional values",
        api=incontext_api(lambda c: np.linspace(0, 1, 64 * 80).reshape(64, 80)),
        cli_na=ARRAY_ONLY,
    ),
    row("mask-all-zero", "mask", "example mask all 0", InputError, "mark nothing", "incontext", "mask_zero.png"),
    row("mask-all-one", "mask", "example mask all 1", InputError, "no background", "incontext", "mask_one.png"),
    row("mask-rgb", "mask", "RGB example mask", InputError, "must be single-channel ids", "incontext", "mask_rgb.png"),
    row("mask-bomb", "mask", "40000x40000 PNG as example mask", InputError, "too large", "incontext", "bomb_mask.png"),
    row(
        "mask-truncated",
        "mask",
        "truncated PNG as example mask",
        InputError,
        "truncated or corrupt",
        "incontext",
        "truncated_mask.png",
    ),
    row("mask-zero-byte", "mask", "zero-byte example mask", InputError, "empty file", "incontext", "zero_mask.png"),
    Case(
        "video-first-mask-empty",
        "mask",
        "video first mask all 0",
        InputError,
        "marks no object",
        video_cli("mask_zero.png"),
        video_api("mask_zero.png"),
    ),
    Case(
        "video-first-mask-size",
        "mask",
        "video first mask of the wrong size",
        InputError,
        "is 40x32 but its image is 80x64",
        video_cli("mask_small.png"),
        video_api("mask_small.png"),
    ),
    # -- datasets (eval) ---------------------------------------------------------------------
    row(
        "label-beyond-vocabulary",
        "dataset",
        "mask id 7 with 3 classes in classes.json",
        InputError,
        "has class id 7 but classes.json lists 3 classes",
        "eval",
        "dataset_beyond",
    ),
    row(
        "dataset-corrupt-image",
        "dataset",
        "text file among a dataset's images",
        InputError,
        "not an image file",
        "eval",
        "dataset_corrupt_image",
    ),
    # -- vocabularies ------------------------------------------------------------------------
    row(
        "vocab-empty-file",
        "vocabulary",
        "empty vocabulary file",
        InputError,
        "has no classes",
        "vocab",
        "vocab_empty.txt",
    ),
    row(
        "vocab-comments-only",
        "vocabulary",
        "only comments and blank lines",
        InputError,
        "has no classes",
        "vocab",
        "vocab_comments.txt",
    ),
    row(
        "vocab-whitespace-names",
        "vocabulary",
        "a line of commas and spaces",
        InputError,
        "class 2 has no name",
        "vocab",
        "vocab_commas.txt",
    ),
    Case(
        "classes-empty",
        "vocabulary",
        "--classes ''",
        InputError,
        "--classes is empty",
        seg_cli("rgb.png", "--classes", ""),
        seg_api("rgb.png", classes=""),
    ),
    Case(
        "classes-whitespace",
        "vocabulary",
        "--classes ' , ,  '",
        InputError,
        "--classes is empty",
        seg_cli("rgb.png", "--classes", " , ,  "),
        seg_api("rgb.png", classes=" , ,  "),
    ),
    Case(
        "names-whitespace",
        "vocabulary",
        "class list with a whitespace-only name",
        InputError,
        "class 2 has no name",
        api=seg_api("rgb.png", classes=["sky", "   "]),
        cli_na="see vocab-whitespace-names",
    ),
    row(
        "vocab-duplicates",
        "vocabulary",
        "'car' and 'Car' on two lines",
        InputError,
        "lists 'Car' twice",
        "vocab",
        "vocab_dupes.txt",
    ),
    Case(
        "classes-duplicates",
        "vocabulary",
        "--classes car,road,car",
        InputError,
        "lists 'car' twice",
        seg_cli("rgb.png", "--classes", "car,road,car"),
        seg_api("rgb.png", classes="car,road,car"),
    ),
    Case(
        "vocab-million",
        "vocabulary",
        "10^6 names, 2 synonyms each (parsing)",
        None,
        "",
        api=million_names,
        outcome="accepted, parsed in seconds",
        check=check_million,
        cli_na="pending #5 (encoding 10^6 names needs the FAISS index)",
    ),
    row(
        "vocab-latin-1",
        "vocabulary",
        "Latin-1 (non-UTF-8) vocabulary file",
        InputError,
        "is not UTF-8 text",
        "vocab",
        "vocab_latin1.txt",
    ),
    row(
        "vocab-utf-16",
        "vocabulary",
        "UTF-16 vocabulary file",
        InputError,
        "is not UTF-8 text",
        "vocab",
        "vocab_utf16.txt",
    ),
    row(
        "vocab-bom",
        "vocabulary",
        "UTF-8 file with a BOM",
        None,
        "",
        "vocab",
        "vocab_bom.txt",
        outcome="accepted, BOM not part of the first name",
        check=classes_are(["sky", "road", "car"]),
        cli_check=cli_classes_are(["sky", "road", "car"]),
    ),
    row(
        "vocab-emoji-rtl",
        "vocabulary",
        "emoji, Hebrew and Arabic names",
        None,
        "",
        "vocab",
        "vocab_intl.txt",
        outcome="accepted, names round-trip to the JSON output",
        check=classes_are(INTL),
        cli_check=cli_classes_are(INTL),
    ),
    row(
        "vocab-control-char",
        "vocabulary",
        "NUL byte inside a name",
        InputError,
        "control character",
        "vocab",
        "vocab_control.txt",
    ),
    row(
        "vocab-zero-width",
        "vocabulary",
        "a name of zero-width characters only",
        InputError,
        "class 2 has",
        "vocab",
        "vocab_zero_width.txt",
    ),
    row(
        "vocab-bidi-override",
        "vocabulary",
        "a right-to-left override (U+202E) inside a name",
        InputError,
        "class 2 has an invisible control character (U+202E)",
        "vocab",
        "vocab_bidi.txt",
    ),
    row(
        "vocab-line-separator",
        "vocabulary",
        "U+2028 and U+0085 inside lines 2 and 3",
        InputError,
        "class 2 has an invisible control character (U+2028)",
        "vocab",
        "vocab_line_separator.txt",
        outcome="refused, naming line 2 (the separator does not split it)",
    ),
    row(
        "vocab-long-name",
        "vocabulary",
        "a 900,000-character class name",
        InputError,
        "at most 1,000",
        "vocab",
        "vocab_long_name.txt",
        outcome="refused before any encoding or drawing",
    ),
    Case(
        "stuff-unknown",
        "vocabulary",
        "--stuff names no class",
        InputError,
        "not in the vocabulary",
        seg_cli("rgb.png", "--stuff", "ocean"),
        seg_api("rgb.png", stuff="ocean"),
    ),
    # -- weights -----------------------------------------------------------------------------
    row(
        "model-missing",
        "weights",
        "--model dir that does not exist",
        MissingResourceError,
        "no model at",
        "model",
        "no_such_model",
    ),
    row(
        "weights-zero-byte",
        "weights",
        "zero-byte model.safetensors",
        ModelLoadError,
        "not a valid safetensors",
        "model",
        "model_zero",
    ),
    row(
        "weights-truncated",
        "weights",
        "model.safetensors cut in half",
        ModelLoadError,
        "not a valid safetensors",
        "model",
        "model_truncated",
    ),
    row(
        "weights-random",
        "weights",
        "random bytes as model.safetensors",
        ModelLoadError,
        "not a valid safetensors",
        "model",
        "model_random",
    ),
    row(
        "weights-pickle",
        "weights",
        "pickle (payload creates a file) as model.safetensors",
        ModelLoadError,
        "not a valid safetensors",
        "model",
        "model_pickle",
        after=sentinel_absent("model_pickle"),
        outcome="payload never runs",
    ),
    row(
        "weights-pickle-bin",
        "weights",
        "only a pickled pytorch_model.bin",
        MissingResourceError,
        "expected config.json and model.safetensors",
        "model",
        "model_bin_only",
        after=sentinel_absent("model_bin_only"),
        outcome="payload never runs",
    ),
    Case(
        "backbone-pickle",
        "weights",
        "pickle with an object as backbone weights",
        ModelLoadError,
        "cannot be loaded",
        api=backbone_from_pickle,
        after=sentinel_absent("backbone_pickle.pth"),
        outcome="torch.load(weights_only=True) refuses it unbuilt",
        cli_na="n/a: the backbone file comes from an installed package",
    ),
    row(
        "config-not-json",
        "weights",
        "config.json that is not JSON",
        ModelLoadError,
        "is not valid JSON",
        "model",
        "model_bad_json",
    ),
    row(
        "config-not-object",
        "weights",
        "config.json holding a list",
        ModelLoadError,
        "must hold a JSON object",
        "model",
        "model_config_list",
    ),
    row(
        "config-huge",
        "weights",
        "config asking for feature_dim 10^9",
        ModelLoadError,
        "feature_dim must be a whole number in 0..4096",
        "model",
        "model_config_huge",
        outcome="refused before any allocation",
    ),
    row(
        "config-mismatch",
        "weights",
        "config that does not match the weights",
        ModelLoadError,
        "do not match",
        "model",
        "model_mismatch",
    ),
    row(
        "config-invalid",
        "weights",
        "config with 3 heads for 32 dims",
        ModelLoadError,
        "describes no valid model",
        "model",
        "model_heads",
    ),
    row(
        "config-product",
        "weights",
        "config whose fields are each in bounds but total 7.7 G parameters",
        ModelLoadError,
        "parameters (limit 100,000,000): refused before allocating",
        "model",
        "model_config_product",
        outcome="refused before any allocation",
    ),
    row(
        "weights-nan",
        "weights",
        "model.safetensors with a NaN weight",
        ModelLoadError,
        "holds NaN or infinite values",
        "model",
        "model_nan",
    ),
    row(
        "config-pixel-weight-nan",
        "weights",
        "config with pixel_weight NaN",
        ModelLoadError,
        "pixel_weight must be a finite number",
        "model",
        "model_pixel_weight_nan",
    ),
    row(
        "config-pixel-weight-text",
        "weights",
        "config with pixel_weight 'half'",
        ModelLoadError,
        "pixel_weight must be a finite number",
        "model",
        "model_pixel_weight_text",
    ),
    row(
        "config-unknown-arch",
        "weights",
        "config with arch 'unet'",
        ModelLoadError,
        "model arch must be 'openseg' or 'lseg'",
        "model",
        "model_unknown_arch",
    ),
    # -- outputs -----------------------------------------------------------------------------
    Case(
        "out-is-a-file",
        "output",
        "--out names an existing file",
        OutputError,
        "cannot write",
        lambda c: seg_cli("rgb.png")(c)[:-3] + ["--out", c.f("not_a_dir")],
        save_result(lambda c: c.f("not_a_dir")),
    ),
    Case(
        "out-not-writable",
        "output",
        "output directory refuses writes (EACCES)",
        OutputError,
        "Permission denied",
        seg_cli("rgb.png"),
        save_result(lambda c: c.out),
        setup=read_only_dir,
    ),
    Case(
        "disk-full",
        "output",
        "disk full (ENOSPC mid-write)",
        OutputError,
        "No space left on device",
        seg_cli("rgb.png"),
        save_result(lambda c: c.out),
        setup=full_disk,
        after=no_partial_files,
        outcome="previous result intact, no partial file",
    ),
    Case(
        "outputs-collide",
        "output",
        "a.png and a.jpg in one run",
        InputError,
        "would both write",
        lambda c: [
            "segment",
            c.f("dup/a.png"),
            c.f("dup/a.jpg"),
            "--classes",
            CLASSES,
            "--model",
            c.model,
            "--out",
            c.out,
        ],
        api_na="n/a: the caller names each output",
    ),
    Case(
        "overlay-collides",
        "output",
        "x.png and x_overlay.png in one run",
        InputError,
        "would both write",
        lambda c: [
            "segment",
            c.f("clash/x.png"),
            c.f("clash/x_overlay.png"),
            "--classes",
            CLASSES,
            "--model",
            c.model,
            "--out",
            c.out,
        ],
        api_na="n/a: the caller names each output",
    ),
    Case(
        "output-overwrites-input",
        "output",
        "--out is the input's own folder",
        InputError,
        "would overwrite an input",
        lambda c: seg_cli("rgb.png")(c)[:-3] + ["--out", str(c.corpus.root)],
        after=unchanged("rgb.png"),
        api_na="n/a: the caller names each output",
    ),
    Case(
        "incontext-overwrites-target",
        "output",
        "incontext --out is the target's folder",
        InputError,
        "would overwrite an input",
        lambda c: incontext_cli("mask_ok.png")(c)[:-3] + ["--out", str(c.corpus.root)],
        after=unchanged("target.png"),
        api_na="n/a: the caller names each output",
    ),
    Case(
        "video-overwrites-frames",
        "output",
        "video --out is the frames folder",
        InputError,
        "would overwrite an input",
        video_cli("mask_ok.png", out=frames_dir),
        after=unchanged("frames/00.png"),
        api_na="n/a: the caller names each output",
    ),
    Case(
        "out-is-the-model",
        "output",
        "segment config.png --model M --out M",
        InputError,
        "is inside the model directory",
        lambda c: seg_cli("named/config.png")(c)[:-5] + ["--model", c.f("model_as_out"), "--out", c.f("model_as_out")],
        after=lambda c: json.loads((Path(c.f("model_as_out")) / "config.json").read_text())["feature_dim"],
        api_na="n/a: the caller names each output",
    ),
    Case(
        "out-is-the-cache",
        "output",
        "--out inside the embedding cache (OMNISEG_CACHE)",
        InputError,
        "is inside the embedding cache",
        lambda c: seg_cli("rgb.png")(c)[:-3] + ["--out", str(Path(default_cache_dir()) / "out")],
        api_na="n/a: the caller names each output",
    ),
    Case(
        "path-traversal-name",
        "output",
        "output name '../escape'",
        InputError,
        "unsafe output name",
        api=save_result(lambda c: c.out, "../escape"),
        after=escape_checked,
        cli_na=NAMES_FROM_FILES,
    ),
    Case(
        "nul-in-name",
        "output",
        "output name with a NUL byte",
        InputError,
        "unsafe output name",
        api=save_result(lambda c: c.out, "a\x00b"),
        cli_na=NAMES_FROM_FILES,
    ),
    # -- arguments ---------------------------------------------------------------------------
    Case(
        "threshold-nan",
        "argument",
        "--threshold nan",
        InputError,
        "finite number",
        seg_cli("rgb.png", "--threshold", "nan"),
        seg_api("rgb.png", threshold=NAN),
    ),
    Case(
        "margin-nan",
        "argument",
        "refer --margin nan",
        InputError,
        "finite number",
        lambda c: ["refer", c.f("rgb.png"), "the car", "--margin", "nan", "--model", c.model, "--out", c.out],
        lambda c: c.seg.refer(c.f("rgb.png"), "the car", margin=NAN),
    ),
    Case(
        "refer-empty-phrase",
        "argument",
        "refer with a blank phrase",
        InputError,
        "the phrase is empty",
        lambda c: ["refer", c.f("rgb.png"), "   ", "--model", c.model, "--out", c.out],
        lambda c: c.seg.refer(c.f("rgb.png"), "   "),
    ),
    Case(
        "click-nan",
        "argument",
        "click --point nan,nan",
        InputError,
        "is outside the 80x64 image",
        lambda c: ["click", c.f("rgb.png"), "--point", "nan,nan", "--model", c.model, "--out", c.out],
        lambda c: c.seg.click(c.f("rgb.png"), [(NAN, NAN)]),
    ),
    Case(
        "click-outside",
        "argument",
        "click --point 500,500 on 80x64",
        InputError,
        "is outside the 80x64 image",
        lambda c: ["click", c.f("rgb.png"), "--point", "500,500", "--model", c.model, "--out", c.out],
        lambda c: c.seg.click(c.f("rgb.png"), [(500, 500)]),
    ),
    Case(
        "box-infinite",
        "argument",
        "click --box 0,0,inf,inf",
        InputError,
        "four finite numbers",
        lambda c: ["click", c.f("rgb.png"), "--box", "0,0,inf,inf", "--model", c.model, "--out", c.out],
        lambda c: c.seg.click(c.f("rgb.png"), boxes=[(0, 0, INF, INF)]),
    ),
    Case(
        "train-config-binary",
        "argument",
        "train config of binary bytes",
        InputError,
        "is not UTF-8 text",
        lambda c: ["train", c.f("train_garbage.yaml")],
        lambda c: TrainConfig.from_yaml(c.f("train_garbage.yaml")),
    ),
    Case(
        "train-config-list",
        "argument",
        "train config that is a YAML list",
        InputError,
        "must be a mapping",
        lambda c: ["train", c.f("train_list.yaml")],
        lambda c: TrainConfig.from_yaml(c.f("train_list.yaml")),
    ),
]

# ------------------------------------------------------------------------------------ the server
NO_PATHS = "n/a: the server takes uploads, never a path"
NO_ARRAYS = "n/a: the server takes encoded images, not arrays"
NO_VIDEO = "n/a: no video endpoint"
NO_EVAL = "n/a: no eval endpoint"
NO_VOCAB_FILES = "n/a: vocabularies are a 'classes' string or a shipped name, never a client's file"
NO_MODEL = "n/a: one model, loaded at start (`serve --model` exits 2)"
NO_FILES = "n/a: the server writes no files (see server-temp-dir)"
NO_TRAIN = "n/a: no training endpoint"
SERVER: dict[str, Http | str] = {
    "zero-byte-image": seg_http("zero.jpg", 400),
    "truncated-jpeg": seg_http("truncated.jpg", 400),
    "truncated-png": seg_http("truncated.png", 400),
    "text-as-jpeg": seg_http("text.jpg", 400),
    "decompression-bomb": seg_http("bomb.png", 413),
    "directory-as-image": NO_PATHS,
    "missing-image": NO_PATHS,
    "one-pixel": seg_http("one_pixel.png", 400),
    "16-bit-gray": seg_http("gray16.png", 200),
    "16-bit-rgb": seg_http("rgb16.png", 200),
    "cmyk-jpeg": seg_http("cmyk.jpg", 200),
    "palette-transparency": seg_http("palette_alpha.png", 200),
    "grayscale": seg_http("gray.png", 200),
    "gray-alpha": seg_http("gray_alpha.png", 200),
    "rgba": seg_http("rgba.png", 200),
    "exif-rotated": seg_http("exif_rotated.jpg", 200),
    "animated-gif": seg_http("animated.gif", 200),
    "multi-page-tiff": seg_http("multipage.tiff", 200),
    "wide-10000x10": seg_http("wide.png", 200),
    "array-nan": NO_ARRAYS,
    "array-negative": NO_ARRAYS,
    "array-object": NO_ARRAYS,
    "array-empty": NO_ARRAYS,
    "array-uint16": NO_ARRAYS,
    "mask-wrong-size": incontext_http("mask_small.png", 400),
    "mask-non-binary-ids": incontext_http("mask_multi.png", 200),
    "mask-0-255": incontext_http("mask_255.png", 200),
    "mask-16-bit": incontext_http("mask_16bit.png", 200),
    "mask-soft": incontext_http("mask_soft.png", 400),
    "mask-float-soft": NO_ARRAYS,
    "mask-all-zero": incontext_http("mask_zero.png", 400),
    "mask-all-one": incontext_http("mask_one.png", 400),
    "mask-rgb": incontext_http("mask_rgb.png", 400),
    "mask-bomb": incontext_http("bomb_mask.png", 413),
    "mask-truncated": incontext_http("truncated_mask.png", 400),
    "mask-zero-byte": incontext_http("zero_mask.png", 400),
    "video-first-mask-empty": NO_VIDEO,
    "video-first-mask-size": NO_VIDEO,
    "label-beyond-vocabulary": NO_EVAL,
    "dataset-corrupt-image": NO_EVAL,
    "vocab-empty-file": NO_VOCAB_FILES,
    "vocab-comments-only": NO_VOCAB_FILES,
    "vocab-whitespace-names": NO_VOCAB_FILES,
    "classes-empty": seg_http("rgb.png", 400, classes=""),
    "classes-whitespace": seg_http("rgb.png", 400, classes=" , ,  "),
    "names-whitespace": "n/a: 'classes' is a comma string, blank entries skipped (as `--classes`)",
    "vocab-duplicates": seg_http("rgb.png", 400, classes="car,road,Car"),
    "classes-duplicates": seg_http("rgb.png", 400, classes="car,road,car"),
    "vocab-million": replace(
        seg_http("rgb.png", 400, classes=",".join(f"c{i}" for i in range(10**6))), note="over the class limit"
    ),
    "vocab-latin-1": NO_VOCAB_FILES,
    "vocab-utf-16": NO_VOCAB_FILES,
    "vocab-bom": seg_http("rgb.png", 200, classes="\ufeffsky,road,car"),
    "vocab-emoji-rtl": seg_http("rgb.png", 200, classes=",".join(INTL)),
    "vocab-control-char": seg_http("rgb.png", 400, classes="sky,ro\x00ad"),
    "stuff-unknown": seg_http("rgb.png", 400, task="panoptic", stuff="ocean"),
    "vocab-zero-width": seg_http("rgb.png", 400, classes="sky,\u200b\u200b\u200d"),
    "vocab-bidi-override": seg_http("rgb.png", 400, classes="sky,ro\u202ead"),
    "vocab-line-separator": seg_http("rgb.png", 400, classes="sky,red\u2028car"),
    "vocab-long-name": seg_http("rgb.png", 400, classes="sky," + "x" * 900_000),
    "config-product": NO_MODEL,
    "weights-nan": NO_MODEL,
    "config-pixel-weight-nan": NO_MODEL,
    "config-pixel-weight-text": NO_MODEL,
    "config-unknown-arch": NO_MODEL,
    "out-is-the-model": NO_FILES,
    "out-is-the-cache": NO_FILES,
    "model-missing": NO_MODEL,
    "weights-zero-byte": NO_MODEL,
    "weights-truncated": NO_MODEL,
    "weights-random": NO_MODEL,
    "weights-pickle": NO_MODEL,
    "weights-pickle-bin": NO_MODEL,
    "backbone-pickle": NO_MODEL,
    "config-not-json": NO_MODEL,
    "config-not-object": NO_MODEL,
    "config-huge": NO_MODEL,
    "config-mismatch": NO_MODEL,
    "config-invalid": NO_MODEL,
    "out-is-a-file": NO_FILES,
    "out-not-writable": NO_FILES,
    "disk-full": NO_FILES,
    "outputs-collide": NO_FILES,
    "overlay-collides": NO_FILES,
    "output-overwrites-input": NO_FILES,
    "incontext-overwrites-target": NO_FILES,
    "video-overwrites-frames": NO_FILES,
    "path-traversal-name": NO_FILES,
    "nul-in-name": NO_FILES,
    "threshold-nan": seg_http("rgb.png", 400, threshold="nan"),
    "margin-nan": "n/a: /v1/refer has no margin",
    "refer-empty-phrase": rgb_http("/v1/refer", 400, phrase="   "),
    "click-nan": rgb_http("/v1/click", 400, points="[[NaN, NaN]]"),
    "click-outside": rgb_http("/v1/click", 400, points="[[500, 500]]"),
    "box-infinite": rgb_http("/v1/click", 400, boxes="[[0, 0, Infinity, Infinity]]"),
    "train-config-binary": NO_TRAIN,
    "train-config-list": NO_TRAIN,
}
CASES = [
    replace(c, server=s.cell() + (" + `warnings` in the JSON" if c.warns else ""), http=s)
    if isinstance(s, Http)
    else replace(c, server=s)
    for c in CASES
    for s in [SERVER.get(c.id, PENDING_SERVER)]
]

# Rows that are one test each (not an input fed to every surface), and rows not done yet.
EXTRA_ROWS = [
    (
        "server-temp-dir",
        "server",
        "uploads named '../escape.png' and '/abs/x.png', one over the 1 MB spool limit",
        "cwd and temp dir unchanged: `test_server_writes_nothing`",
    ),
    (
        "server-worker-raises",
        "server",
        "a request that makes the segmenter raise",
        "500 JSON, no traceback; next request 200: `test_server_survives_a_raising_worker`",
    ),
    (
        "server-load-rss",
        "server",
        "the serving load benchmark",
        "RSS bounded (last quarter max 811 MB vs first 843 MB), 0 errors besides deliberate 503s: "
        "benchmarks/bench_serve.py (a benchmark, not a test)",
    ),
    (
        "batch-kill-resume",
        "batch",
        "SIGKILL of `omniseg segment` at a random point, then `--resume`",
        "byte-identical outputs: `tests/test_batch.py::test_killed_run_resumes_to_identical_bytes`",
    ),
    (
        "vocab-million-encode",
        "vocabulary",
        "segment with a 10^6-name vocabulary",
        "pending #5: parsing tested; real 10^6 embeddings not yet computed",
    ),
]


# Issue 13's rows that are one named test each (not a corpus file fed to every surface): id, input,
# CLI, API, server, the test. "-": the surface cannot receive it.
T_BATCH, T_CACHE, T_SERVE = (
    "tests/test_batch_hostile.py",
    "tests/test_cache_faults.py",
    "tests/test_server_robustness.py",
)
T_CKPT = "tests/test_bad_checkpoints.py"
ONE_TEST_ROWS: list[tuple[str, str, str, str, str, str]] = [
    (
        "server-trickling-uploads",
        "8 clients sending one body byte every 0.3 s, clients leaving mid-upload",
        "-",
        "-",
        "408 JSON after `--body-timeout`; every other client 200 (none 503)",
        f"`{T_SERVE}::test_trickling_and_abandoned_uploads_do_not_block_other_clients`",
    ),
    (
        "server-timeout-frees-slot",
        "2,000 names of 300+ characters, `timeout_s` 1; a client leaving mid-computation",
        "-",
        "-",
        "504 JSON, the compute slot free within 3 s, next request 200",
        f"`{T_SERVE}::test_timed_out_request_frees_its_slot`, `::test_a_client_leaving_cancels_its_computation`",
    ),
    (
        "click-nested-json",
        "`points` nested 3,000 and 100,000 deep",
        "-",
        "-",
        "400 JSON",
        f"`{T_SERVE}::test_click_nested_json_and_huge_ints_are_400`",
    ),
    (
        "click-huge-int",
        "`points` with a 5,000-digit and a 400-digit integer",
        "-",
        "-",
        "400 JSON",
        f"`{T_SERVE}::test_click_nested_json_and_huge_ints_are_400`",
    ),
    (
        "server-foreign-host",
        "`Host: evil.example` (DNS rebinding)",
        "-",
        "-",
        "400 JSON; loopback names and `--allowed-hosts` 200",
        f"`{T_SERVE}::test_foreign_host_header_is_400_json`",
    ),
    (
        "server-head",
        "`HEAD /healthz`, `HEAD /`, `HEAD /v1/vocabularies`",
        "-",
        "-",
        "200, no body",
        f"`{T_SERVE}::test_head_on_get_routes_is_200_without_body`",
    ),
    (
        "workers-orphaned",
        "`kill -9` of a `--workers 2` batch",
        "both workers gone within 5 s",
        "-",
        "-",
        f"`{T_BATCH}::test_workers_exit_when_the_driver_is_killed`",
    ),
    (
        "symlink-loop",
        "a folder holding a link to itself and a file link to itself",
        "exit 0, one warning line per link, the rest segmented",
        "-",
        "-",
        f"`{T_BATCH}::test_symlink_loops_are_skipped_with_one_warning_each`",
    ),
    (
        "glob-symlink-loop",
        "`'photos/**/*.png'` with `photos/loop -> photos`",
        "exit 0, one warning line, the image segmented once",
        "-",
        "-",
        f"`{T_BATCH}::test_a_double_star_glob_walks_a_self_link_once`",
    ),
    (
        "odd-file-names",
        "a file name with a newline, a backslash, or 234 characters, after a good one",
        "exit 2 before any work: `unsafe output name` / `is too long`, no temp path",
        "-",
        "-",
        f"`{T_BATCH}::test_an_odd_file_name_is_refused_before_any_work`",
    ),
    (
        "two-runs-one-out",
        "another live run's temporary files in `--out`",
        "-",
        "kept (only a dead writer's are removed)",
        "-",
        f"`{T_BATCH}::test_two_runs_into_one_out_keep_each_others_temp_files`",
    ),
    (
        "fifo-and-devices",
        "a FIFO, `/dev/zero`; a FIFO in a scanned folder",
        "exit 2: `not a regular file`; in a folder: one warning line, the rest segmented",
        "-",
        "-",
        f"`{T_BATCH}::test_fifo_and_devices_are_not_regular_files`",
    ),
    (
        "unreadable-image",
        "an image the user may not read (EACCES)",
        "-",
        "`InputError`: `cannot be read (permission denied)`",
        "-",
        f"`{T_BATCH}::test_unreadable_file_says_permission_denied`",
    ),
    (
        "gif-avif-scan",
        "a folder holding a .gif and a .avif",
        "exit 0, both segmented",
        "-",
        "-",
        f"`{T_BATCH}::test_gif_and_avif_are_found_by_a_folder_scan`",
    ),
    (
        "corrupt-exif",
        "a JPEG with a corrupt EXIF block",
        "exit 0, stderr empty (was 2 Pillow lines)",
        "-",
        "-",
        f"`{T_BATCH}::test_corrupt_exif_prints_nothing`",
    ),
    (
        "quiet-encoding-bar",
        "`--quiet` with a vocabulary on the large (store) path",
        "exit 0, stderr empty",
        "-",
        "-",
        f"`{T_BATCH}::test_quiet_hides_the_encoding_progress_bar`",
    ),
    (
        "cache-sqlite-damaged",
        "embedding cache random / truncated / zeroed; a stored vector short, NaN or 16-d",
        "exit 0, one warning line naming the file, the clean run's bytes",
        "right embeddings + `CacheWarning`; rebuilt",
        "-",
        f"`{T_CACHE}` (`test_damaged_sqlite_cache_is_rebuilt`, `test_damaged_stored_vector_is_recomputed`, "
        "`test_cli_...`)",
    ),
    (
        "cache-unusable",
        "`OMNISEG_CACHE` is a file; the cache read-only; locked by another process",
        "exit 0, one warning line naming the file",
        "right embeddings + `CacheWarning`, uncached",
        "-",
        f"`{T_CACHE}` (`..._a_file_runs_uncached`, `test_read_only_...`, `test_locked_...`)",
    ),
    (
        "store-damaged",
        "`vectors.npy` truncated, random, misshapen, NaN rows; the store root a file",
        "-",
        "right embeddings + `CacheWarning`; encoded again (or in memory)",
        "-",
        f"`{T_CACHE}::test_damaged_store_is_encoded_again`, `::test_store_root_that_is_a_file_runs_in_memory`",
    ),
    (
        "faiss-index-damaged",
        "a random FAISS index file; the index of other vectors",
        "-",
        "right search + `CacheWarning`; rebuilt and persisted",
        "-",
        f"`{T_CACHE}::test_damaged_faiss_index_is_rebuilt`",
    ),
    (
        "checkpoint-damaged",
        "training checkpoint: truncated/zero safetensors, NaN weights, torn optimizer.pt, bad state.json",
        "exit 2, one line naming the file",
        "`ModelLoadError`",
        "-",
        f"`{T_CKPT}::test_a_damaged_checkpoint_is_one_line_naming_the_file`, "
        "`::test_nan_checkpoint_weights_are_refused`",
    ),
    (
        "checkpoint-pickle",
        "optimizer.pt holding an object whose unpickling creates a directory",
        "exit 2, one line",
        "`ModelLoadError`, payload never runs",
        "-",
        f"`{T_CKPT}::test_a_malicious_optimizer_file_is_one_line_and_never_runs`",
    ),
    (
        "clip-not-safetensors",
        "`--embed clip:DIR` whose model.safetensors is a pickle",
        "exit 2: `not a valid safetensors`",
        "`ModelLoadError`",
        "-",
        f"`{T_CKPT}::test_clip_folder_with_non_safetensors_weights`",
    ),
]


def _cell_cli(case: Case) -> str:
    if case.cli is None:
        return case.cli_na
    if case.error is not None:
        return f"exit 2: `{case.match}`"
    return "exit 0, one warning line" if case.warns else "exit 0"


def _cell_api(case: Case) -> str:
    if case.api is None:
        return case.api_na
    if case.error is not None:
        return f"`{case.error.__name__}`"
    return "accepted + `MultiFrameWarning`" if case.warns else "accepted"


def markdown_table() -> str:
    lines = [
        "| # | case | input | CLI | API | server | right result |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, case in enumerate(CASES, start=1):
        result = case.outcome or ("refused" if case.error is not None else "accepted")
        lines.append(
            f"| {n} | `{case.id}` | {case.input} | {_cell_cli(case)} | {_cell_api(case)} | {case.server} | {result} |"
        )
    for case_id, group, what, status in EXTRA_ROWS:
        lines.append(f"| - | `{case_id}` | {what} | - | - | {status} | ({group}) |")
    for case_id, what, cli, api, server, test in ONE_TEST_ROWS:
        lines.append(f"| - | `{case_id}` | {what} | {cli} | {api} | {server} | {test} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

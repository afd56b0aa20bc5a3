"""Hostile inputs, generated on demand (never downloaded): every file is made by a function below.

``Corpus(root, model_dir).f(name)`` returns the path of the named file (or folder), making it the
first time it is asked for. RELIABILITY.md describes each; tests/hostile_cases.py says what every
surface must answer.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import make_scene

MAKERS: dict[str, Callable[[Path, Corpus], None]] = {}
SENTINEL = "pickle-ran"  # the file a malicious pickle creates when (wrongly) unpickled


def maker(*names: str):
    def register(fn: Callable[[Path, Corpus], None]) -> Callable[[Path, Corpus], None]:
        for name in names:
            MAKERS[name] = fn
        return fn

    return register


class Corpus:
    def __init__(self, root: Path, model_dir: Path) -> None:
        self.root = root
        self.model_dir = model_dir
        root.mkdir(parents=True, exist_ok=True)

    def f(self, name: str) -> str:
        path = self.root / name
        if not path.exists() and name in MAKERS:  # other names stand for paths that do not exist
            path.parent.mkdir(parents=True, exist_ok=True)
            MAKERS[name](path, self)
        return str(path)

    def sentinel(self, name: str) -> Path:
        """Where the pickle behind ``name`` would create its file if it were ever unpickled."""
        return self.root / f"{name}.{SENTINEL}"


# ---------------------------------------------------------------------------------------- pictures
SCENE, SCENE_MASK = make_scene(np.random.default_rng(8))  # 64 x 80 street picture, class ids 0/1/2/255


def png_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes, complete: bool = True
) -> bytes:
    """A PNG written by hand, so the header can claim anything (Pillow refuses to write some of these)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    idat = packer.compress(raw_rows) + (packer.flush() if complete else packer.flush(zlib.Z_SYNC_FLUSH))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@maker("rgb.png", "target.png", "frames/00.png", "dup/a.png", "clash/x.png", "clash/x_overlay.png", "named/config.png")
def _rgb_png(path: Path, _: Corpus) -> None:
    Image.fromarray(SCENE).save(path)


@maker("dup/a.jpg")
def _rgb_jpg(path: Path, _: Corpus) -> None:
    Image.fromarray(SCENE).save(path, quality=95)


@maker("frames/01.png", "frames/02.png")
def _next_frame(path: Path, _: Corpus) -> None:
    Image.fromarray(np.roll(SCENE, int(path.stem), axis=1)).save(path)


@maker("zero.jpg", "zero_mask.png", "vocab_empty.txt")
def _zero_bytes(path: Path, _: Corpus) -> None:
    path.write_bytes(b"")


@maker("truncated.jpg")
def _truncated_jpeg(path: Path, _: Corpus) -> None:
    buf = io.BytesIO()
    Image.fromarray(SCENE).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@maker("truncated.png", "truncated_mask.png")
def _truncated_png(path: Path, _: Corpus) -> None:
    buf = io.BytesIO()
    noisy = np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)
    Image.fromarray(noisy).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@maker("text.jpg")
def _text(path: Path, _: Corpus) -> None:
    path.write_text("This is a text file, not a JPEG.\n")


@maker("bomb.png", "bomb_mask.png")
def _bomb(path: Path, _: Corpus) -> None:
    """40000 x 40000 gray PNG (1.6 gigapixels) in a few KB: the header claims it, the data starts it."""
    width = height = 40_000
    rows = (b"\x00" + b"\x00" * width) * 64
    path.write_bytes(png_bytes(width, height, 8, 0, rows, complete=False))


@maker("gray16.png")
def _gray16(path: Path, _: Corpus) -> None:
    ramp = np.linspace(0, 65535, 64 * 80).reshape(64, 80).astype(np.uint16)
    Image.fromarray(ramp).save(path)


@maker("rgb16.png")
def _rgb16(path: Path, _: Corpus) -> None:
    """48-bit RGB: every sample 0x8000 (half of full scale), big-endian as PNG stores it."""
    row = b"\x00" + b"\x80\x00" * 3 * 80
    path.write_bytes(png_bytes(80, 64, 16, 2, row * 64))


@maker("cmyk.jpg")
def _cmyk(path: Path, _: Corpus) -> None:
    Image.fromarray(SCENE).convert("CMYK").save(path, quality=95)


@maker("palette_alpha.png")
def _palette_alpha(path: Path, _: Corpus) -> None:
    im = Image.fromarray(SCENE).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(path, transparency=0)


@maker("gray.png")
def _gray(path: Path, _: Corpus) -> None:
    Image.fromarray(SCENE[..., 0]).save(path)


@maker("gray_alpha.png")
def _gray_alpha(path: Path, _: Corpus) -> None:
    Image.fromarray(np.stack([SCENE[..., 0], np.full((64, 80), 128, np.uint8)], -1), "LA").save(path)


@maker("rgba.png")
def _rgba(path: Path, _: Corpus) -> None:
    alpha = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (64, 1))  # fully transparent on the left
    Image.fromarray(np.dstack([SCENE, alpha]), "RGBA").save(path)


@maker("exif_rotated.jpg")
def _exif_rotated(path: Path, _: Corpus) -> None:
    """Stored 80 wide x 64 high with orientation 6 (rotate 90 degrees clockwise to display)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(SCENE).save(path, quality=95, exif=exif)


@maker("animated.gif")
def _animated(path: Path, _: Corpus) -> None:
    frames = [Image.fromarray(np.full((64, 80, 3), c, np.uint8)) for c in ((250, 20, 20), (20, 20, 250))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


@maker("multipage.tiff")
def _multipage(path: Path, _: Corpus) -> None:
    pages = [Image.fromarray(np.full((64, 80, 3), c, np.uint8)) for c in ((250, 20, 20), (20, 20, 250))]
    pages[0].save(path, save_all=True, append_images=pages[1:])


@maker("one_pixel.png")
def _one_pixel(path: Path, _: Corpus) -> None:
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)


@maker("wide.png")
def _wide(path: Path, _: Corpus) -> None:
    """10000 wide x 10 high."""
    Image.fromarray(np.tile(SCENE[30:40], (1, 125, 1))).save(path)


@maker("not_a_dir")
def _plain_file(path: Path, _: Corpus) -> None:
    path.write_text("a file where a directory is expected\n")


@maker("a_directory.png")
def _directory(path: Path, _: Corpus) -> None:
    path.mkdir()


# ------------------------------------------------------------------------------------------- masks
def _save_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask).save(path)


MASKS: dict[str, Callable[[], np.ndarray]] = {
    "mask_ok.png": lambda: (SCENE_MASK == 2).astype(np.uint8),
    "mask_multi.png": lambda: np.select([SCENE_MASK == 0, SCENE_MASK == 2], [1, 2], 0).astype(np.uint8),
    "mask_255.png": lambda: np.where(SCENE_MASK == 2, 255, 0).astype(np.uint8),
    "mask_16bit.png": lambda: np.where(SCENE_MASK == 2, 1000, 0).astype(np.uint16),
    "mask_soft.png": lambda: np.linspace(0, 255, 64 * 80).reshape(64, 80).astype(np.uint8),
    "mask_zero.png": lambda: np.zeros((64, 80), np.uint8),
    "mask_one.png": lambda: np.ones((64, 80), np.uint8),
    "mask_small.png": lambda: np.ones((32, 40), np.uint8),
    "mask_rgb.png": lambda: np.dstack([(SCENE_MASK == 2).astype(np.uint8)] * 3),
}
for _name in MASKS:
    maker(_name)(lambda path, _c: _save_mask(path, MASKS[path.name]()))


# ---------------------------------------------------------------------------------------- datasets
def _dataset(root: Path, mask_edit: Callable[[np.ndarray], np.ndarray] | None, image_text: bool = False) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        image_path = root / "images" / f"img{i}.png"
        if image_text and i == 1:
            image_path.write_text("not an image")
        else:
            Image.fromarray(SCENE).save(image_path)
        mask = SCENE_MASK if mask_edit is None or i == 0 else mask_edit(SCENE_MASK.copy())
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    (root / "classes.json").write_text(json.dumps(["sky", "road", "car"]))


@maker("dataset_beyond")
def _dataset_beyond(path: Path, _: Corpus) -> None:
    def add_id_7(mask: np.ndarray) -> np.ndarray:
        mask[10:20, 10:20] = 7
        return mask

    _dataset(path, add_id_7)


@maker("dataset_corrupt_image")
def _dataset_corrupt(path: Path, _: Corpus) -> None:
    _dataset(path, None, image_text=True)


# ------------------------------------------------------------------------------------ vocabularies
VOCABS: dict[str, bytes] = {
    "vocab_comments.txt": b"# nothing but comments\n\n   \n# and blank lines\n",
    "vocab_commas.txt": b"sky\n , ,\nroad\n",
    "vocab_dupes.txt": b"car\nroad\nCar\n",
    "vocab_latin1.txt": "sky\ncaf\u00e9 terrace\n".encode("latin-1"),
    "vocab_utf16.txt": "sky\nroad\n".encode("utf-16"),
    "vocab_bom.txt": "sky\nroad\ncar\n".encode("utf-8-sig"),
    "vocab_intl.txt": "\U0001f697 car\n\u05e9\u05de\u05d9\u05d9\u05dd\n\u0637\u0631\u064a\u0642\n".encode(),
    "vocab_control.txt": b"sky\nro\x00ad\n",
    "vocab_zero_width.txt": "sky\n\u200b\u200b\u200d\nroad\n".encode(),
    "vocab_bidi.txt": "sky\nro\u202ead\n".encode(),
    "vocab_line_separator.txt": "sky\nred\u2028car\nroad\u0085way\n".encode(),
    "vocab_long_name.txt": ("sky\n" + "x" * 900_000 + "\n").encode(),
}
for _name in VOCABS:
    maker(_name)(lambda path, _c: path.write_bytes(VOCABS[path.name]))

MILLION = 1_000_000


@maker("vocab_million.txt")
def _million(path: Path, _: Corpus) -> None:
    path.write_text("\n".join(f"class {i:07d}, synonym {i:07d}" for i in range(MILLION)) + "\n")


# ------------------------------------------------------------------------------------------ models
class Malicious:
    """Unpickling this creates a directory (a stand-in for any code an attacker would run)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def _model_copy(path: Path, corpus: Corpus, config: dict | None = None, weights: bytes | None = None) -> None:
    shutil.copytree(corpus.model_dir, path)
    if config is not None:
        cfg = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**cfg, **config}))
    if weights is not None:
        (path / "model.safetensors").write_bytes(weights)


@maker("model_zero")
def _model_zero(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, weights=b"")


@maker("model_truncated")
def _model_truncated(path: Path, corpus: Corpus) -> None:
    data = (corpus.model_dir / "model.safetensors").read_bytes()
    _model_copy(path, corpus, weights=data[: len(data) // 2])


@maker("model_random")
def _model_random(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, weights=np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())


@maker("model_pickle")
def _model_pickle(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, weights=pickle.dumps(Malicious(corpus.sentinel("model_pickle"))))


@maker("model_bin_only")
def _model_bin_only(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(pickle.dumps(Malicious(corpus.sentinel("model_bin_only"))))


@maker("backbone_pickle.pth")
def _backbone_pickle(path: Path, corpus: Corpus) -> None:
    path.write_bytes(pickle.dumps({"_conv_stem.weight": Malicious(corpus.sentinel("backbone_pickle.pth"))}))


@maker("model_bad_json")
def _model_bad_json(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus)
    (path / "config.json").write_text('{"feature_dim": 32,')


@maker("model_config_list")
def _model_config_list(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus)
    (path / "config.json").write_text("[32, 64]")


@maker("model_config_huge")
def _model_config_huge(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"feature_dim": 1_000_000_000})


@maker("model_config_product")
def _model_config_product(path: Path, corpus: Corpus) -> None:
    """Every field within its own bound, 7.7 G parameters together (issue 13)."""
    big = dict.fromkeys(("feature_dim", "ffn_dim", "num_queries", "fpn_dim"), 4096)
    _model_copy(path, corpus, config={**big, "num_blocks": 64, "pos_grid": 512})


@maker("model_nan")
def _model_nan(path: Path, corpus: Corpus) -> None:
    from safetensors.torch import load_file, save_file

    _model_copy(path, corpus)
    tensors = load_file(str(path / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name][0] = float("nan")
    save_file(tensors, str(path / "model.safetensors"))


@maker("model_pixel_weight_nan")
def _model_pixel_weight_nan(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"pixel_weight": float("nan"), "pixel_head": True})


@maker("model_pixel_weight_text")
def _model_pixel_weight_text(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"pixel_weight": "half"})


@maker("model_unknown_arch")
def _model_unknown_arch(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"arch": "unet"})


@maker("model_as_out")
def _model_as_out(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus)


@maker("model_mismatch")
def _model_mismatch(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"feature_dim": 64})


@maker("model_heads")
def _model_heads(path: Path, corpus: Corpus) -> None:
    _model_copy(path, corpus, config={"num_heads": 3})


# ------------------------------------------------------------------------------------------- train
@maker("train_garbage.yaml")
def _train_garbage(path: Path, _: Corpus) -> None:
    path.write_bytes(bytes(range(256)) * 4)


@maker("train_list.yaml")
def _train_list(path: Path, _: Corpus) -> None:
    path.write_text("- just\n- a list\n")

"""ONNX export of the native model and an ONNX Runtime stand-in for it.

    omniseg export onnx --out DIR [--model MODEL_DIR]      # DIR/model.onnx + DIR/config.json
    omniseg segment IMG --classes ... --runtime onnx [--model DIR]

The graph takes images [1,3,H,W] (RGB in 0..1, any H and W: dynamic axes) and returns the four
outputs of OpenSegModel.forward. ``--runtime onnx`` with a native model directory (or none: the
embedded default) exports once into the cache (OMNISEG_CACHE/onnx/<weights hash>) and reuses it.
Exporting needs the packages onnx and onnxscript; running needs onnxruntime only
(``pip install 'omniseg[onnx]'``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from omniseg.errors import MissingResourceError
from omniseg.models.openseg import (
    CONFIG_NAME,
    TRAINED_CLASSES_NAME,
    WEIGHTS_NAME,
    OpenSegModel,
    read_known_concepts,
)

if TYPE_CHECKING:
    from omniseg.segmenter import Segmenter
    from omniseg.text.encoder import TextEncoder

ONNX_NAME = "model.onnx"
OUTPUTS = ("mask_logits", "embeddings", "objectness", "pixel_features")
# The frozen recognizer's outputs (omniseg.recognition), exported when the model has it.
RECOGNIZER_OUTPUTS = ("imagenet_logits", "imagenet_pixel_logits")


def output_names(model: OpenSegModel) -> tuple[str, ...]:
    return OUTPUTS + (RECOGNIZER_OUTPUTS if getattr(model, "recognizer", None) is not None else ())


OPSET = 18


class _Outputs(torch.nn.Module):
    """OpenSegModel with a tuple output (ONNX graphs have positional outputs)."""

    def __init__(self, model: OpenSegModel) -> None:
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        return tuple(out[name] for name in self.names)


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require(module: str, purpose: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingResourceError(f"{purpose} needs the package {module}: pip install 'omniseg[onnx]'")


def export_onnx(
    out_dir: str | Path, model_dir: str | Path | None = None, sample_size: tuple[int, int] = (384, 512)
) -> Path:
    """Write ``out_dir/model.onnx`` (dynamic height and width) and the model's config.json; returns the .onnx path."""
    from omniseg.segmenter import DEFAULT_MODEL_DIR

    _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    source = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    model = OpenSegModel.from_pretrained(source).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = torch.rand(1, 3, *sample_size)
    quiet = io.StringIO()  # the exporter prints its progress; the CLI prints one line of its own
    with (
        tempfile.TemporaryDirectory(dir=out) as tmp,
        warnings.catch_warnings(),
        contextlib.redirect_stdout(quiet),
        _quiet_logger("torch.onnx"),
    ):
        warnings.simplefilter("ignore")
        # Dim.AUTO: height and width stay symbolic; the shape guards torch.export derives (e.g. the
        # stride-32 map is not 1x1) are facts of any real input, not errors as with a ranged Dim.
        auto = torch.export.Dim.AUTO
        program = torch.export.export(_Outputs(model), (sample,), dynamic_shapes={"images": {2: auto, 3: auto}})
        tmp_path = Path(tmp) / ONNX_NAME
        torch.onnx.export(
            program,
            (sample,),
            str(tmp_path),
            input_names=["images"],
            output_names=list(output_names(model)),
            dynamo=True,
            opset_version=OPSET,
            optimize=True,
            external_data=False,
            verbose=False,
        )
        tmp_path.replace(out / ONNX_NAME)
    config = json.loads((source / CONFIG_NAME).read_text())
    config["logit_scale_class"] = float(model.logit_scale_class.detach())
    config["exported_from"] = str(source.resolve())
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    if (source / TRAINED_CLASSES_NAME).is_file():  # the "seen" names travel with the export
        shutil.copyfile(source / TRAINED_CLASSES_NAME, out / TRAINED_CLASSES_NAME)
    return out / ONNX_NAME


class OnnxOpenSeg:
    """Runs model.onnx with ONNX Runtime and answers like OpenSegModel.forward (torch tensors)."""

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        _require("onnxruntime", "--runtime onnx")
        import onnxruntime as ort

        directory = Path(directory)
        path = directory / ONNX_NAME
        if not path.is_file():
            raise MissingResourceError(
                f"no ONNX model at {path}: write one with `omniseg export onnx --out {directory}`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        config = json.loads((directory / CONFIG_NAME).read_text()) if (directory / CONFIG_NAME).is_file() else {}
        self.config = config
        self.logit_scale_class = torch.tensor(float(config.get("logit_scale_class", 2.3)))
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        # Segmenter fuses the frozen recognizer when the model has one: here, when the graph outputs it.
        self.recognizer = True if set(RECOGNIZER_OUTPUTS) <= set(self.outputs) else None

    def eval(self) -> OnnxOpenSeg:
        return self

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        arrays = self.session.run(
            list(self.outputs), {"images": np.ascontiguousarray(images.numpy(), dtype=np.float32)}
        )
        return {name: torch.from_numpy(a) for name, a in zip(self.outputs, arrays, strict=True)}


def weights_key(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        digest.update((model_dir / name).read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(",".join(OUTPUTS + RECOGNIZER_OUTPUTS).encode())  # exports of other outputs are other files
    return digest.hexdigest()[:16]


def cached_export(model_dir: str | Path | None = None) -> Path:
    """The directory of an ONNX export of ``model_dir`` (default: the embedded model), exported on first use."""
    from omniseg.segmenter import DEFAULT_MODEL_DIR
    from omniseg.text.cache import default_cache_dir

    source = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    if not (source / CONFIG_NAME).is_file() or not (source / WEIGHTS_NAME).is_file():
        raise MissingResourceError(f"no model at {source}: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    target = default_cache_dir() / "onnx" / weights_key(source)
    if not (target / ONNX_NAME).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            export_onnx(staging, source)
            if not (target / ONNX_NAME).is_file():  # another process may have finished first
                shutil.rmtree(target, ignore_errors=True)
                staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_onnx_segmenter(
    model: str | Path | None = None, text_encoder: TextEncoder | None = None, max_size: int = 512
) -> Segmenter:
    """A Segmenter on ONNX Runtime: ``model`` is an export directory (model.onnx), a native model
    directory (exported once into the cache) or None (the embedded default model)."""
    from omniseg.segmenter import Segmenter
    from omniseg.text.encoder import default_text_encoder

    directory = Path(model) if model else None
    if directory is None or not (directory / ONNX_NAME).is_file():
        directory = cached_export(directory)
    net = OnnxOpenSeg(directory)
    model_id = ("omniseg-default" if model is None else str(model)) + " (onnx)"
    encoder = text_encoder or default_text_encoder()
    return Segmenter(net, encoder, model_id=model_id, max_size=max_size, known=read_known_concepts(directory))  # type: ignore[arg-type]


@torch.inference_mode()
def compare_with_torch(
    onnx_dir: str | Path, model_dir: str | Path | None = None, size: tuple[int, int] = (200, 264), seed: int = 0
) -> dict[str, float]:
    """Max absolute difference per output between ONNX Runtime and PyTorch eager on a random image
    (of a size other than the export sample, so the dynamic axes are exercised)."""
    from omniseg.segmenter import DEFAULT_MODEL_DIR

    model = OpenSegModel.from_pretrained(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR).eval()
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    expected = model(x)
    got = OnnxOpenSeg(onnx_dir)(x)
    return {name: float((got[name] - expected[name]).abs().max()) for name in OUTPUTS}

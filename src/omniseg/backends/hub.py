"""Finding and loading a transformers checkpoint: a local directory, or a hub id where downloads are allowed.

Offline first: a hub id is looked up in the local Hugging Face cache only, unless the user allows
downloads with ``HF_HUB_OFFLINE=0``; then the download has short timeouts. Anything missing is a
MissingResourceError naming what was looked for and how to provide it (one line, exit 2 in the
CLI), never a hang or a traceback. Weights are read from safetensors only (docs/ARCHITECTURE.md: never
unpickle a file omniseg did not write).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from omniseg.backends.device import resolve_device
from omniseg.errors import MissingResourceError, ModelLoadError

# Files a checkpoint directory needs (weights, configs, tokenizer); never *.bin / *.pt / *.h5 / *.msgpack.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def downloads_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "off")


def resolve_checkpoint(spec: str | Path, what: str) -> Path:
    """A local directory holding the checkpoint of ``spec`` (a directory or a hub id like 'facebook/sam-vit-base')."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MissingResourceError(f"{what} checkpoint at {path} has no config.json (save it with save_pretrained)")
        return path
    text = str(spec)
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise MissingResourceError(
            f"{what} checkpoint not found: no directory {path}; give a directory written by save_pretrained "
            "or a hub id such as 'owner/name'"
        )
    from huggingface_hub import snapshot_download

    online = downloads_allowed()
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        local = snapshot_download(text, local_files_only=not online, allow_patterns=ALLOW_PATTERNS)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, network: all mean "not available here"
        how = (
            "the download failed" + f" ({exc.__class__.__name__})"
            if online
            else "downloads are off (HF_HUB_OFFLINE); set HF_HUB_OFFLINE=0 to download it, or "
            f"`huggingface-cli download {text}` where there is internet"
        )
        raise MissingResourceError(
            f"{what} checkpoint {text!r} is neither a local directory nor in the Hugging Face cache and {how}; "
            "or pass a local directory written by save_pretrained"
        ) from None
    return Path(local)


def load_model(cls: Any, directory: Path, what: str) -> Any:
    """``cls.from_pretrained(directory)`` from safetensors only, offline, in eval mode."""
    if not any(directory.glob("*.safetensors")):
        raise MissingResourceError(
            f"{what} checkpoint at {directory} has no *.safetensors weights (omniseg does not unpickle "
            "pytorch_model.bin): convert it with save_pretrained(..., safe_serialization=True)"
        )
    try:
        model = cls.from_pretrained(directory, local_files_only=True, use_safetensors=True)
    except (SafetensorError, RuntimeError) as exc:  # a weights file that is not safetensors, or torn
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelLoadError(f"{what} weights in {directory} are not a valid safetensors file: {first}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise MissingResourceError(f"cannot load {what} from {directory}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def transformers_class(name: str, what: str) -> Any:
    """``transformers.<name>``, imported here (seconds: only when a transformers backend is built); an
    older transformers without it, or a class that needs a package not installed (EdgeTAM's timm
    backbone), is a one-line MissingResourceError naming what is missing."""
    import transformers

    try:
        return getattr(transformers, name)
    except AttributeError:
        raise MissingResourceError(
            f"{what} needs transformers' {name}, which transformers {transformers.__version__} does not have: "
            "pip install -U 'transformers>=5'"
        ) from None
    except ImportError as exc:
        raise MissingResourceError(f"{what} needs a package that is not installed: {_first_line(exc)}") from None


def open_checkpoint(
    spec: str | Path, model_class: str | type, what: str, device: str | torch.device = "cpu"
) -> Checkpoint:
    """The preamble every transformers adapter shares: the device checked first (a bad one fails before
    seconds of loading), the directory or cached hub id resolved offline, the model class
    (``transformers.<model_class>`` for a name; a class imported from its module by the caller, as SAM
    3's must be: backends.sam3.sam3_modeling) loaded from safetensors in eval mode and moved to the
    device; each failure a one-line error."""
    where = resolve_device(device)
    directory = resolve_checkpoint(spec, what)
    cls = transformers_class(model_class, what) if isinstance(model_class, str) else model_class
    try:
        model = load_model(cls, directory, what)
    except ImportError as exc:  # a sub-model needing an absent package (EdgeTAM's timm backbone)
        raise MissingResourceError(f"{what} needs a package that is not installed: {_first_line(exc)}") from None
    return Checkpoint(directory, model.to(where), where)


@dataclass(frozen=True)
class Checkpoint:
    """What ``open_checkpoint`` gives: the checkpoint's directory, its model (eval, on ``device``) and the device."""

    directory: Path
    model: Any
    device: torch.device


def _first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (transformers' start with a newline)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)


def load_tokenizer(directory: Path, what: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        hint = (
            " (SigLIP's tokenizer needs: pip install 'omniseg[backends]')"
            if "sentencepiece" in str(exc).lower()
            else ""
        )
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise MissingResourceError(f"no usable tokenizer for {what} in {directory}: {first}{hint}") from None


def preprocessor_config(directory: Path) -> dict:
    path = directory / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def normalization(
    directory: Path, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std [1,3,1,1] for images in 0..1, from preprocessor_config.json when present."""
    cfg = preprocessor_config(directory)
    m = torch.tensor(cfg.get("image_mean", mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(cfg.get("image_std", std), dtype=torch.float32).view(1, 3, 1, 1)
    return m, s


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> float [1,3,H,W] in 0..1."""
    array = np.ascontiguousarray(image) if image.flags.writeable else np.array(image)
    return torch.from_numpy(array).permute(2, 0, 1).float().unsqueeze(0) / 255.0


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def fit_size(height: int, width: int, longest: int, multiple: int = 1) -> tuple[int, int]:
    """(h, w) with the longest side ``longest``, the aspect kept, each a multiple of ``multiple``."""
    scale = longest / max(height, width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


def checkpoint_id(directory: Path, name: str) -> str:
    """Identifies a checkpoint's weights (path, size, mtime), e.g. to key cached text embeddings."""
    stamps = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(directory.glob("*.safetensors"))]
    return f"{name}@{directory.resolve()}#{'|'.join(stamps)}"

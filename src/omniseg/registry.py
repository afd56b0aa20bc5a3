"""``omniseg.load()`` and the one registry of model kinds: the only place ``KIND:PATH`` is parsed.

A model kind is one registration: its name, the roles it can play and a builder
``build(path, context) -> object``. Roles:

| role | flag | what the builder returns |
|---|---|---|
| model | ``--model`` | a complete region source (omniseg.source.RegionSource) or concept source (SAM 3) |
| masks | ``--masks`` | a mask source (backends.base.MaskSource): proposals, maybe with own embeddings |
| embed | ``--embed`` | an embedding source (backends.base.EmbedSource): dense features + its text encoder |
| examples | ``--model`` of incontext/video | a painter with ``incontext()`` and ``video()`` (SegGPT) |

Adding a backend (docs/ARCHITECTURE.md): write its adapter under ``omniseg/backends/`` and call
``register(ModelKind(...))`` below (or from your own package); every command (``segment``,
``batch``, ``eval``, ``serve``, ``refer``, ``click``, ``incontext``, ``video``) and ``omniseg.load``
then accept it. Transformers-based adapters import transformers inside their constructor: it is
the heaviest optional import (seconds) and only needed when that backend is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from omniseg.backends.base import ComposedSource, EmbedSource, MaskSource
from omniseg.backends.clip import ClipBackend
from omniseg.backends.device import resolve_device
from omniseg.backends.mask2former import UniversalSegmentationBackend
from omniseg.backends.native import NativeSource
from omniseg.backends.sam import SamBackend
from omniseg.backends.sam3_source import Sam3Source
from omniseg.backends.seggpt import SegGptBackend
from omniseg.errors import InputError, MissingResourceError
from omniseg.export.onnx import onnx_network
from omniseg.models import DEFAULT_MODEL_DIR
from omniseg.models.openseg import OpenSegModel, read_known_concepts
from omniseg.segmenter import Segmenter
from omniseg.source import ConceptSource, RegionSource
from omniseg.text.encoder import TextEncoder, default_text_encoder

Role = Literal["model", "masks", "embed", "examples"]
ROLE_FLAGS: dict[str, str] = {"model": "--model", "masks": "--masks", "embed": "--embed", "examples": "--model"}
DEFAULT_NAME = "omniseg-default"


@dataclass
class BuildContext:
    """What a builder may need besides its path."""

    max_size: int = 512
    text_encoder: TextEncoder | None = None  # the caller's; default MiniLM on first use
    device: str = "cpu"  # where the built source runs (backends.device.resolve_device validates it)

    def cpu_only(self, kind: str) -> None:
        """For adapters that do not place their model on a device yet: a one-line error elsewhere."""
        if resolve_device(self.device).type != "cpu":
            raise InputError(f"{kind} runs on the CPU only so far: drop --device {self.device} (or use --device cpu)")

    def encoder(self) -> TextEncoder:
        if self.text_encoder is None:
            self.text_encoder = default_text_encoder()
        return self.text_encoder


@dataclass(frozen=True)
class ModelKind:
    """A registered kind: ``name`` in ``KIND:PATH``, the roles it plays, and its builder.

    path_optional: ``KIND`` alone is valid (the native model: the embedded default).
    own_embeddings: as a mask source it brings region embeddings (no embedding source needed).
    """

    name: str
    roles: frozenset[str]
    build: Callable[[str | None, BuildContext, str], Any]  # (path, context, role) -> source
    summary: str
    path_optional: bool = False
    own_embeddings: bool = False


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add (or replace) a model kind; returns it."""
    KINDS[kind.name] = kind
    return kind


def kinds_for(role: str) -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if role in kind.roles)


def parse_spec(spec: str, role: str | None = None, flag: str | None = None) -> tuple[str, str | None]:
    """'sam:PATH' -> ('sam', 'PATH'); 'native' -> ('native', None). ``role``: the kinds allowed."""
    allowed = kinds_for(role) if role else tuple(KINDS)
    flag = flag or (ROLE_FLAGS[role] if role else "backend")
    name, _, path = spec.partition(":")
    name = name.strip().lower()
    if name not in allowed:
        raise InputError(f"{flag} {spec!r}: unknown kind {name!r}; use KIND:PATH with KIND one of {', '.join(allowed)}")
    path = path.strip()
    if not path and not KINDS[name].path_optional:
        raise InputError(f"{flag} {spec!r} names no checkpoint: use {name}:DIRECTORY or {name}:HUB_ID")
    return name, (path or None)


def is_spec(text: str, role: str) -> bool:
    """Whether ``text`` reads as ``KIND:PATH`` of a kind playing ``role`` (else: a model directory)."""
    name, sep, _ = text.partition(":")
    return bool(sep) and name.strip().lower() in kinds_for(role) and not Path(text).is_dir()


def build(spec: str, role: str, context: BuildContext | None = None, flag: str | None = None) -> Any:
    """The object ``spec`` names in ``role`` (see the table in the module docstring)."""
    name, path = parse_spec(spec, role, flag)
    return KINDS[name].build(path, context or BuildContext(), role)


# -- the kinds omniseg ships ------------------------------------------------------------------------
def _native_directory(path: str | None) -> Path:
    directory = Path(path) if path else DEFAULT_MODEL_DIR
    if path is not None and not directory.is_dir():
        raise MissingResourceError(f"no model at {path}: expected a directory with config.json and weights")
    return directory


def _build_native(path: str | None, context: BuildContext, role: str) -> NativeSource:
    directory = _native_directory(path)
    network = OpenSegModel.from_pretrained(directory).eval()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    known = read_known_concepts(directory)
    name = path or DEFAULT_NAME
    return NativeSource(network, name=name, max_size=context.max_size, known=known, device=context.device)


def _build_onnx(path: str | None, context: BuildContext, role: str) -> NativeSource:
    if resolve_device(context.device).type != "cpu":
        raise InputError(f"--runtime onnx runs on ONNX Runtime's CPU provider: drop --device {context.device}")
    network = onnx_network(path)
    known = read_known_concepts(network.directory)
    return NativeSource(network, name=f"{path or DEFAULT_NAME} (onnx)", max_size=context.max_size, known=known)


def _build_universal(kind: str) -> Callable[[str | None, BuildContext, str], Any]:
    def build_universal(path: str | None, context: BuildContext, role: str) -> Any:
        assert path is not None
        context.cpu_only(kind)
        backend = UniversalSegmentationBackend(path, context.encoder(), kind=kind, max_size=context.max_size)
        return ComposedSource(backend, None, name=f"{kind}:{path}") if role == "model" else backend

    return build_universal


def _build_clip(kind: str) -> Callable[[str | None, BuildContext, str], Any]:
    def build_clip(path: str | None, context: BuildContext, role: str) -> ClipBackend:
        assert path is not None
        context.cpu_only(kind)
        return ClipBackend(path, kind=kind)

    return build_clip


register(
    ModelKind(
        "native",
        frozenset({"model", "masks", "embed"}),
        _build_native,
        "the native OpenSeg model (a directory written by save_pretrained; none: the embedded default)",
        path_optional=True,
        own_embeddings=True,
    )
)
register(
    ModelKind(
        "onnx",
        frozenset({"model", "masks"}),
        _build_onnx,
        "the native model on ONNX Runtime (an export directory or a native model directory, exported once)",
        path_optional=True,
        own_embeddings=True,
    )
)


def _build_sam(path: str | None, context: BuildContext, role: str) -> SamBackend:
    assert path is not None
    context.cpu_only("sam")
    return SamBackend(path)


def _build_sam3(path: str | None, context: BuildContext, role: str) -> Sam3Source:
    assert path is not None
    return Sam3Source(path, device=context.device)


register(
    ModelKind(
        "sam",
        frozenset({"masks"}),
        _build_sam,
        "SAM: point-grid proposals + NMS; answers clicks and boxes itself",
    )
)
register(
    ModelKind(
        "sam3",
        frozenset({"model"}),
        _build_sam3,
        "SAM 3: the instances of each named concept (one image encoding, prompts decoded in batches); "
        "semantic/instance/panoptic over a vocabulary",
    )
)
for _kind, _labels in (("mask2former", "COCO"), ("oneformer", "ADE20K")):
    register(
        ModelKind(
            _kind,
            frozenset({"model", "masks"}),
            _build_universal(_kind),
            f"{_kind}: its query masks, its ({_labels}) labels matched to your classes by name",
            own_embeddings=True,
        )
    )
for _kind in ("clip", "siglip"):
    register(
        ModelKind(
            _kind,
            frozenset({"embed"}),
            _build_clip(_kind),
            f"{_kind}: dense features (MaskCLIP value path) and its own text tower",
        )
    )
register(
    ModelKind(
        "seggpt",
        frozenset({"examples"}),
        lambda path, context, role: SegGptBackend(path),  # type: ignore[arg-type]
        "SegGPT: paints the targets from the examples (incontext, video)",
    )
)


# -- the door's factory ------------------------------------------------------------------------------
def load(
    model: str | Path | RegionSource | ConceptSource | None = None,
    text_encoder: TextEncoder | None = None,
    max_size: int = 512,
    masks: str | MaskSource | None = None,
    embed: str | EmbedSource | None = None,
    runtime: Literal["torch", "onnx"] = "torch",
    device: str = "cpu",
) -> Segmenter:
    """A Segmenter (the door) on the source these arguments name.

    model: a native model directory (None: the embedded default), a ``KIND:PATH`` spec of a complete
    source (``onnx:DIR``, ``mask2former:ID``, ...) or a region source object.
    masks / embed: compose masks of one source with embeddings of another, as specs
    (``masks="sam:facebook/sam-vit-base", embed="clip:openai/clip-vit-base-patch32"``) or objects;
    the missing half is the native model of ``model`` (or, for a mask source with its own label
    embeddings such as Mask2Former, nothing).
    runtime="onnx": the native model through ONNX Runtime (omniseg.export.onnx).
    device: where the built sources run ("cpu", "cuda", "cuda:1", "mps"; backends.device): an unknown
    or absent device is a one-line InputError before anything loads.
    """
    if runtime not in ("torch", "onnx"):
        raise InputError(f"unknown runtime {runtime!r}: use torch or onnx")
    context = BuildContext(max_size=max_size, text_encoder=text_encoder, device=str(resolve_device(device)))
    if isinstance(model, (RegionSource, ConceptSource)):
        if masks is not None or embed is not None or runtime != "torch":
            raise InputError("a region source object is complete: give no masks, embed or runtime with it")
        return Segmenter(model, text_encoder)
    if runtime == "onnx" and (masks is not None or embed is not None):
        raise InputError("--runtime onnx runs the native model only: drop --masks/--embed or use --runtime torch")
    base = _base_spec(model, runtime)
    if (masks is not None or embed is not None) and not {"masks", "embed"} & KINDS[parse_spec(base, "model")[0]].roles:
        raise InputError(f"--model {base!r} is a complete model: give no --masks/--embed with it")
    if masks is None and embed is None:
        return Segmenter(build(base, "model", context), text_encoder)
    return Segmenter(_composed(base, masks, embed, context), text_encoder)


def _base_spec(model: str | Path | None, runtime: str) -> str:
    """The ``KIND:PATH`` of ``model`` (a directory means the native kind)."""
    text = None if model is None else str(model)
    if text is not None and is_spec(text, "model"):
        if runtime == "onnx":
            raise InputError(f"--runtime onnx runs a native model directory, not {text!r}")
        return text
    kind = "onnx" if runtime == "onnx" else "native"
    return kind if text is None else f"{kind}:{text}"


def _composed(
    base: str, masks: str | MaskSource | None, embed: str | EmbedSource | None, context: BuildContext
) -> RegionSource:
    """Masks from ``masks`` (default: the base model) x embeddings from ``embed`` (default: the base
    model, or none for a mask source with its own label embeddings). A bare ``native`` names the
    base model; when both halves are the same native model, that model is the source."""
    built: dict[str, Any] = {}  # spec -> object: one native model serves as both halves

    def get(spec: str, role: str) -> Any:
        if spec not in built:
            built[spec] = build(spec, role, context, ROLE_FLAGS[role] if role == "model" else f"--{role}")
        return built[spec]

    def normalised(spec: str, role: str) -> str:
        kind, path = parse_spec(spec, role, f"--{role}")
        return base if kind == "native" and path is None and base.split(":")[0] == "native" else spec

    mask_spec: str | None
    mask_source: MaskSource
    if masks is None or isinstance(masks, str):
        mask_spec = base if masks is None else normalised(masks, "masks")
        mask_source = get(mask_spec, "masks")
    else:
        mask_spec, mask_source = None, masks
    embed_source: Any
    if isinstance(embed, str):
        embed_source = get(normalised(embed, "embed"), "embed")
    elif embed is not None:
        embed_source = embed
    elif mask_spec is not None and mask_spec != base and KINDS[parse_spec(mask_spec, "masks")[0]].own_embeddings:
        embed_source = None  # Mask2Former/OneFormer: its own label embeddings
    else:
        if "embed" not in KINDS[parse_spec(base, "model")[0]].roles:
            raise InputError(f"--model {base!r} gives no embeddings for other masks: add --embed KIND:PATH")
        embed_source = get(base, "embed")
    if embed_source is mask_source and isinstance(mask_source, NativeSource):
        return mask_source
    if isinstance(mask_source, ConceptSource) or isinstance(embed_source, ConceptSource):
        raise InputError("a concept source (sam3) is a complete model: give it as --model, without --masks/--embed")
    shown_masks = _shown(masks, "native")
    name = f"masks={shown_masks},embed={_shown(embed, shown_masks if embed_source is None else 'native')}"
    return ComposedSource(mask_source, embed_source, name=name)


def _shown(part: object, default: str) -> str:
    if part is None:
        return default
    return part if isinstance(part, str) else str(getattr(part, "name", type(part).__name__))


def load_example_model(spec: str | None) -> SegGptBackend | None:
    """The painter ``--model seggpt:PATH`` names for incontext/video, or None (the model's Regions do it)."""
    if spec is None or not is_spec(spec, "examples"):
        return None
    return build(spec, "examples")

"""``omniseg.load()`` and the one registry of model kinds: the only place ``KIND:PATH`` is parsed.

A model kind is one registration: its name, the roles it can play and a builder
``build(path, context) -> object``. Roles:

| role | flag | what the builder returns |
|---|---|---|
| model | ``--model`` | a complete region source (omniseg.source.RegionSource) or concept source (SAM 3, CLIPSeg) |
| masks | ``--masks`` | a mask source (backends.base.MaskSource): proposals, maybe with own embeddings |
| embed | ``--embed`` | an embedding source (backends.base.EmbedSource): dense features + its text encoder |
| examples | ``--model`` of incontext/video | an ExampleSource, ``incontext()`` by itself: SegGPT (video too), SAM 3 |
| clicks | ``--model`` of click | a PromptableSource: answers clicks and boxes (SAM 2, SAM 3 tracker, EdgeTAM) |
| video | ``--model`` of video | a VideoSource: first-frame mask propagation with its own memory (SAM 2 video) |
| concepts-video | ``--model`` of video --classes | a ConceptTrackingSource: tracks the names' instances (SAM 3) |
| boxes | ``--boxes`` | a box detector for the names (Grounding DINO), composed with ``--masks`` into Grounded-SAM |

A kind's builder is told the role it builds (``sam3``: a concept source as ``model``, exemplar prompts
as ``examples``, concept tracking as ``concepts-video``). The roles of one kind may also be registered
in several blocks (``register`` merges them: a plugin adds a role to a shipped kind); each role is
built by the block that declares it. ``load(..., task=)`` picks the role a command needs
(TASK_ROLES). Grounded-SAM (``--boxes`` + ``--masks``) and CLIPSeg are concept sources, like SAM 3.

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
from omniseg.backends.click_source import ClickSource
from omniseg.backends.clip import ClipBackend
from omniseg.backends.clipseg import ClipSegDense
from omniseg.backends.device import resolve_device
from omniseg.backends.grounded_sam import GroundedSam, GroundingDinoBoxes
from omniseg.backends.mask2former import UniversalSegmentationBackend
from omniseg.backends.native import NativeSource
from omniseg.backends.sam import SamBackend
from omniseg.backends.sam2 import ClickBackend
from omniseg.backends.sam2_video import VideoPropagator
from omniseg.backends.sam3 import Sam3Backend
from omniseg.backends.sam3_examples import Sam3Examples
from omniseg.backends.sam3_source import Sam3Source
from omniseg.backends.sam3_video import ConceptTracker
from omniseg.backends.seggpt import SegGptBackend
from omniseg.errors import InputError, MissingResourceError
from omniseg.export.onnx import onnx_network
from omniseg.models import DEFAULT_MODEL_DIR
from omniseg.models.openseg import OpenSegModel, read_known_concepts
from omniseg.segmenter import Segmenter
from omniseg.source import TASK_SOURCES, AnySource, ConceptSource, RegionSource
from omniseg.text.encoder import TextEncoder, default_text_encoder

Role = Literal["model", "masks", "embed", "examples", "clicks", "video", "concepts-video", "boxes"]
ROLE_FLAGS: dict[str, str] = {
    "model": "--model",
    "masks": "--masks",
    "embed": "--embed",
    "examples": "--model",
    "clicks": "--model",
    "video": "--model",
    "concepts-video": "--model",
    "boxes": "--boxes",
}
# the door's task -> the role a kind plays for it when it is not a complete region source ("model")
TASK_ROLES: dict[str, str] = {"click": "clicks", "incontext": "examples", "video": "video", "track": "concepts-video"}
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
    """Add a model kind, or roles to a kind already registered: the roles ``kind`` declares are built by
    its builder, the kind's other roles keep theirs (a registration declaring every role replaces the
    kind). Returns the kind as registered."""
    old = KINDS.get(kind.name)
    if old is not None and not kind.roles >= old.roles:
        kind = _merged(old, kind)
    KINDS[kind.name] = kind
    return kind


def _merged(old: ModelKind, new: ModelKind) -> ModelKind:
    def build(path: str | None, context: BuildContext, role: str) -> Any:
        return (new if role in new.roles else old).build(path, context, role)

    return ModelKind(
        new.name,
        old.roles | new.roles,
        build,
        f"{old.summary}; {new.summary}",
        path_optional=old.path_optional and new.path_optional,
        own_embeddings=old.own_embeddings or new.own_embeddings,
    )


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


def is_spec(text: str, role: str | None) -> bool:
    """Whether ``text`` reads as ``KIND:PATH`` of a kind playing ``role`` (None: any role; else: a model
    directory)."""
    name, sep, _ = text.partition(":")
    allowed = kinds_for(role) if role else tuple(KINDS)
    return bool(sep) and name.strip().lower() in allowed and not Path(text).is_dir()


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


def _build_seggpt(path: str | None, context: BuildContext, role: str) -> SegGptBackend:
    assert path is not None
    context.cpu_only("seggpt")
    return SegGptBackend(path)


def _build_sam3(path: str | None, context: BuildContext, role: str) -> Any:
    """SAM 3's roles: the concept source over a vocabulary (``model``), exemplar prompts from other
    images (``examples``: incontext), concept tracking with a sam3_video checkpoint (``concepts-video``)."""
    assert path is not None
    if role == "concepts-video":
        return ConceptTracker(path, context.device)
    if role == "examples":
        return Sam3Examples(Sam3Backend(path, context.device))
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
        frozenset({"model", "examples", "concepts-video"}),
        _build_sam3,
        "SAM 3: the instances of each named concept (one image encoding, prompts decoded in batches): "
        "semantic/instance/panoptic over a vocabulary, refer; exemplars from other images (incontext); "
        "a sam3_video checkpoint tracks names (video --classes)",
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
        _build_seggpt,
        "SegGPT: paints the targets from the examples (incontext, video)",
    )
)


# -- promptable and video kinds (issue 16) -----------------------------------------------------------
def _build_promptable(image_type: str, video_type: str) -> Callable[[str | None, BuildContext, str], Any]:
    """SAM 2-family kinds: an image checkpoint answers clicks (and boxes for Grounded-SAM as ``masks``),
    a video checkpoint propagates a first-frame mask; the checkpoint's model_type must be the kind's."""

    def build_promptable(path: str | None, context: BuildContext, role: str) -> Any:
        assert path is not None
        if role == "video":
            return VideoPropagator(path, context.device, family={video_type})
        clicker = ClickBackend(path, context.device, family={image_type})
        return clicker if role == "masks" else ClickSource(clicker)

    return build_promptable


for _kind, _types, _what in (
    ("sam2", ("sam2", "sam2_video"), "SAM 2"),
    ("sam3-tracker", ("sam3_tracker", "sam3_tracker_video"), "SAM 3's tracker"),
    ("edgetam", ("edgetam", "edgetam_video"), "EdgeTAM (needs timm)"),
):
    register(
        ModelKind(
            _kind,
            frozenset({"clicks", "video", "masks"}),
            _build_promptable(*_types),
            f"{_what}: answers clicks and boxes (click; --masks of --boxes); a video checkpoint propagates "
            "the first frame's mask (video)",
        )
    )
register(
    ModelKind(
        "grounding-dino",
        frozenset({"boxes"}),
        lambda path, context, role: GroundingDinoBoxes(path, context.device),  # type: ignore[arg-type]
        "Grounding DINO: boxes for the names, masked by --masks sam:/sam2:/sam3-tracker: (Grounded-SAM)",
    )
)
register(
    ModelKind(
        "clipseg",
        frozenset({"model"}),
        lambda path, context, role: ClipSegDense(path, context.device),  # type: ignore[arg-type]
        "CLIPSeg: one text-conditioned probability map per name (semantic; one segment per name)",
    )
)


# -- the door's factory ------------------------------------------------------------------------------
def load(
    model: str | Path | AnySource | None = None,
    text_encoder: TextEncoder | None = None,
    max_size: int = 512,
    masks: str | MaskSource | None = None,
    embed: str | EmbedSource | None = None,
    runtime: Literal["torch", "onnx"] = "torch",
    device: str = "cpu",
    boxes: str | GroundingDinoBoxes | None = None,
    task: str | None = None,
) -> Segmenter:
    """A Segmenter (the door) on the source these arguments name.

    model: a native model directory (None: the embedded default), a ``KIND:PATH`` spec of a complete
    source (``onnx:DIR``, ``mask2former:ID``, ``clipseg:DIR``, ...), of a source for one task
    (``sam2:DIR`` clicks, ``sam3:DIR`` exemplars, ...), or a source object.
    masks / embed: compose masks of one source with embeddings of another, as specs
    (``masks="sam:facebook/sam-vit-base", embed="clip:openai/clip-vit-base-patch32"``) or objects;
    the missing half is the native model of ``model`` (or, for a mask source with its own label
    embeddings such as Mask2Former, nothing).
    boxes: Grounded-SAM: a box detector for the names (``grounding-dino:DIR``) whose boxes ``masks``
    (``sam:``, ``sam2:``, ``sam3-tracker:``) turns into masks.
    runtime="onnx": the native model through ONNX Runtime (omniseg.export.onnx).
    device: where the built sources run ("cpu", "cuda", "cuda:1", "mps"; backends.device): an unknown
    or absent device is a one-line InputError before anything loads.
    task: the door task the source is for ("click", "incontext", "video", "track": video --classes), when
    ``model``'s kind plays a role for it (TASK_ROLES: ``sam2:`` is a click model, or with task="video"
    a video model); default: the kind's complete source, else its first task role.
    """
    if runtime not in ("torch", "onnx"):
        raise InputError(f"unknown runtime {runtime!r}: use torch or onnx")
    if task is not None and task not in TASK_ROLES:
        raise InputError(f"unknown task {task!r}: use one of {', '.join(TASK_ROLES)}")
    context = BuildContext(max_size=max_size, text_encoder=text_encoder, device=str(resolve_device(device)))
    if isinstance(model, TASK_SOURCES):
        if masks is not None or embed is not None or boxes is not None or runtime != "torch":
            raise InputError("a source object is complete: give no masks, embed, boxes or runtime with it")
        return Segmenter(model, text_encoder)
    if boxes is not None:
        if model is not None or embed is not None or runtime != "torch":
            raise InputError("--boxes composes with --masks only (Grounded-SAM): drop --model/--embed/--runtime")
        return Segmenter(_grounded(boxes, masks, context), text_encoder)
    if runtime == "onnx" and (masks is not None or embed is not None):
        raise InputError("--runtime onnx runs the native model only: drop --masks/--embed or use --runtime torch")
    base = _base_spec(model, runtime)
    role = _role_for(base, task)
    if role != "model":
        if masks is not None or embed is not None:
            raise InputError(f"--model {base!r} answers {task or role} by itself: drop --masks/--embed")
        return Segmenter(build(base, role, context), text_encoder)
    if (masks is not None or embed is not None) and not {"masks", "embed"} & KINDS[parse_spec(base, "model")[0]].roles:
        raise InputError(f"--model {base!r} is a complete model: give no --masks/--embed with it")
    if masks is None and embed is None:
        return Segmenter(build(base, "model", context), text_encoder)
    return Segmenter(_composed(base, masks, embed, context), text_encoder)


def load_specs(specs: Any, task: str | None = None) -> Segmenter:
    """``load`` from an object carrying the specs as attributes ``model``, ``max_size``, ``masks``,
    ``embed``, ``runtime``, ``device`` and, where it has it, ``boxes``: a command's parsed arguments
    (commands.backend_args) or a batch job that local and Ray workers rebuild the source from."""
    return load(
        specs.model,
        max_size=specs.max_size,
        masks=specs.masks,
        embed=specs.embed,
        runtime=specs.runtime,
        device=specs.device,
        boxes=getattr(specs, "boxes", None),
        task=task,
    )


def _role_for(base: str, task: str | None) -> str:
    """The role ``base``'s kind plays for ``task`` (see ``load``)."""
    kind = KINDS.get(base.partition(":")[0].strip().lower())
    if kind is None:
        return "model"
    wanted = TASK_ROLES.get(task or "")
    if wanted in kind.roles:
        return str(wanted)
    if "model" in kind.roles:
        return "model"
    fallback = next((r for r in TASK_ROLES.values() if r in kind.roles and task is None), None)
    if fallback is None:
        plays = ", ".join(sorted(kind.roles))
        raise InputError(f"--model {base!r}: {kind.name} cannot {task or 'segment'} (it serves: {plays})")
    return fallback


def _grounded(boxes: str | GroundingDinoBoxes, masks: str | MaskSource | None, context: BuildContext) -> GroundedSam:
    """Grounded-SAM: the detector's boxes for the names, one mask per box from the promptable ``masks``."""
    if masks is None:
        raise InputError("--boxes needs --masks sam:PATH, sam2:PATH or sam3-tracker:PATH to turn its boxes into masks")
    detector = build(boxes, "boxes", context) if isinstance(boxes, str) else boxes
    masker = build(masks, "masks", context) if isinstance(masks, str) else masks
    if not isinstance(masker, (ClickBackend, SamBackend)):
        raise InputError(f"--masks {_shown(masks, 'native')} does not answer boxes: use sam:, sam2: or sam3-tracker:")
    return GroundedSam(detector, masker)


def _base_spec(model: str | Path | None, runtime: str) -> str:
    """The ``KIND:PATH`` of ``model`` (a directory means the native kind)."""
    text = None if model is None else str(model)
    if text is not None and is_spec(text, None):
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


def load_example_model(spec: str | None, role: str = "examples", device: str = "cpu") -> Any:
    """The SegGPT painter ``--model seggpt:PATH`` names for incontext/video, or None (the door does it)."""
    if spec is None or not is_spec(spec, role) or parse_spec(spec, role)[0] != "seggpt":
        return None
    return build(spec, role, BuildContext(device=str(resolve_device(device))))

"""Adapters that produce Regions or text embeddings from other models (DESIGN.md: masks from any
source x embeddings from any source), composed into a Segmenter every task can use.

    seg = omniseg.load(masks="sam:facebook/sam-vit-base", embed="clip:openai/clip-vit-base-patch32")
    seg.segment("street.jpg", classes="sky,road,car")

A spec is ``KIND:PATH`` where PATH is a directory written by ``save_pretrained`` or a hub id (used
from the local Hugging Face cache; downloads only with HF_HUB_OFFLINE=0). Kinds:

| kind | masks | embeddings / text | tasks |
|---|---|---|---|
| native | yes | yes (MiniLM text space) | all |
| sam | yes (point grid + NMS; clicks/boxes as prompts) | no | all, with an embedding source |
| mask2former, oneformer | yes | their labels, by name, in the MiniLM space | all |
| clip, siglip | no | yes (dense features, own text tower) | all, with a mask source |
| seggpt | - | - | incontext, video (SegGptBackend) |

backends.superpixels is a classical proposal source (a multi-scale superpixel hierarchy): the
recall baseline of ``omniseg eval --metric recall``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omniseg.errors import InputError

if TYPE_CHECKING:
    from omniseg.backends.base import EmbedSource, MaskSource
    from omniseg.segmenter import Segmenter
    from omniseg.text.encoder import TextEncoder

MASK_KINDS = ("native", "sam", "mask2former", "oneformer")
EMBED_KINDS = ("native", "clip", "siglip", "mask2former", "oneformer")
ALL_KINDS = ("native", "sam", "mask2former", "oneformer", "clip", "siglip", "seggpt")


def parse_spec(spec: str, allowed: tuple[str, ...] = ALL_KINDS, flag: str = "backend") -> tuple[str, str | None]:
    """'sam:PATH' -> ('sam', 'PATH'); 'native' -> ('native', None) (the embedded default model)."""
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in allowed:
        raise InputError(f"{flag} {spec!r}: unknown kind {kind!r}; use KIND:PATH with KIND one of {', '.join(allowed)}")
    path = path.strip()
    if not path and kind != "native":
        raise InputError(f"{flag} {spec!r} names no checkpoint: use {kind}:DIRECTORY or {kind}:HUB_ID")
    return kind, (path or None)


def compose(
    masks: str | None = None,
    embed: str | None = None,
    model: str | Path | None = None,
    text_encoder: TextEncoder | None = None,
    max_size: int = 512,
) -> Segmenter:
    """A Segmenter whose masks come from ``masks`` and region embeddings from ``embed`` (specs).

    Missing parts default to the native model (``model``: its directory, default the embedded one);
    a Mask2Former/OneFormer mask source with no ``embed`` brings its own label embeddings. Both
    native (or neither given): the plain native Segmenter.
    """
    from omniseg.backends.base import ComposedSegmenter
    from omniseg.segmenter import load

    mask_kind, mask_path = parse_spec(masks, MASK_KINDS, "--masks") if masks else ("native", None)
    if embed is None:
        embed_kind, embed_path = (
            (mask_kind, mask_path) if mask_kind in ("mask2former", "oneformer") else ("native", None)
        )
    else:
        embed_kind, embed_path = parse_spec(embed, EMBED_KINDS, "--embed")
    native_dir = (
        mask_path
        if mask_kind == "native" and mask_path
        else (embed_path if embed_kind == "native" and embed_path else model)
    )
    if mask_kind == "native" and embed_kind == "native":
        return load(native_dir, text_encoder=text_encoder, max_size=max_size)
    native = None
    if "native" in (mask_kind, embed_kind):
        from omniseg.backends.native import NativeSource

        native = NativeSource(load(native_dir, text_encoder=text_encoder, max_size=max_size))

    default_encoder = text_encoder
    if default_encoder is None and native is None and embed_kind not in ("clip", "siglip"):
        from omniseg.text.encoder import default_text_encoder

        default_encoder = default_text_encoder()
    elif default_encoder is None and native is not None:
        default_encoder = native.text_encoder

    mask_source: MaskSource
    if mask_kind == "native":
        assert native is not None
        mask_source = native
    elif mask_kind == "sam":
        from omniseg.backends.sam import SamBackend

        mask_source = SamBackend(mask_path)  # type: ignore[arg-type]
    else:
        from omniseg.backends.mask2former import UniversalSegmentationBackend

        if default_encoder is None:
            from omniseg.text.encoder import default_text_encoder

            default_encoder = default_text_encoder()
        mask_source = UniversalSegmentationBackend(mask_path, default_encoder, kind=mask_kind, max_size=max_size)  # type: ignore[arg-type]

    embed_source: EmbedSource | None
    if embed_kind == "native":
        embed_source = native  # type: ignore[assignment]
    elif embed_kind in ("clip", "siglip"):
        from omniseg.backends.clip import ClipBackend

        embed_source = ClipBackend(embed_path, kind=embed_kind)  # type: ignore[arg-type,assignment]
    else:
        if (embed_kind, embed_path) != (mask_kind, mask_path):
            raise InputError(
                f"--embed {embed_kind} gives label embeddings only for its own masks: "
                f"use it as --masks {embed_kind}:PATH"
            )
        embed_source = None
    encoder = embed_source.text_encoder if embed_source is not None else default_encoder
    assert encoder is not None
    model_id = f"masks={masks or 'native'},embed={embed or (masks if embed_source is None else 'native')}"
    return ComposedSegmenter(mask_source, embed_source, encoder, model_id=model_id, max_size=max_size)

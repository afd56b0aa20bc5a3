"""The seam between models and tasks: a **region source** turns an image into Regions.

Every producer of Regions sits behind this one protocol: the native OpenSeg model (PyTorch or
ONNX Runtime), masks from one model composed with embeddings from another (SAM masks x CLIP
features), Mask2Former/OneFormer queries, a test's oracle. The door (``omniseg.segmenter.Segmenter``)
*holds* a source and asks every task of the Regions it returns; it never subclasses or impersonates
one (segment-anything's ``SamPredictor`` holds its model the same way).

Required: ``name`` (what results report as the model) and ``regions(image) -> Regions`` for an RGB
uint8 array [H, W, 3]. A source fills ``Regions.pixel_features`` when it has pixel features (the
example-based tasks need them). Optional capabilities, each its own small protocol, checked with
``isinstance`` (they are ``runtime_checkable``):

- ``PromptableSource.prompt_regions(image, clicks, boxes)``: masks answering the user's clicks and
  boxes (SAM); without it the click task picks among the ``regions()``.
- ``text_encoder``: the source's own text space (CLIP/SigLIP); without it the door uses the
  default MiniLM encoder.
- ``class_temperature``: the temperature of the class softmax in the source's space.
- ``label_vocabulary()``: a closed-vocabulary model's own classes (Mask2Former/OneFormer), used
  when the user names none.

A **concept source** is the other kind of producer: a vocabulary-conditioned model whose masks are
made *for* the names (SAM 3; Grounded-SAM: Grounding DINO's boxes for the names, SAM/SAM 2 masks in
them; CLIPSeg: one probability map per name), so it cannot answer ``regions(image)`` alone. It
answers ``concepts(image, vocabulary, threshold) -> Instances`` (omniseg.concepts: masks, scores
and the class of each, overlaps allowed); the door asks the semantic, instance and panoptic
questions of those (omniseg.tasks.concepts) and refer (the phrase as a one-class vocabulary).

Sources that answer one task by themselves, with no Regions of their own (issue 16), hold the door
as well; each is its own protocol and the door's task method asks it directly:

- ``PromptableSource`` alone: a promptable model (SAM 2, SAM 3's tracker, EdgeTAM) for ``click``;
- ``VideoSource.propagate(frames, first_mask)``: a video model with its own memory (SAM 2 video);
- ``ConceptTrackingSource.track(frames, names)``: finds and tracks every instance of the names (SAM 3
  video);
- ``ExampleSource.incontext(examples, targets)``: segments what example masks from other images
  mark, by itself (SegGPT's painting, SAM 3's exemplar prompts).

Where to add a backend: docs/ARCHITECTURE.md (one module under ``omniseg/backends/`` and one
registration in ``omniseg/registry.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from omniseg.regions import Regions

if TYPE_CHECKING:
    from omniseg.backends.sam3_video import TrackedFrame
    from omniseg.concepts import Instances
    from omniseg.images import ImageLike
    from omniseg.tasks.interactive import Box, Click
    from omniseg.text.encoder import TextEncoder
    from omniseg.vocab import Vocabulary


@runtime_checkable
class RegionSource(Protocol):
    """image (RGB uint8 [H, W, 3]) -> Regions."""

    name: str

    def regions(self, image: np.ndarray) -> Regions: ...


@runtime_checkable
class ConceptSource(Protocol):
    """image (RGB uint8 [H, W, 3]) + vocabulary -> the instances of its classes (labels = class indices).

    threshold: the source's own detection score an instance must exceed (None: the source's default,
    ``default_threshold``). The instances are on the CPU.
    """

    name: str

    @property
    def default_threshold(self) -> float: ...  # an attribute or a property (Grounded-SAM: its detector's)

    def concepts(self, image: np.ndarray, vocabulary: Vocabulary, threshold: float | None = None) -> Instances: ...


@runtime_checkable
class PromptableSource(Protocol):
    """A source that answers clicks (x, y, positive) and boxes (x0, y0, x1, y1) with masks of its own."""

    name: str

    def prompt_regions(self, image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions: ...


@runtime_checkable
class TextSpaceSource(Protocol):
    """A source whose region embeddings live in the space of its own text encoder."""

    text_encoder: TextEncoder


@runtime_checkable
class LabelledSource(Protocol):
    """A closed-vocabulary source that can name its own classes."""

    def label_vocabulary(self) -> Vocabulary: ...


@runtime_checkable
class VideoSource(Protocol):
    """Propagates the objects of the first frame's id mask (0 = background) with its own memory: one id
    map per frame, the first frame's included."""

    name: str

    def propagate(self, frames: Sequence[ImageLike], first_mask: np.ndarray) -> Iterator[np.ndarray]: ...


@runtime_checkable
class ConceptTrackingSource(Protocol):
    """Finds every instance of the names on every frame and tracks each with a stable id."""

    name: str

    def track(self, frames: Sequence[ImageLike], names: Sequence[str]) -> Iterator[TrackedFrame]: ...


@runtime_checkable
class ExampleSource(Protocol):
    """Segments in each target what the (image, id mask) examples mark: one id map per target."""

    name: str

    def incontext(
        self,
        examples: Sequence[tuple[ImageLike, np.ndarray | str]],
        targets: Sequence[ImageLike],
        level: str = "category",
        ignore_index: int | None = None,
    ) -> list[np.ndarray]: ...


TASK_SOURCES = (RegionSource, PromptableSource, ConceptSource, VideoSource, ConceptTrackingSource, ExampleSource)
# what the door holds: a source of Regions, or one answering some task by itself
AnySource = RegionSource | PromptableSource | ConceptSource | VideoSource | ConceptTrackingSource | ExampleSource


def capabilities(source: object) -> list[str]:
    """What the door can ask of ``source``, in words (for errors that say what it does instead)."""
    names = {
        RegionSource: "regions (every task)",
        PromptableSource: "clicks and boxes (click)",
        ConceptSource: "named concepts (segment, refer, eval, batch, serve)",
        VideoSource: "first-frame mask propagation (video)",
        ConceptTrackingSource: "concept tracking (video --classes)",
        ExampleSource: "examples from other images (incontext)",
    }
    return [text for protocol, text in names.items() if isinstance(source, protocol)]

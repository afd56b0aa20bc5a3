"""The user's door: ``omniseg.load()`` returns a Segmenter; ``segment()`` answers with a result
that knows how to save itself as a label PNG, an overlay and JSON.

``segment(..., task="instance" | "panoptic")`` asks the same Regions a different question; those
results live in omniseg.results (COCO RLE / COCO panoptic files).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from omniseg import cancel
from omniseg.errors import InputError
from omniseg.io import ImageLike, atomic_save_png, atomic_write_text, load_image, output_path
from omniseg.models.openseg import OpenSegModel, read_known_concepts
from omniseg.recognition.fusion import RecognizerFusion
from omniseg.recognition.known import NO_OBJECT_NAME, KnownConcepts
from omniseg.regions import Regions
from omniseg.results import InstanceResult, PanopticResult
from omniseg.search import SearchConfig
from omniseg.tasks.instance import DEFAULT_TEMPERATURE, instance_segmentation
from omniseg.tasks.panoptic import DEFAULT_PANOPTIC_MIN_SCORE, panoptic_segmentation
from omniseg.tasks.semantic import (
    DEFAULT_SEMANTIC_CONFIDENCE,
    DIRECT_MAX_CLASSES,
    TOP_K,
    candidate_classes,
    semantic_segmentation_vocab,
)
from omniseg.text.encoder import TextEncoder, default_text_encoder
from omniseg.viz import overlay
from omniseg.vocab import Vocabulary

if TYPE_CHECKING:
    from omniseg.tasks.interactive import Box, Click, ClickResult
    from omniseg.tasks.refer import ReferResult
    from omniseg.tasks.video import VideoConfig

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights" / "default"
UINT8_UNLABELED = 255
UINT16_UNLABELED = 65535
TASKS = ("semantic", "instance", "panoptic")
Task = Literal["semantic", "instance", "panoptic"]


def unlabeled_value(num_classes: int) -> int:
    """uint8 with 255 = unlabeled up to 255 classes, else uint16 with 65535."""
    if num_classes <= 255:
        return UINT8_UNLABELED
    if num_classes <= 65535:
        return UINT16_UNLABELED
    raise InputError(f"{num_classes} classes do not fit a uint16 label map (at most 65,535)")


def encode_label_map(label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids [H,W] (int, -1 = unlabeled) -> the label map to write, and its region classes.

    Up to 65,535 classes the map holds class ids (uint8 up to 255 classes, else uint16; the top
    value means unlabeled) and the second value is None. Above, no integer PNG holds a class id:
    the map holds region ids instead (one region per class present in this image, numbered in
    class order) and the second value gives each region's class id.
    """
    if num_classes <= 65535:
        unlabeled = unlabeled_value(num_classes)
        dtype = np.uint8 if unlabeled == UINT8_UNLABELED else np.uint16
        return np.where(label < 0, unlabeled, label).astype(dtype), None
    present = np.unique(label[label >= 0])
    unlabeled = unlabeled_value(len(present))
    dtype = np.uint8 if unlabeled == UINT8_UNLABELED else np.uint16
    regions = np.searchsorted(present, np.maximum(label, 0))
    return np.where(label < 0, unlabeled, regions).astype(dtype), present.astype(np.int64)


@dataclass
class SemanticResult:
    image: np.ndarray = field(repr=False)
    label_map: np.ndarray = field(repr=False)  # uint8/uint16, index into names, unlabeled = 255/65535
    classes: list[str] = field(repr=False)  # the whole vocabulary
    model_id: str
    timings: dict[str, float]
    region_classes: np.ndarray | None = field(default=None, repr=False)  # > 65,535 classes: region id -> class id

    @property
    def names(self) -> list[str]:
        """Name of each label-map value: the classes, or (region ids) the class of each region."""
        if self.region_classes is None:
            return self.classes
        return [self.classes[int(k)] for k in self.region_classes]

    @property
    def unlabeled(self) -> int:
        return unlabeled_value(len(self.names))

    def class_map(self) -> np.ndarray:
        """Class ids [H,W] int64 whatever the label map holds; -1 = unlabeled."""
        values = self.label_map.astype(np.int64)
        ids = values if self.region_classes is None else self.region_classes[np.minimum(values, len(self.names) - 1)]
        return np.where(values == self.unlabeled, -1, ids)

    def fractions(self) -> dict[str, float]:
        ids, counts = np.unique(self.label_map, return_counts=True)
        total = self.label_map.size
        names = self.names
        return {
            names[int(i)]: round(float(c) / total, 6) for i, c in zip(ids, counts, strict=False) if i != self.unlabeled
        }

    def display_map(self) -> tuple[np.ndarray, list[str], int]:
        """(label map, class names, unlabeled value): what the overlay draws."""
        return self.label_map, self.names, self.unlabeled

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, *self.display_map(), alpha=alpha, legend=legend)

    def to_json(self) -> dict:
        """'classes' names every label-map value (class ids, or region ids above 65,535 classes)."""
        out = {
            "classes": self.names,
            "label_map": {
                "dtype": str(self.label_map.dtype),
                "unlabeled": self.unlabeled,
                "height": int(self.label_map.shape[0]),
                "width": int(self.label_map.shape[1]),
                "values": "class ids" if self.region_classes is None else "region ids",
            },
            "vocabulary_size": len(self.classes),
            "fractions": self.fractions(),
            "unlabeled_fraction": round(float((self.label_map == self.unlabeled).mean()), 6),
            "model": self.model_id,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.region_classes is not None:
            out["regions"] = [
                {"id": i, "class": self.classes[int(k)], "class_id": int(k)} for i, k in enumerate(self.region_classes)
            ]
        return out

    def save(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        suffixes = {"label_map": ".png", "overlay": "_overlay.png", "json": ".json"}
        paths = {key: output_path(out_dir, stem, suffix) for key, suffix in suffixes.items()}
        atomic_save_png(paths["label_map"], self.label_map)
        atomic_save_png(paths["overlay"], self.overlay())
        # Files hold no timings: the same image and job give the same bytes (batch resume relies on it).
        saved = {k: v for k, v in self.to_json().items() if k != "timings"}
        atomic_write_text(paths["json"], json.dumps(saved, indent=2))
        return paths


class Segmenter:
    """Native model + text encoder, loaded once; every task reads the Regions it computes."""

    known: KnownConcepts | None = None  # the model's training names (set by __init__)
    fusion: RecognizerFusion | None = None  # the frozen recognizer's fusion, when the model has one

    def __init__(
        self,
        model: OpenSegModel,
        text_encoder: TextEncoder,
        model_id: str = "omniseg-default",
        max_size: int = 512,
        known: KnownConcepts | None = None,
    ) -> None:
        self.model = model.eval()
        self.text_encoder = text_encoder
        # The frozen recognizer's fusion (omniseg.recognition): on when the model has the recognizer;
        # known: the model card's training names (omniseg.recognition.known): the classes that keep the
        # trained score alone, and the alternatives an answer must beat to be more than "unknown".
        self.known = known
        has_recognizer = getattr(model, "recognizer", None) is not None
        self.fusion = RecognizerFusion(text_encoder, self.trained_names) if has_recognizer else None
        self.model_id = model_id
        self.max_size = max_size
        # Semantic logits: (1 - a) * eq. 6 + a * per-pixel (ESS / LSeg+ heads); from the model's config.
        self.pixel_weight = float(getattr(getattr(model, "config", None), "pixel_weight", 0.0))
        self.top_k = TOP_K  # classes per region looked up in a large vocabulary's index
        self.search: SearchConfig | None = None  # index choice for large vocabularies (None: defaults)

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        if h < 8 or w < 8:
            raise InputError(f"image too small: {w}x{h} (at least 8x8 pixels)")
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        scale = self.max_size / max(h, w)
        if scale < 1:
            x = F.interpolate(
                x,
                size=(max(8, round(h * scale)), max(8, round(w * scale))),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x

    @torch.inference_mode()
    def regions(self, image: ImageLike) -> Regions:
        """The image as N soft masks (at stride 4 of the processed size) + embeddings + scores."""
        array = load_image(image)
        out = self.model(self._prepare(array))
        return Regions(
            masks=out["mask_logits"][0].sigmoid(),
            embeddings=out["embeddings"][0],
            scores=out["objectness"][0].sigmoid(),
            image_size=tuple(array.shape[:2]),
            pixel_features=out["pixel_features"][0] if "pixel_features" in out else None,
            pixel_embeddings=out["pixel_embeddings"][0] if "pixel_embeddings" in out else None,
            pixel_weight=self.pixel_weight if "pixel_embeddings" in out else 0.0,
            imagenet_probs=out["imagenet_logits"][0].softmax(-1) if "imagenet_logits" in out else None,
            imagenet_pixel_logits=out["imagenet_pixel_logits"][0] if "imagenet_pixel_logits" in out else None,
        )

    def refer(
        self,
        image: ImageLike,
        phrase: str,
        margin: float = 0.03,
        max_regions: int = 4,
        threshold: float | None = None,
    ) -> ReferResult:
        """The region(s) ``phrase`` refers to ("the dog on the left"): a mask, its confidence and the
        ranking; ``found=False`` and an empty mask below the confidence ``threshold``."""
        from omniseg.tasks.refer import refer

        return refer(self, image, phrase, margin=margin, max_regions=max_regions, threshold=threshold)

    def click(
        self,
        image: ImageLike,
        points: Sequence[Click | tuple[float, float] | tuple[float, float, bool]] = (),
        boxes: Sequence[Box] = (),
        classes: Sequence[str] | str | Vocabulary | None = None,
        threshold: float | None = None,
    ) -> ClickResult:
        """The object under positive points (x, y[, True]) / away from negative ones (x, y, False) / in
        the boxes (x0, y0, x1, y1); with ``classes``, also its name (open-vocabulary interactive), or
        no name ("unknown") when its confidence is below ``threshold``."""
        from omniseg.tasks.interactive import click

        return click(self, image, points, boxes, classes, threshold=threshold)

    def incontext(
        self,
        examples: Sequence[tuple[ImageLike, np.ndarray | str]],
        targets: ImageLike | Sequence[ImageLike],
        level: Literal["category", "instance"] = "category",
        ignore_index: int | None = None,
    ) -> list[np.ndarray]:
        """Segment in the targets what the example (image, id mask) pairs mark: one id map per target.

        Several examples are combined by feature ensemble; ids keep the example masks' values.
        """
        from omniseg.tasks.incontext import incontext

        many = isinstance(targets, Sequence) and not isinstance(targets, (str, bytes))
        target_list = list(targets) if many else [targets]  # type: ignore[list-item]
        return incontext(self, examples, target_list, level=level, ignore_index=ignore_index)

    def video(
        self, frames: Sequence[ImageLike], first_mask: np.ndarray | str, config: VideoConfig | None = None
    ) -> Iterator[np.ndarray]:
        """Propagate the objects of ``first_mask`` (ids, 0 = background) through ``frames``; yields
        one id map per frame, lazily, so long videos stream."""
        from omniseg.tasks.video import video

        return video(self, frames, first_mask, config)

    def vocabulary(self, classes: Sequence[str] | str | Vocabulary) -> Vocabulary:
        if isinstance(classes, Vocabulary):
            vocab = classes
        elif isinstance(classes, str):
            vocab = Vocabulary.from_string(classes)
        else:
            vocab = Vocabulary.from_names(list(classes))
        if vocab.embeddings is None:
            vocab.embed(self.text_encoder)
        return vocab

    def confidence_threshold(self, threshold: float | None) -> float | None:
        """The confidence below which an answer is "unknown": the caller's, else the default when the
        model knows other concepts to compare with (its training names); else none."""
        if threshold is not None:
            return threshold
        return DEFAULT_SEMANTIC_CONFIDENCE if self.trained_names else None

    @property
    def trained_names(self) -> list[str]:
        return list(self.known.names) if self.known is not None else []

    def alternatives(self, asked: Sequence[str] = ()) -> torch.Tensor | None:
        """[R, D] text embeddings of the known concepts an answer about ``asked`` names must beat to be
        more than "unknown" (omniseg.recognition.known; tasks.semantic confidence)."""
        return self.known.alternatives(self.text_encoder, asked) if self.known is not None else None

    @property
    def no_object(self) -> torch.Tensor | None:
        """[1, D] the "background" concept when the model trained it (COCO's unannotated pixels): what an
        instance must beat to be an object (tasks.instance.classify_regions)."""
        if NO_OBJECT_NAME not in {n.casefold() for n in self.trained_names}:
            return None
        return torch.from_numpy(np.asarray(self.text_encoder.encode([NO_OBJECT_NAME]), np.float32))

    @property
    def class_temperature(self) -> float:
        """The temperature of the class softmax: the one the model's class head was trained with."""
        scale = getattr(self.model, "logit_scale_class", None)
        return float(1.0 / scale.detach().exp()) if isinstance(scale, torch.Tensor) else DEFAULT_TEMPERATURE

    @overload
    def segment(
        self,
        image: ImageLike,
        classes: Sequence[str] | str | Vocabulary | None = ...,
        vocab: str | Path | Vocabulary | None = ...,
        threshold: float | None = ...,
        task: Literal["semantic"] = ...,
        stuff: Sequence[str] | str | None = ...,
    ) -> SemanticResult: ...

    @overload
    def segment(
        self,
        image: ImageLike,
        classes: Sequence[str] | str | Vocabulary | None = ...,
        vocab: str | Path | Vocabulary | None = ...,
        threshold: float | None = ...,
        *,
        task: Literal["instance"],
        stuff: Sequence[str] | str | None = ...,
    ) -> InstanceResult: ...

    @overload
    def segment(
        self,
        image: ImageLike,
        classes: Sequence[str] | str | Vocabulary | None = ...,
        vocab: str | Path | Vocabulary | None = ...,
        threshold: float | None = ...,
        *,
        task: Literal["panoptic"],
        stuff: Sequence[str] | str | None = ...,
    ) -> PanopticResult: ...

    @torch.inference_mode()
    def segment(
        self,
        image: ImageLike,
        classes: Sequence[str] | str | Vocabulary | None = None,
        vocab: str | Path | Vocabulary | None = None,
        threshold: float | None = None,
        task: Task = "semantic",
        stuff: Sequence[str] | str | None = None,
    ) -> SemanticResult | InstanceResult | PanopticResult:
        """Segment one image with an open vocabulary.

        classes: names (a '|' inside a name separates synonyms, a trailing '[stuff]' marks stuff)
        or a 'sky [stuff], road, car' string; vocab: a shipped vocabulary's name ("ade150", see
        ``omniseg vocab list``), a vocabulary file or a Vocabulary. Above 256 classes each region's
        best classes come from a search index (tasks.semantic); above 65,535 classes the semantic
        label map holds region ids and ``result.names`` / the JSON name each region's class.
        task: "semantic" (a class per pixel, seeds/003 eq. 6), "instance" (objects of the thing
        classes with scores) or "panoptic" (things + one segment per stuff class). With more than
        256 classes, instance and panoptic results list only the image's candidate classes.
        threshold: semantic: pixels whose best class scores below it (a weighted cosine in
        [-1, 1]) are unlabeled; instance/panoptic: regions scoring below it (class probability x
        objectness, in [0, 1]) are dropped (default 0.2, tasks.panoptic.DEFAULT_PANOPTIC_MIN_SCORE;
        0 keeps every instance, as COCO AP wants).
        stuff: class names to treat as stuff, on top of the vocabulary's own markers (the given
        Vocabulary object is not changed).
        """
        if (classes is None) == (vocab is None):
            raise InputError("give exactly one of classes or vocab")
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
        if threshold is not None and not math.isfinite(threshold):
            raise InputError(f"threshold must be a finite number, got {threshold}")
        t0 = time.perf_counter()
        if classes is not None:
            vocabulary = self.vocabulary(classes)
        else:
            assert vocab is not None
            vocabulary = self.vocabulary(vocab if isinstance(vocab, Vocabulary) else Vocabulary.load(vocab))
        if stuff is not None:
            vocabulary = dataclasses.replace(vocabulary, stuff=list(vocabulary.stuff or [])).mark_stuff(stuff)
        cancel.check()  # between stages: a server request that timed out or lost its client stops here
        if task != "semantic":
            return self._objects(image, vocabulary, task, threshold, t0)
        t1 = time.perf_counter()
        array = load_image(image)
        regions = self.regions(array)
        cancel.check()
        t2 = time.perf_counter()
        label, _ = semantic_segmentation_vocab(
            regions,
            vocabulary,
            out_size=array.shape[:2],
            threshold=self.confidence_threshold(threshold),
            k=self.top_k,
            config=self.search,
            fusion=self.fusion,
            reference=self.alternatives(
                [n for names in vocabulary.synonyms for n in names] if len(vocabulary) <= DIRECT_MAX_CLASSES else []
            ),
        )
        label_map, region_classes = encode_label_map(label.numpy(), len(vocabulary))
        t3 = time.perf_counter()
        timings = {"vocabulary_s": t1 - t0, "model_s": t2 - t1, "labels_s": t3 - t2, "total_s": t3 - t0}
        return SemanticResult(array, label_map, vocabulary.classes, self.model_id, timings, region_classes)

    def _objects(
        self, image: ImageLike, vocabulary: Vocabulary, task: Task, threshold: float | None, t0: float
    ) -> InstanceResult | PanopticResult:
        """The instance and panoptic paths of ``segment`` (same Regions, other task function)."""
        t1 = time.perf_counter()
        array = load_image(image)
        regions = self.regions(array)
        t2 = time.perf_counter()
        assert vocabulary.embeddings is not None and vocabulary.prompt_to_class is not None
        assert vocabulary.stuff is not None
        names, stuff = vocabulary.classes, list(vocabulary.stuff)
        if len(vocabulary) <= DIRECT_MAX_CLASSES:
            prompts = torch.from_numpy(np.array(vocabulary.embeddings, np.float32))
            owner = torch.from_numpy(vocabulary.prompt_to_class)
        else:  # large vocabulary: the regions' candidate classes only; the result lists just those
            candidates = candidate_classes(regions, vocabulary, self.top_k, self.search)
            sub_prompts, sub_owner = vocabulary.restricted(candidates)
            prompts, owner = torch.from_numpy(sub_prompts), torch.from_numpy(sub_owner)
            names, stuff = [names[int(c)] for c in candidates], [stuff[int(c)] for c in candidates]
        min_score = DEFAULT_PANOPTIC_MIN_SCORE if threshold is None else threshold
        size = (int(array.shape[0]), int(array.shape[1]))
        temperature = self.class_temperature
        task_function = instance_segmentation if task == "instance" else panoptic_segmentation
        answer = task_function(
            regions,
            prompts,
            owner,
            len(names),
            stuff,
            temperature,
            min_score,
            out_size=size,
            reference=self.no_object,
        )
        t3 = time.perf_counter()
        stage = "instances_s" if task == "instance" else "panoptic_s"
        timings = {"vocabulary_s": t1 - t0, "model_s": t2 - t1, stage: t3 - t2, "total_s": t3 - t0}
        result: InstanceResult | PanopticResult
        if isinstance(answer, list):
            result = InstanceResult(array, answer, names, stuff, self.model_id, timings)
        else:
            result = PanopticResult(array, answer.id_map.numpy(), answer.segments, names, stuff, self.model_id, timings)
        return result


def load(
    model: str | Path | None = None,
    text_encoder: TextEncoder | None = None,
    max_size: int = 512,
    masks: str | None = None,
    embed: str | None = None,
    runtime: Literal["torch", "onnx"] = "torch",
) -> Segmenter:
    """Load the embedded default model (or a directory written by ``save_pretrained``).

    masks / embed: other backends as ``KIND:PATH`` specs (omniseg.backends), e.g.
    ``masks="sam:facebook/sam-vit-base", embed="clip:openai/clip-vit-base-patch32"``.
    runtime="onnx": the native model through ONNX Runtime (omniseg.export.onnx).
    """
    if masks is not None or embed is not None:
        from omniseg.backends import compose

        return compose(masks, embed, model=model, text_encoder=text_encoder, max_size=max_size)
    if runtime == "onnx":
        from omniseg.export.onnx import load_onnx_segmenter

        return load_onnx_segmenter(model, text_encoder=text_encoder, max_size=max_size)
    if runtime != "torch":
        raise InputError(f"unknown runtime {runtime!r}: use torch or onnx")
    directory = Path(model) if model else DEFAULT_MODEL_DIR
    net = OpenSegModel.from_pretrained(directory)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model_id = "omniseg-default" if model is None else str(directory)
    encoder = text_encoder or default_text_encoder()
    return Segmenter(net, encoder, model_id=model_id, max_size=max_size, known=read_known_concepts(directory))

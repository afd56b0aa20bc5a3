"""The user's door: ``omniseg.load()`` returns a Segmenter; ``segment()`` answers with a result
that knows how to save itself as a label PNG, an overlay and JSON.

``segment(..., task="instance" | "panoptic")`` asks the same Regions a different question; those
results live in omniseg.results (COCO RLE / COCO panoptic files).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from omniseg.errors import InputError
from omniseg.io import ImageLike, atomic_save_png, atomic_write_text, load_image
from omniseg.models.openseg import OpenSegModel
from omniseg.regions import Regions
from omniseg.results import InstanceResult, PanopticResult
from omniseg.search import SearchConfig
from omniseg.tasks.instance import DEFAULT_TEMPERATURE, instance_segmentation
from omniseg.tasks.panoptic import DEFAULT_PANOPTIC_MIN_SCORE, panoptic_segmentation
from omniseg.tasks.semantic import DIRECT_MAX_CLASSES, TOP_K, candidate_classes, semantic_segmentation_vocab
from omniseg.text.encoder import TextEncoder, default_text_encoder
from omniseg.viz import overlay
from omniseg.vocab import Vocabulary

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

    def overlay(self, alpha: float = 0.55, legend: bool = True) -> Image.Image:
        return overlay(self.image, self.label_map, self.names, self.unlabeled, alpha=alpha, legend=legend)

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
        out = Path(out_dir)
        paths = {"label_map": out / f"{stem}.png", "overlay": out / f"{stem}_overlay.png", "json": out / f"{stem}.json"}
        atomic_save_png(paths["label_map"], self.label_map)
        atomic_save_png(paths["overlay"], self.overlay())
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2))
        return paths


class Segmenter:
    """Native model + text encoder, loaded once; every task reads the Regions it computes."""

    def __init__(
        self, model: OpenSegModel, text_encoder: TextEncoder, model_id: str = "omniseg-default", max_size: int = 512
    ) -> None:
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.model_id = model_id
        self.max_size = max_size
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
        )

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
        t0 = time.perf_counter()
        if classes is not None:
            vocabulary = self.vocabulary(classes)
        else:
            assert vocab is not None
            vocabulary = self.vocabulary(vocab if isinstance(vocab, Vocabulary) else Vocabulary.load(vocab))
        if stuff is not None:
            vocabulary = dataclasses.replace(vocabulary, stuff=list(vocabulary.stuff or [])).mark_stuff(stuff)
        if task != "semantic":
            return self._objects(image, vocabulary, task, threshold, t0)
        t1 = time.perf_counter()
        array = load_image(image)
        regions = self.regions(array)
        t2 = time.perf_counter()
        label, _ = semantic_segmentation_vocab(
            regions, vocabulary, out_size=array.shape[:2], threshold=threshold, k=self.top_k, config=self.search
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
        result: InstanceResult | PanopticResult
        if task == "instance":
            instances = instance_segmentation(
                regions, prompts, owner, len(names), stuff, temperature, min_score, out_size=size
            )
            t3 = time.perf_counter()
            timings = {"vocabulary_s": t1 - t0, "model_s": t2 - t1, "instances_s": t3 - t2, "total_s": t3 - t0}
            result = InstanceResult(array, instances, names, stuff, self.model_id, timings)
        else:
            pan = panoptic_segmentation(
                regions, prompts, owner, len(names), stuff, temperature, min_score, out_size=size
            )
            t3 = time.perf_counter()
            timings = {"vocabulary_s": t1 - t0, "model_s": t2 - t1, "panoptic_s": t3 - t2, "total_s": t3 - t0}
            result = PanopticResult(
                array, pan.id_map.numpy(), pan.segments, names, stuff, self.model_id, timings
            )
        return result


def load(model: str | Path | None = None, text_encoder: TextEncoder | None = None, max_size: int = 512) -> Segmenter:
    """Load the embedded default model (or a directory written by ``save_pretrained``)."""
    directory = Path(model) if model else DEFAULT_MODEL_DIR
    net = OpenSegModel.from_pretrained(directory)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model_id = "omniseg-default" if model is None else str(directory)
    return Segmenter(net, text_encoder or default_text_encoder(), model_id=model_id, max_size=max_size)

"""The user's door: a ``Segmenter`` holds a region source (omniseg.source) and a text encoder and
asks every task of the Regions the source gives; ``omniseg.load()`` (omniseg.registry) builds one.

Each task answers with a typed result from omniseg.results (``save()``, ``overlay()``,
``to_json()``); ``segment(..., task="instance" | "panoptic")`` asks the same Regions a different
question than semantic segmentation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch

from omniseg import cancel
from omniseg.concepts import Instances
from omniseg.errors import InputError
from omniseg.images import ImageLike, load_image
from omniseg.recognition.fusion import RecognizerFusion
from omniseg.recognition.known import KnownConcepts
from omniseg.regions import Regions
from omniseg.results import IdMapResult, InstanceResult, PanopticResult, SemanticResult, encode_label_map
from omniseg.search import SearchConfig
from omniseg.source import (
    TASK_SOURCES,
    AnySource,
    ConceptSource,
    ConceptTrackingSource,
    ExampleSource,
    PromptableSource,
    RegionSource,
    VideoSource,
    capabilities,
)
from omniseg.tasks.common import as_id_mask, compact_ids
from omniseg.tasks.concepts import concept_instances, concept_panoptic, concept_semantic
from omniseg.tasks.incontext import incontext
from omniseg.tasks.instance import DEFAULT_TEMPERATURE, instance_segmentation
from omniseg.tasks.interactive import Box, Click, ClickResult, click
from omniseg.tasks.panoptic import DEFAULT_PANOPTIC_MIN_SCORE, panoptic_segmentation
from omniseg.tasks.refer import ReferResult, refer
from omniseg.tasks.semantic import (
    DEFAULT_SEMANTIC_CONFIDENCE,
    DIRECT_MAX_CLASSES,
    TOP_K,
    candidate_classes,
    semantic_segmentation_vocab,
)
from omniseg.tasks.video import VideoConfig, video
from omniseg.text.encoder import TextEncoder, default_text_encoder
from omniseg.vocab import Vocabulary
from omniseg.vocab_memo import VocabularyMemo
from omniseg.vocabularies import resolve as resolve_vocabulary

TASKS = ("semantic", "instance", "panoptic")
Task = Literal["semantic", "instance", "panoptic"]


class Segmenter:
    """The door: a region source + a text encoder; every task reads the Regions the source computes.

    ``source``: any ``omniseg.source.RegionSource`` (``omniseg.load()`` builds one from a model
    directory or ``KIND:PATH`` specs). Vocabularies are embedded in the source's own text space
    when it has one (CLIP/SigLIP embeddings), else by ``text_encoder`` (default: the embedded
    MiniLM encoder, loaded on first use).

    A source may also bring ``known`` (the model card's training names, omniseg.recognition.known:
    the classes that keep the trained score alone, and the alternatives an answer must beat to be
    more than "unknown") and ``has_recognizer`` (the frozen ImageNet recognizer whose scores the door
    fuses in, omniseg.recognition).
    """

    def __init__(self, source: AnySource, text_encoder: TextEncoder | None = None) -> None:
        if not isinstance(source, TASK_SOURCES):
            raise TypeError(
                f"{type(source).__name__} is not a source (needs name and regions(image), or one task's "
                "method: concepts, prompt_regions, propagate, track or incontext; omniseg.source)"
            )
        self.source = source
        # A concept source (SAM 3) makes masks for the names itself: no text embeddings, no Regions.
        self.concept_source: ConceptSource | None = source if isinstance(source, ConceptSource) else None
        self._text_encoder = getattr(source, "text_encoder", None) or text_encoder
        self.known: KnownConcepts | None = getattr(source, "known", None)
        self._fusion: RecognizerFusion | None = None
        self._fusion_built = False
        self.top_k = TOP_K  # classes per region looked up in a large vocabulary's index
        self.search: SearchConfig | None = None  # index choice for large vocabularies (None: defaults)
        self._vocabularies = VocabularyMemo()

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = default_text_encoder()
        return self._text_encoder

    @property
    def model_id(self) -> str:
        """What results report as the model: the source's name."""
        return self.source.name

    @property
    def region_source(self) -> RegionSource:
        """The source as a region source, or a one-line InputError saying what it answers instead (a
        concept source: SAM 3, Grounded-SAM, CLIPSeg; a source for one task: SAM 2 clicks, a video model)."""
        if not isinstance(self.source, RegionSource):
            raise InputError(
                f"{self.model_id} gives no regions of its own for this task; it answers: "
                f"{', '.join(capabilities(self.source))}; use a region source (--model, --masks)"
            )
        return self.source

    @torch.inference_mode()
    def regions(self, image: ImageLike) -> Regions:
        """The image as N soft masks + embeddings + scores (and pixel features when the source has them)."""
        return self.region_source.regions(load_image(image))

    @torch.inference_mode()
    def concepts(self, image: ImageLike, vocabulary: Vocabulary, threshold: float | None = None) -> Instances:
        """A concept source's instances of the vocabulary's classes (labels: class indices; overlaps
        allowed), above its detection score ``threshold`` (None: the source's default); what the
        concept tasks and evaluators read. A region source has none: one-line InputError."""
        if self.concept_source is None:
            raise InputError(f"{self.model_id} gives class-agnostic regions, not instances of named concepts")
        return self.concept_source.concepts(load_image(image), vocabulary, threshold)

    @torch.inference_mode()
    def prompt_regions(self, image: ImageLike, clicks: Sequence[Click], boxes: Sequence[Box] = ()) -> Regions:
        """Regions for interactive prompts: the source's answers to the clicks/boxes when it takes
        prompts (SAM), else every region (the click task then picks among them)."""
        array = load_image(image)
        if isinstance(self.source, PromptableSource):
            return self.source.prompt_regions(array, clicks, boxes)
        return self.region_source.regions(array)

    @property
    def fusion(self) -> RecognizerFusion | None:
        """The frozen recognizer's fusion, when the source has the recognizer (built on first use)."""
        if not self._fusion_built:
            if getattr(self.source, "has_recognizer", False):
                trained = self.known.embeddings(self.text_encoder) if self.known is not None else None
                self._fusion = RecognizerFusion(self.text_encoder, self.trained_names, trained_text=trained)
            self._fusion_built = True
        return self._fusion

    @fusion.setter
    def fusion(self, value: RecognizerFusion | None) -> None:
        self._fusion, self._fusion_built = value, True

    def refer(
        self,
        image: ImageLike,
        phrase: str,
        margin: float = 0.03,
        max_regions: int = 4,
        threshold: float | None = None,
    ) -> ReferResult:
        """The region(s) ``phrase`` refers to ("the dog on the left"): a mask, its confidence and the
        ranking; ``found=False`` and an empty mask below the confidence ``threshold``. A concept source
        (SAM 3): its best instance of the phrase, threshold = its detection score (tasks.refer)."""
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
        return click(self, image, points, boxes, classes, threshold=threshold)

    def incontext(
        self,
        examples: Sequence[tuple[ImageLike, np.ndarray | str]],
        targets: ImageLike | list[ImageLike] | tuple[ImageLike, ...],
        level: Literal["category", "instance"] = "category",
        ignore_index: int | None = None,
    ) -> list[IdMapResult]:
        """Segment in the targets what the example (image, id mask) pairs mark: one result per target
        (``.id_map``: the examples' ids, 0 = background; ``.save()``, ``.overlay()``, ``.to_json()``).

        Several examples are combined by feature ensemble; ids keep the example masks' values. A source
        that segments from examples by itself (omniseg.source.ExampleSource: SegGPT, SAM 3's exemplar
        prompts) answers instead.
        """
        target_list: list[ImageLike] = list(targets) if isinstance(targets, (list, tuple)) else [targets]
        arrays = [load_image(t) for t in target_list]
        if isinstance(self.source, ExampleSource) and not isinstance(self.source, RegionSource):
            id_maps = self.source.incontext(examples, arrays, level=level, ignore_index=ignore_index)
        else:
            id_maps = incontext(self, examples, arrays, level=level, ignore_index=ignore_index)
        return [IdMapResult(array, ids, self.model_id) for array, ids in zip(arrays, id_maps, strict=True)]

    def video(
        self,
        frames: Sequence[ImageLike],
        first_mask: np.ndarray | str | None = None,
        config: VideoConfig | None = None,
        classes: Sequence[str] | str | None = None,
    ) -> Iterator[IdMapResult]:
        """Propagate the objects of ``first_mask`` (ids, 0 = background) through ``frames``; or, with
        ``classes`` instead ('car, person' or names), find and track every instance of them (a
        ConceptTrackingSource: SAM 3 video).

        An iterator of one result per frame, in order, computed lazily (a long video streams: a
        frame is read and segmented when the loop asks for it): ``.frame`` (its position),
        ``.id_map`` (the first mask's ids; with classes, the tracked objects' ids and ``.labels``
        naming each), ``.image``, ``.save()``, ``.overlay()``, ``.to_json()``. Without classes the
        first result is the first frame with ``first_mask`` itself, unless the source propagates
        with its own memory (omniseg.source.VideoSource: SAM 2 video), which answers every frame.
        """
        if (first_mask is None) == (classes is None):
            raise InputError("give exactly one of first_mask (propagate its objects) or classes (track them)")
        if classes is not None:
            yield from self._track(frames, classes)
            return
        assert first_mask is not None
        maps: Iterator[np.ndarray]
        if isinstance(self.source, VideoSource) and not isinstance(self.source, RegionSource):
            maps = map(compact_ids, self.source.propagate(frames, as_id_mask(first_mask, "first mask")))
        else:
            maps = video(self, frames, first_mask, config)
        for position, (frame, ids) in enumerate(zip(frames, maps, strict=False)):
            yield IdMapResult(load_image(frame), ids, self.model_id, frame=position)

    def _track(self, frames: Sequence[ImageLike], classes: Sequence[str] | str) -> Iterator[IdMapResult]:
        names = [n.strip() for n in classes.split(",")] if isinstance(classes, str) else [str(n) for n in classes]
        if not isinstance(self.source, ConceptTrackingSource):
            raise InputError(
                f"{self.model_id} does not track named concepts (video with classes needs a SAM 3 video "
                f"checkpoint, --model sam3:PATH); it answers: {', '.join(capabilities(self.source))}"
            )
        for frame, tracked in zip(frames, self.source.track(frames, names), strict=False):
            labels = {int(i): names[int(c)] for i, c in zip(tracked.object_ids, tracked.labels, strict=True)}
            yield IdMapResult(load_image(frame), compact_ids(tracked.id_map()), self.model_id, tracked.frame, labels)

    def vocabulary(self, classes: Sequence[str] | str | Path | Vocabulary, is_file: bool = False) -> Vocabulary:
        """An embedded Vocabulary from names, a 'sky, road, car' string or a Vocabulary; with
        ``is_file`` (or a Path), from a vocabulary file or a shipped vocabulary's name. What the door
        builds is memoised (omniseg.vocab_memo: names compared with the memo's own copy, so a list
        edited in place is rebuilt; strings by themselves; files by path, size and modification time)."""
        if isinstance(classes, Vocabulary):
            return self._embedded(classes)
        if is_file or isinstance(classes, Path):
            if not isinstance(classes, (str, Path)):
                raise InputError("a vocabulary file is given by its path or a shipped vocabulary's name")
            path = resolve_vocabulary(classes).resolve()
            if not path.is_file():
                return Vocabulary.from_file(path)  # raises the InputError that says what is wrong
            stat = path.stat()
            key: tuple = ("file", str(path), stat.st_size, stat.st_mtime_ns)
            return self._vocabularies.get(key, lambda: self._embedded(Vocabulary.from_file(path)))
        if isinstance(classes, str):
            text = classes
            return self._vocabularies.get(("string", text), lambda: self._embedded(Vocabulary.from_string(text)))
        return self._vocabularies.names(classes, lambda names: self._embedded(Vocabulary.from_names(names)))

    def _embedded(self, vocabulary: Vocabulary) -> Vocabulary:
        """The vocabulary with its text embeddings, unless the source reads the names itself (a concept
        source such as SAM 3 encodes them with its own text encoder and keeps them in ``derived``)."""
        if vocabulary.embeddings is None and self.concept_source is None:
            vocabulary.embed(self.text_encoder)
        return vocabulary

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
        return self.known.no_object(self.text_encoder) if self.known is not None else None

    @property
    def class_temperature(self) -> float:
        """The temperature of the class softmax: the one the source's class head was trained with."""
        value = getattr(self.source, "class_temperature", None)
        return float(value) if value else DEFAULT_TEMPERATURE

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
        task: "semantic" (a class per pixel, OpenSeg eq. 6), "instance" (objects of the thing
        classes with scores) or "panoptic" (things + one segment per stuff class). With more than
        256 classes, instance and panoptic results list only the image's candidate classes.
        threshold: semantic: pixels whose best class scores below it (a weighted cosine in
        [-1, 1]) are unlabeled; instance/panoptic: regions scoring below it (class probability x
        objectness, in [0, 1]) are dropped (default 0.2, tasks.panoptic.DEFAULT_PANOPTIC_MIN_SCORE;
        0 keeps every instance, as COCO AP wants).
        stuff: class names to treat as stuff, on top of the vocabulary's own markers (the given
        Vocabulary object is not changed).

        With a concept source (SAM 3) the source finds the instances of the names itself and
        threshold is its detection score for every task (default: the source's, SAM 3's 0.3):
        instance = its instances (overlaps allowed), semantic/panoptic = those instances painted best
        first (omniseg.tasks.concepts).
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
            vocabulary = self.vocabulary(vocab, is_file=not isinstance(vocab, Vocabulary))
        if stuff is not None:
            vocabulary = dataclasses.replace(vocabulary, stuff=list(vocabulary.stuff or [])).mark_stuff(stuff)
        cancel.check()  # between stages: a server request that timed out or lost its client stops here
        if self.concept_source is not None:
            return self._concepts(image, vocabulary, task, threshold, t0)
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

    def _concepts(
        self, image: ImageLike, vocabulary: Vocabulary, task: Task, threshold: float | None, t0: float
    ) -> SemanticResult | InstanceResult | PanopticResult:
        """``segment`` on a concept source: its instances of the vocabulary, then the task (tasks.concepts)."""
        t1 = time.perf_counter()
        array = load_image(image)
        found = self.concepts(array, vocabulary, threshold)
        cancel.check()
        t2 = time.perf_counter()
        names, stuff = vocabulary.classes, list(vocabulary.stuff or [False] * len(vocabulary))
        timings: dict[str, float] = {"vocabulary_s": t1 - t0, "model_s": t2 - t1}  # the task's stage added below
        result: SemanticResult | InstanceResult | PanopticResult
        if task == "semantic":
            label_map, region_classes = encode_label_map(concept_semantic(found).numpy(), len(vocabulary))
            result = SemanticResult(array, label_map, names, self.model_id, timings, region_classes)
        elif task == "instance":
            result = InstanceResult(array, concept_instances(found, stuff), names, stuff, self.model_id, timings)
        else:
            panoptic = concept_panoptic(found, stuff)
            id_map = panoptic.id_map.numpy()
            result = PanopticResult(array, id_map, panoptic.segments, names, stuff, self.model_id, timings)
        t3 = time.perf_counter()
        stage = {"semantic": "labels_s", "instance": "instances_s", "panoptic": "panoptic_s"}[task]
        timings.update({stage: t3 - t2, "total_s": t3 - t0})
        return result

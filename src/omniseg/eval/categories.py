"""The vocabulary panoptic and instance evaluation segment with: the evaluated categories only.

Void classes ("background") are left out. PQ and AP score only the evaluated categories, so a
void class in the vocabulary can only compete with them: a region half on an object and half on
background that is called "background" loses the object, while the same region called by the
object's name is either a match or, lying mostly on void, not counted at all. Measured on
coco128_seg val (checkpoint of step 400): PQ 4.4 with "background" in the vocabulary, 6.8
without; mask AP unchanged (4.43). Semantic mIoU keeps "background" (there it is a scored class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from omniseg.concepts import Instances
from omniseg.data.dataset import Dataset
from omniseg.data.segments import ClassRoles
from omniseg.data.uniform import Sample, read_rgb
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.vocab import Vocabulary

Answer = TypeVar("Answer")


@dataclass
class EvalVocabulary:
    prompts: torch.Tensor  # [M, D] (none, [0, 1], for a concept source: it reads the names itself)
    owner: torch.Tensor  # [M] index into class_ids
    class_ids: list[int]  # vocabulary index -> dataset class id
    stuff: list[bool]  # per vocabulary index
    vocabulary: Vocabulary  # the names, as the door built them (what a concept source is asked about)

    def __len__(self) -> int:
        return len(self.class_ids)


def evaluation_vocabulary(segmenter: Segmenter, dataset: Dataset, roles: ClassRoles) -> EvalVocabulary:
    class_ids = [k for k in range(len(dataset.classes)) if not roles.void[k]]
    vocab = segmenter.vocabulary(Vocabulary.from_names([dataset.classes[k] for k in class_ids]))
    stuff = [not roles.isthing[k] for k in class_ids]
    if segmenter.concept_source is not None:  # SAM 3: no text embeddings, the names are its prompts
        return EvalVocabulary(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), class_ids, stuff, vocab)
    assert vocab.embeddings is not None and vocab.prompt_to_class is not None
    return EvalVocabulary(
        torch.from_numpy(vocab.embeddings), torch.from_numpy(vocab.prompt_to_class), class_ids, stuff, vocab
    )


@dataclass
class ObjectQuestion:
    """What instance and panoptic evaluation ask every image's Regions, fixed for the whole dataset:
    the evaluated categories, the source's class temperature, the score floor and the "no object"
    concept a thing must beat (Segmenter.no_object). One place builds the task call both metrics make."""

    vocab: EvalVocabulary
    temperature: float
    min_score: float
    reference: torch.Tensor | None = None

    def ask(self, task: Callable[..., Answer], regions: Regions, out_size: tuple[int, ...]) -> Answer:
        """``task`` (tasks.instance.instance_segmentation or tasks.panoptic.panoptic_segmentation) on
        ``regions``, answered at the ground truth's size."""
        with torch.inference_mode():
            return task(
                regions,
                self.vocab.prompts,
                self.vocab.owner,
                len(self.vocab),
                self.vocab.stuff,
                temperature=self.temperature,
                min_score=self.min_score,
                out_size=out_size,
                reference=self.reference,
            )


def object_question(segmenter: Segmenter, dataset: Dataset, roles: ClassRoles, min_score: float) -> ObjectQuestion:
    """The question for ``dataset`` (vocabulary index -> dataset class id: ``vocab.class_ids``)."""
    vocab = evaluation_vocabulary(segmenter, dataset, roles)
    return ObjectQuestion(vocab, segmenter.class_temperature, min_score, segmenter.no_object)


def sample_output(
    segmenter: Segmenter, vocab: EvalVocabulary, threshold: float | None
) -> Callable[[Sample], Instances] | None:
    """What the instance and panoptic evaluators read of a sample besides the model's Regions (None:
    those, evaluate_images' default): a concept source's instances of the evaluated categories above
    its detection score ``threshold``."""
    if segmenter.concept_source is None:
        return None
    return lambda sample: segmenter.concepts(read_rgb(sample.image_path), vocab.vocabulary, threshold)

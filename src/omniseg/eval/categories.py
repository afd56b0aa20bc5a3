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

import torch

from omniseg.concepts import Instances
from omniseg.data.dataset import Dataset
from omniseg.data.segments import ClassRoles
from omniseg.data.uniform import Sample, read_rgb
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter
from omniseg.vocab import Vocabulary


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


def sample_output(
    segmenter: Segmenter, vocab: EvalVocabulary, threshold: float | None
) -> Callable[[Sample], Regions | Instances]:
    """What the instance and panoptic evaluators read of a sample: the model's Regions, or a concept
    source's instances of the evaluated categories above its detection score ``threshold``."""
    if segmenter.concept_source is not None:
        return lambda sample: segmenter.concepts(read_rgb(sample.image_path), vocab.vocabulary, threshold)
    return lambda sample: segmenter.regions(read_rgb(sample.image_path))

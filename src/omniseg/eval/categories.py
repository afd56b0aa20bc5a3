"""The vocabulary panoptic and instance evaluation segment with: the evaluated categories only.

Void classes ("background") are left out. PQ and AP score only the evaluated categories, so a
void class in the vocabulary can only compete with them: a region half on an object and half on
background that is called "background" loses the object, while the same region called by the
object's name is either a match or, lying mostly on void, not counted at all. Measured on
coco128_seg val (checkpoint of step 400): PQ 4.4 with "background" in the vocabulary, 6.8
without; mask AP unchanged (4.43). Semantic mIoU keeps "background" (there it is a scored class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omniseg.data.dataset import Dataset
from omniseg.data.segments import ClassRoles
from omniseg.segmenter import Segmenter
from omniseg.vocab import Vocabulary


@dataclass
class EvalVocabulary:
    prompts: torch.Tensor  # [M, D]
    owner: torch.Tensor  # [M] index into class_ids
    class_ids: list[int]  # vocabulary index -> dataset class id
    stuff: list[bool]  # per vocabulary index

    def __len__(self) -> int:
        return len(self.class_ids)


def evaluation_vocabulary(segmenter: Segmenter, dataset: Dataset, roles: ClassRoles) -> EvalVocabulary:
    class_ids = [k for k in range(len(dataset.classes)) if not roles.void[k]]
    vocab = segmenter.vocabulary(Vocabulary.from_names([dataset.classes[k] for k in class_ids]))
    assert vocab.embeddings is not None and vocab.prompt_to_class is not None
    return EvalVocabulary(
        torch.from_numpy(vocab.embeddings),
        torch.from_numpy(vocab.prompt_to_class),
        class_ids,
        [not roles.isthing[k] for k in class_ids],
    )

"""The one evaluation loop and the evaluator protocol (detectron2's ``DatasetEvaluator`` and
``inference_on_dataset``).

An evaluator accumulates one metric over a dataset: ``reset()`` empties it, ``process(item,
output)`` adds one item (an image sample, a few-shot episode, a video sequence) with the model's
output for it, ``evaluate()`` returns the report. The loop is the same for every metric (mIoU,
grounding mIoU, PQ, mask AP, proposal recall, few-shot mIoU, J&F, NoC): ``predict(item)`` runs
the model, the evaluator scores; the loop times it and shows progress. So a new metric is an
evaluator class, never a new loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sized
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from omniseg.data.dataset import Dataset
from omniseg.data.uniform import Sample, read_rgb
from omniseg.segmenter import Segmenter

Item = TypeVar("Item")
Output = TypeVar("Output")


class DatasetEvaluator(Protocol):
    def reset(self) -> None:
        """Forget everything processed so far."""
        ...

    def process(self, item: Any, output: Any) -> None:
        """Score one item with the model's output for it."""
        ...

    def evaluate(self) -> dict:
        """The report of everything processed since the last reset (JSON-ready)."""
        ...


def inference_on_dataset(
    predict: Callable[[Item], Output],
    items: Iterable[Item],
    evaluator: DatasetEvaluator,
    desc: str = "eval",
    progress: bool = True,
) -> dict:
    """Run ``predict`` on every item, feed the evaluator, and return its report with ``seconds``
    (the wall time of the whole loop: model, scoring and reading the data)."""
    evaluator.reset()
    start = time.perf_counter()
    total = len(items) if isinstance(items, Sized) else None
    for item in tqdm(items, desc=desc, total=total, disable=not progress, dynamic_ncols=True):
        evaluator.process(item, predict(item))
    report = evaluator.evaluate()
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def evaluate_images(
    segmenter: Segmenter,
    dataset: Dataset,
    items: Iterable[Any],
    evaluator: DatasetEvaluator,
    desc: str,
    split: str,
    progress: bool = True,
    predict: Callable[[Any], Any] | None = None,
) -> dict:
    """``inference_on_dataset`` over a dataset's images, the report named the way every image metric
    names it (dataset, the evaluator's figures, ``seconds``, split, model). The output is the
    segmenter's Regions of each sample's image as stored (``predict``: another output per item).
    ``split``: ``split_label``'s name of the part scored."""

    def regions(sample: Sample) -> Any:
        return segmenter.regions(read_rgb(sample.image_path))

    report = inference_on_dataset(predict or regions, items, evaluator, desc=desc, progress=progress)
    return {"dataset": dataset.name, **report, "split": split, "model": segmenter.model_id}


def split_label(split: str, val_fraction: float, split_seed: int) -> str:
    """How a report names the part of the dataset it scored."""
    return split if split == "all" else f"{split} (val_fraction={val_fraction}, seed={split_seed})"

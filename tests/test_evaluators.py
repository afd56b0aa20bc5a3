"""One evaluation loop (issue 14): evaluator objects (reset/process/evaluate, detectron2-style)
driven by ``inference_on_dataset``; the evaluate_* functions are that loop with one evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_CLASSES, write_uniform_dataset
from omniseg.data.uniform import UniformDataset, read_rgb
from omniseg.errors import InputError
from omniseg.eval.evaluator import inference_on_dataset
from omniseg.eval.semantic import SemanticEvaluator, evaluate_semantic


class CountingEvaluator:
    def __init__(self) -> None:
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        self.resets += 1
        self.seen: list[tuple[int, int]] = []

    def process(self, item: int, output: int) -> None:
        self.seen.append((item, output))

    def evaluate(self) -> dict:
        return {"seen": list(self.seen)}


def test_the_loop_resets_predicts_processes_and_times():
    evaluator = CountingEvaluator()
    evaluator.process(99, 0)  # left over from an earlier run: the loop starts from a reset
    report = inference_on_dataset(lambda x: x * 10, iter([1, 2, 3]), evaluator, progress=False)
    assert report["seen"] == [(1, 10), (2, 20), (3, 30)] and evaluator.resets == 2
    assert report["seconds"] >= 0


def test_semantic_evaluator_is_the_evaluate_function(segmenter, tmp_path):
    root = write_uniform_dataset(tmp_path / "ds", n=4, classes=TINY_CLASSES)
    report = evaluate_semantic(segmenter, root, progress=False)
    dataset = UniformDataset(root)
    vocab = segmenter.vocabulary(TINY_CLASSES)
    fusion = segmenter.fusion  # the frozen recognizer's fusion, as evaluate_semantic applies it
    evaluator = SemanticEvaluator(
        dataset.classes,
        torch.from_numpy(vocab.embeddings),
        torch.from_numpy(vocab.prompt_to_class),
        cover=fusion.class_cover(vocab) if fusion is not None else None,
        fusion=fusion.config if fusion is not None else None,
        trained_names=segmenter.trained_names,
    )
    samples = dataset.eval_samples("all", 0.2, 0, None)
    for sample in samples[:2]:  # a partial run, then a reset: nothing of it remains
        evaluator.process(sample, segmenter.regions(read_rgb(sample.image_path)))
    evaluator.reset()
    for sample in samples:
        evaluator.process(sample, segmenter.regions(read_rgb(sample.image_path)))
    direct = evaluator.evaluate()
    assert direct["images"] == report["images"] == len(samples)
    assert direct["mIoU"] == report["mIoU"] and direct["per_class_iou"] == report["per_class_iou"]
    grounding = SemanticEvaluator(dataset.classes, evaluator.prompts, evaluator.owner, grounding=True)
    wrong = samples[0]
    with pytest.raises(InputError, match="differ in size"):
        regions = segmenter.regions(np.zeros((10, 12, 3), np.uint8))
        grounding.process(wrong, regions)

"""SAM 3 (a concept source) in `omniseg eval --task instance|panoptic` and in `refer` (issue 16): on a
tiny random Sam3Model built here and a tiny instance dataset written here; the metric plumbing is
pinned exactly by an oracle concept source that answers the ground truth."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
from conftest import run_cli
from omniseg.concepts import Instances
from omniseg.eval.instance import CONCEPT_AP_THRESHOLD, evaluate_instances
from omniseg.eval.panoptic import evaluate_panoptic
from omniseg.segmenter import Segmenter
from omniseg.source import ConceptSource
from omniseg.vocab import Vocabulary
from test_instance_panoptic import CLASSES_IP, write_instance_dataset
from transformers_reference import mask_iou, reference


@pytest.fixture(scope="module")
def seg(tiny_sam3_dir):
    return omniseg.load(f"sam3:{tiny_sam3_dir}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_instance_dataset(tmp_path_factory.mktemp("sam3ds") / "ds", n=3)


class OracleConcepts:
    """A concept source answering the ground truth: each object (score 0.9) and, with ``duplicates``,
    a larger overlapping copy of it (score 0.4: a false positive ranked below every true one), and
    grass as one instance (0.8)."""

    name = "oracle-concepts"
    default_threshold = 0.3

    def __init__(self, truth: dict, duplicates: bool = False) -> None:
        self.truth, self.duplicates = truth, duplicates

    def concepts(self, image: np.ndarray, vocabulary: Vocabulary, threshold: float | None = None) -> Instances:
        classes, inst = self.truth[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]
        found: list[tuple[np.ndarray, str, float]] = []
        for k in np.unique(inst[inst > 0]):
            mask, name = inst == k, CLASSES_IP[int(classes[inst == k][0])]
            found.append((mask, name, 0.9))
            if self.duplicates:
                ys, xs = np.nonzero(mask)
                bigger = np.zeros_like(mask)
                bigger[ys.min() : ys.max() + 4, xs.min() : xs.max() + 4] = True
                found.append((bigger, name, 0.4))
        found.append((classes == 3, "grass", 0.8))
        size = (int(classes.shape[0]), int(classes.shape[1]))
        return Instances(
            torch.tensor(np.stack([m for m, _, _ in found])),
            torch.tensor([s for _, _, s in found]),
            torch.tensor([vocabulary.classes.index(n) for _, n, _ in found]),
            torch.zeros(len(found), 4),
            size,
        )


def test_oracle_concepts_score_perfectly(dataset):
    root, truth = dataset
    exact = Segmenter(OracleConcepts(truth))
    assert isinstance(exact.source, ConceptSource)
    panoptic = evaluate_panoptic(exact, root, stuff=("grass",), progress=False)
    assert panoptic["PQ"] == 100.0 and panoptic["things"]["n"] == 2 and panoptic["stuff"]["n"] == 1
    assert panoptic["min_score"] == 0.3  # the concept source's own default
    # overlapping duplicates stay COCO results (3 images x 2 objects x 2), ranked below every true
    # instance: AP stays 100; grass is stuff, never an instance
    doubled = Segmenter(OracleConcepts(truth, duplicates=True))
    report = evaluate_instances(doubled, root, stuff=("grass",), progress=False)
    assert report["AP"] == 100.0 and report["detections"] == 12
    assert report["score_threshold"] == CONCEPT_AP_THRESHOLD


def test_cli_eval_instance_and_panoptic_on_tiny_sam3(tiny_sam3_dir, seg, dataset, tmp_path, capsys):
    root, _ = dataset
    for task, table in (("instance", "mask AP"), ("panoptic", "PQ")):
        out = tmp_path / f"{task}.json"
        argv = ["eval", root, "--task", task, "--model", f"sam3:{tiny_sam3_dir}", "--stuff", "grass", "--json", out]
        code, stdout, err = run_cli([*argv, "--quiet"], capsys)
        assert code == 0, err
        assert table in stdout
        report = json.loads(out.read_text())
        assert report["images"] == 3 and report["model"].startswith("sam3:")
        for key in ("AP", "AP50", "PQ", "SQ"):
            assert report.get(key) is None or 0 <= report[key] <= 100
    # the COCO results are the door's own instances at the evaluation's threshold, overlaps and all
    instances = json.loads((tmp_path / "instance.json").read_text())
    expected = 0
    for picture in sorted((root / "images").iterdir()):
        result = seg.segment(
            np.array(Image.open(picture).convert("RGB")),
            classes=["cat", "dog", "grass"],
            task="instance",
            threshold=CONCEPT_AP_THRESHOLD,
            stuff="grass",
        )
        expected += len(result.instances)
    assert instances["detections"] == expected > 0
    assert json.loads((tmp_path / "panoptic.json").read_text())["min_score"] == seg.source.default_threshold


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(5)
    picture = (rng.random((42, 50, 3)) * 255).astype(np.uint8)
    picture[20:, 10:30] = (200, 30, 30)
    return picture


def test_refer_is_the_best_instance_of_the_phrase(seg, image):
    phrase = "the red car"
    scores = seg.source.backend.segment(image, [phrase], threshold=0.0).scores
    best = float(scores.max())
    cut = best - 1e-4  # only the best query passes... unless a tie
    result = seg.refer(image, f"  {phrase} ", threshold=cut)
    assert result.found and result.phrase == phrase and result.selected == [result.ranking[0]]
    assert result.confidence == pytest.approx(best, abs=1e-6)
    # transformers' own post-processing of the same phrase, threshold and image
    theirs = reference(seg.source.backend, image, phrase, cut)
    top = int(theirs["scores"].argmax())
    assert float(theirs["scores"][top]) == pytest.approx(best, abs=1e-3)
    assert mask_iou(torch.from_numpy(result.mask), theirs["masks"][top].bool()) >= 0.99
    assert result.to_json()["found"] is True and result.mask.shape == image.shape[:2]
    # none above the threshold: "not found", an empty mask (the native model's "unknown")
    missing = seg.refer(image, phrase, threshold=min(best + 1e-3, 1.0))
    assert not missing.found and not missing.mask.any() and missing.selected == []


def test_cli_refer_found_and_not_found(tiny_sam3_dir, seg, image, tmp_path, capsys):
    picture = tmp_path / "street.png"
    Image.fromarray(image).save(picture)
    best = float(seg.source.backend.segment(image, ["red car"], threshold=0.0).scores.max())
    for threshold, found in ((best - 1e-4, True), (min(best + 1e-3, 1.0), False)):
        out = tmp_path / f"out{int(found)}"
        argv = ["refer", picture, "red car", "--model", f"sam3:{tiny_sam3_dir}", "--threshold", threshold, "--out", out]
        code, stdout, err = run_cli(argv, capsys)
        assert code == 0, err
        answer = json.loads((out / "street.json").read_text())
        mask = np.array(Image.open(out / "street.png"))
        assert answer["found"] is found and (mask.any() if found else not mask.any())
        assert ("score" if found else "not found: no instance scores above the threshold") in stdout

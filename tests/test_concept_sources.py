"""Grounded-SAM (``--boxes grounding-dino:DIR --masks sam2:DIR|sam:DIR``) and CLIPSeg (``clipseg:DIR``) as
concept sources (omniseg.source.ConceptSource, the one SAM 3 answers): the door's segment tasks, refer,
the CLI's segment / batch (local and Ray) / eval, the server, and --device on every command that loads
a model; tiny random models built here (tests/tiny_hf16.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
import tiny_hf16
from conftest import assert_batch_resumes_and_ray_matches, assert_one_line_error, run_cli
from omniseg.backends.clipseg import MASK_THRESHOLD, ClipSegDense
from omniseg.backends.grounded_sam import GroundedSam
from omniseg.errors import InputError
from omniseg.source import ConceptSource
from omniseg.tasks.concepts import concept_instances, concept_semantic
from omniseg.vocab import Vocabulary
from tiny_hf16 import scene, write_scenes

H, W = 40, 60
CLASSES = "red block,green block"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts16")
    return tiny_hf16.make_many(root, "gdino", "sam2", "sam2_video", "sam", "clipseg", "sam3")


def specs(dirs, which: str) -> dict:
    """load() keywords of a concept source: Grounded-SAM with SAM 2 or SAM masks, or CLIPSeg."""
    if which == "clipseg":
        return {"model": f"clipseg:{dirs['clipseg']}"}
    return {"boxes": f"grounding-dino:{dirs['gdino']}", "masks": f"{which}:{dirs[which]}"}


def flags(dirs, which: str) -> list:
    """The same as command-line options."""
    return [item for key, value in specs(dirs, which).items() for item in (f"--{key}", value)]


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize("which", ["sam2", "sam", "clipseg"])
def test_the_door_asks_them_as_concept_sources(dirs, which):
    segmenter = omniseg.load(**specs(dirs, which))
    assert isinstance(segmenter.source, ConceptSource) and segmenter.concept_source is segmenter.source
    assert isinstance(segmenter.source, ClipSegDense if which == "clipseg" else GroundedSam)
    image, _ = scene()
    vocab = Vocabulary.from_names(["red block|crimson block", "green block"])  # a synonym: still two classes
    found = segmenter.source.concepts(image, vocab, 0.0)
    assert len(found) and found.masks.device.type == "cpu" and set(found.labels.tolist()) <= {0, 1}
    instance = segmenter.segment(image, classes=vocab, task="instance", threshold=0.0)
    expected = concept_instances(found)
    assert [(i.label, round(i.score, 6)) for i in instance.instances] == [
        (i.label, round(i.score, 6)) for i in expected
    ]
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(instance.instances, expected, strict=True))
    semantic = segmenter.segment(image, classes=vocab, threshold=0.0)
    np.testing.assert_array_equal(semantic.class_map(), concept_semantic(found).numpy())
    panoptic = segmenter.segment(image, classes=vocab, task="panoptic", threshold=0.0, stuff=["green block"])
    assert panoptic.id_map.shape == (H, W)
    assert vocab.embeddings is None  # the source reads the names: no text encoder ran


def test_clipseg_class_is_as_likely_as_its_likeliest_synonym(dirs):
    dense = ClipSegDense(dirs["clipseg"])
    image, _ = scene()
    probs = dense.logits(image, ["red", "noise", "green"]).sigmoid()
    classes = torch.stack([probs[:2].amax(0), probs[2]])
    found = dense.concepts(image, Vocabulary([["red", "noise"], ["green"]]))
    for mask, k in zip(found.masks, found.labels, strict=True):
        assert torch.equal(mask, (classes.argmax(0) == k) & (classes[k] > MASK_THRESHOLD))


@pytest.mark.parametrize("which", ["sam2", "clipseg"])
def test_refer_reads_the_phrase_as_one_concept(dirs, which):
    segmenter = omniseg.load(**specs(dirs, which))
    image, _ = scene()
    found = segmenter.source.concepts(image, Vocabulary([["red block"]]), 0.0)
    result = segmenter.refer(image, "red block", margin=1.0, max_regions=100, threshold=0.0)
    assert result.found and result.ranking == sorted(range(len(found)), key=lambda i: -float(found.scores[i]))
    np.testing.assert_array_equal(result.mask, found.masks.any(0).numpy())
    nothing = segmenter.refer(image, "red block", threshold=1.0)  # no detection scores above 1
    assert not nothing.found and not nothing.mask.any()


def test_sam3_refers_too(dirs):
    segmenter = omniseg.load(f"sam3:{dirs['sam3']}")
    image, _ = scene()
    found = segmenter.source.concepts(image, Vocabulary([["red block"]]), 0.0)
    result = segmenter.refer(image, "red block", threshold=0.0, margin=0.0, max_regions=1)
    assert result.found and result.selected == [int(found.scores.argmax())]
    assert result.confidence == pytest.approx(float(found.scores.max()))


def test_boxes_need_masks_and_no_model(dirs):
    with pytest.raises(InputError, match="--masks"):
        omniseg.load(boxes=f"grounding-dino:{dirs['gdino']}")
    with pytest.raises(InputError, match="--boxes composes with --masks only"):
        omniseg.load(f"clipseg:{dirs['clipseg']}", boxes=f"grounding-dino:{dirs['gdino']}", masks="native")


@pytest.mark.parametrize("which", ["sam2", "clipseg"])
def test_cli_segment_and_batch(dirs, which, tmp_path, capsys):
    folder = tmp_path / "photos"
    for i in range(2):
        save(folder / f"p{i}.png", scene(2 * i)[0])
    model = flags(dirs, which)
    argv = ["segment", folder / "p0.png", *model, "--classes", CLASSES, "--task", "instance", "--threshold", "0"]
    code, _, err = run_cli([*argv, "--out", tmp_path / "one", "--quiet"], capsys)
    assert code == 0, err
    records = json.loads((tmp_path / "one" / "p0_instances.json").read_text())
    assert records and {r["category_name"] for r in records} <= {"red block", "green block"}
    argv = ["batch", folder, *model, "--classes", CLASSES, "--threshold", "0"]
    # the Ray worker rebuilds the source from the job's specs (--boxes included)
    assert_batch_resumes_and_ray_matches(argv, tmp_path, 2, ("p0.png", "p1.json"), capsys)


@pytest.mark.parametrize("which", ["sam2", "clipseg"])
def test_cli_eval_semantic(dirs, which, tmp_path, capsys):
    dataset = write_scenes(tmp_path / "data", "", ["background", "red block", "green block"])
    report_path = tmp_path / "report.json"
    argv = ["eval", dataset, *flags(dirs, which), "--json", report_path, "--quiet"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["images"] == 4 and report["mIoU"] is not None
    assert report["model"] == omniseg.load(**specs(dirs, which)).model_id


@pytest.mark.parametrize("which", ["sam2", "clipseg"])
def test_served(dirs, which):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from omniseg.server import create_app
    from omniseg.server.door import server_segmenter

    keywords = specs(dirs, which)
    segmenter = server_segmenter(keywords.pop("model", None), 512, **keywords)
    buffer = io.BytesIO()
    Image.fromarray(scene()[0]).save(buffer, format="PNG")
    picture = {"image": ("x.png", buffer.getvalue(), "image/png")}
    with TestClient(create_app(segmenter), base_url="http://localhost") as client:
        assert "/" not in client.get("/healthz").json()["model"]
        for task in ("semantic", "instance", "panoptic"):
            answer = client.post(
                "/v1/segment", files=picture, data={"classes": CLASSES, "task": task, "threshold": "0"}
            )
            assert answer.status_code == 200, answer.text
        semantic = client.post("/v1/segment", files=picture, data={"classes": CLASSES}).json()
        assert semantic["classes"] == CLASSES.split(",")
        refer = client.post("/v1/refer", files=picture, data={"phrase": "red block"})
        assert refer.status_code == 200, refer.text


def test_device_reaches_click_video_incontext_refer(dirs, tmp_path, capsys):
    image, ids = scene()
    picture, mask = save(tmp_path / "x.png", image), save(tmp_path / "ids.png", ids)
    frames = tmp_path / "frames"
    for i in range(2):
        save(frames / f"{i}.png", scene(2 * i)[0])
    commands = {
        "click": ["click", picture, "--point", "12,10", "--model", f"sam2:{dirs['sam2']}"],
        "video": ["video", frames, "--first-mask", mask, "--model", f"sam2:{dirs['sam2_video']}"],
        "incontext": ["incontext", "--example", picture, mask, picture, "--model", f"sam3:{dirs['sam3']}"],
        "refer": ["refer", picture, "red block", *flags(dirs, "sam2")],
    }
    for name, argv in commands.items():
        code, _, err = run_cli([*argv, "--device", "banana", "--out", tmp_path / name], capsys)
        assert_one_line_error(code, err)
        assert "banana" in err, name
        code, _, err = run_cli([*argv, "--device", "cpu", "--out", tmp_path / name, "--quiet"], capsys)
        assert code == 0, (name, err)

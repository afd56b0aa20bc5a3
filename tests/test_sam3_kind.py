"""SAM 3 as a model kind (issue 16): ``sam3:DIR`` through omniseg.load, the door's semantic / instance /
panoptic tasks, the CLI (segment, eval, batch local and Ray), offline errors and --device, on a tiny
random Sam3Model built here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import omniseg
from conftest import assert_batch_resumes_and_ray_matches, assert_one_line_error, run_cli
from omniseg.errors import InputError, MissingResourceError
from omniseg.source import ConceptSource
from transformers_reference import mask_iou, middle_threshold, reference

NAMES = ["car", "sky", "red car", "road"]


@pytest.fixture(scope="module")
def seg(tiny_sam3_dir):
    return omniseg.load(f"sam3:{tiny_sam3_dir}")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(11)
    picture = (rng.random((44, 58, 3)) * 255).astype(np.uint8)
    picture[:15] = (90, 150, 230)
    return picture


@pytest.fixture(scope="module")
def cut(seg, image):
    """A threshold between two of this image's detection scores: some instances pass, some do not."""
    return middle_threshold(seg.source.backend.segment(image, NAMES, threshold=0.0).scores)


def test_load_gives_a_concept_source(seg):
    assert isinstance(seg.source, ConceptSource) and seg.concept_source is seg.source
    assert seg.model_id.startswith("sam3:")
    with pytest.raises(InputError, match="named concepts") as err:  # no class-agnostic regions to click in
        seg.click(np.zeros((20, 20, 3), np.uint8), [(3, 3)])
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="named concepts") as err:
        seg.regions(np.zeros((20, 20, 3), np.uint8))
    assert "\n" not in str(err.value)


def test_instance_task_is_transformers_post_processing(seg, image, cut):
    result = seg.segment(image, classes=NAMES, task="instance", threshold=cut)
    scores = [i.score for i in result.instances]
    assert 0 < len(scores) and scores == sorted(scores, reverse=True)
    backend = seg.source.backend
    for label, name in enumerate(NAMES):
        ref = reference(backend, image, name, cut)
        ours = [i for i in result.instances if i.label == label]
        assert len(ours) == len(ref["scores"])
        assert np.allclose(sorted(i.score for i in ours), sorted(ref["scores"].tolist()), atol=1e-3)
        for theirs in ref["masks"].bool():
            assert max(mask_iou(i.mask, theirs) for i in ours) >= 0.99
    answer = result.to_json()
    assert set(answer) == {"task", "classes", "stuff", "instances", "model", "timings"}
    assert answer["classes"] == NAMES and answer["instances"][0]["class"] in NAMES


def test_semantic_paints_the_best_instance(seg, image, cut):
    found = seg.source.concepts(image, seg.vocabulary(NAMES), cut)
    result = seg.segment(image, classes=NAMES, threshold=cut)
    classes = result.class_map()
    assert result.label_map.dtype == np.uint8
    covered = found.masks.any(0).numpy()
    assert (classes[~covered] == -1).all() and (classes[covered] >= 0).all()
    best = int(found.scores.argmax())
    assert (classes[found.masks[best].numpy()] == int(found.labels[best])).all()
    assert set(result.to_json()) >= {"classes", "label_map", "fractions", "model"}


def test_panoptic_resolves_overlaps_and_merges_stuff(seg, image, cut):
    result = seg.segment(image, classes=NAMES, task="panoptic", threshold=cut, stuff="sky,road")
    ids = {s.id for s in result.segments}
    assert set(np.unique(result.id_map)) <= ids | {0}
    stuff_labels = [s.label for s in result.segments if not s.isthing]
    assert len(stuff_labels) == len(set(stuff_labels))  # one segment per stuff class
    assert all(NAMES[s.label] in ("car", "red car") for s in result.segments if s.isthing)
    instances = seg.segment(image, classes=NAMES, task="instance", threshold=cut, stuff="sky,road")
    assert all(NAMES[i.label] in ("car", "red car") for i in instances.instances)  # stuff is never an object


def test_encodes_image_and_prompts_once(tiny_sam3_dir, image, cut, monkeypatch):
    seg = omniseg.load(f"sam3:{tiny_sam3_dir}")
    backend = seg.source.backend
    calls = {"image": 0, "text": 0}
    real_image, real_text = backend.model.get_vision_features, backend.model.get_text_features

    def vision(**kw):
        calls["image"] += 1
        return real_image(**kw)

    def text(**kw):
        calls["text"] += 1
        return real_text(**kw)

    monkeypatch.setattr(backend.model, "get_vision_features", vision)
    monkeypatch.setattr(backend.model, "get_text_features", text)
    for task in ("semantic", "instance", "panoptic", "semantic"):
        seg.segment(image, classes=NAMES, task=task, threshold=cut)
    assert calls == {"image": 1, "text": 1}


def test_above_256_names_shortlist_and_uint16(tiny_sam3_dir, image):
    seg = omniseg.load(f"sam3:{tiny_sam3_dir}")
    seg.source.shortlist = 8
    names = [f"thing {i}" for i in range(300)]
    decoded = []
    real = seg.source.backend.run
    seg.source.backend.run = lambda encoding, prompts, *a, **k: (
        decoded.append(len(prompts)) or real(encoding, prompts, *a, **k)
    )
    result = seg.segment(image, classes=names, threshold=0.0)
    assert decoded == [8] and result.label_map.dtype == np.uint16 and len(result.classes) == 300
    assert (result.class_map() >= 0).any()


def test_cli_segment_three_tasks(tiny_sam3_dir, tmp_path, capsys):
    picture = tmp_path / "in" / "street.png"
    picture.parent.mkdir()
    Image.fromarray((np.random.default_rng(2).random((40, 52, 3)) * 255).astype(np.uint8)).save(picture)
    for task, files in (
        ("semantic", ["street.png", "street.json", "street_overlay.png"]),
        ("instance", ["street_instances.json", "street_overlay.png"]),
        ("panoptic", ["street_panoptic.png", "street_panoptic.json"]),
    ):
        out = tmp_path / task
        argv = ["segment", picture, "--model", f"sam3:{tiny_sam3_dir}", "--classes", "car,sky", "--task", task]
        code, _, err = run_cli([*argv, "--out", out, "--threshold", "0", "--quiet"], capsys)
        assert code == 0, err
        assert all((out / f).is_file() for f in files)
    records = json.loads((tmp_path / "instance" / "street_instances.json").read_text())
    assert records and {r["category_name"] for r in records} <= {"car", "sky"}


def test_cli_batch_resume_and_ray(tiny_sam3_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        Image.fromarray((rng.random((36, 40 + i, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    argv = ["batch", folder, "--model", f"sam3:{tiny_sam3_dir}", "--classes", "car,sky", "--threshold", "0.2"]
    assert_batch_resumes_and_ray_matches(argv, tmp_path, 3, ("p0.png", "p1.json", "p2_overlay.png"), capsys)


def test_cli_eval_semantic_and_grounding(tiny_sam3_dir, tiny_dataset, tmp_path, capsys):
    for extra in ([], ["--grounding"]):
        report_path = tmp_path / f"report{len(extra)}.json"
        argv = ["eval", tiny_dataset, "--model", f"sam3:{tiny_sam3_dir}", "--limit", "2", "--json", report_path]
        code, out, err = run_cli([*argv, *extra, "--quiet"], capsys)
        assert code == 0, err
        report = json.loads(report_path.read_text())
        assert report["images"] == 2 and report["model"].startswith("sam3:")
        assert report["metric"] == ("grounding mIoU" if extra else "mIoU") and report["mIoU"] is not None


def test_offline_missing_and_partial_directories(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text('{"model_type": "sam3"}')
    picture = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(picture)
    for spec in ("sam3:facebook/sam3", f"sam3:{tmp_path / 'none'}", f"sam3:{partial}", f"sam3:{tmp_path}"):
        code, _, err = run_cli(
            ["segment", picture, "--model", spec, "--classes", "car", "--out", tmp_path / "o"], capsys
        )
        assert_one_line_error(code, err)
    with pytest.raises(MissingResourceError, match="neither a local directory nor in the Hugging Face cache"):
        omniseg.load("sam3:facebook/sam3")


def test_old_transformers_is_one_line(tiny_sam3_dir, monkeypatch):
    for module in ("transformers.models.sam3", "transformers.models.sam3.modeling_sam3"):
        monkeypatch.setitem(sys.modules, module, None)  # as if the release had no SAM 3
    with pytest.raises(MissingResourceError, match=r"transformers >= 5\.0\.0 \(Sam3Model; no 4\.x release") as err:
        omniseg.load(f"sam3:{tiny_sam3_dir}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("command", ["segment", "batch", "eval", "serve"])
def test_bad_or_absent_device_is_exit_2(command, tiny_sam3_dir, tiny_dataset, tmp_path, capsys):
    picture = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(picture)
    job = [picture, "--classes", "car", "--out", tmp_path / "o"]
    head = {"segment": ["segment", *job], "batch": ["batch", *job], "eval": ["eval", tiny_dataset], "serve": ["serve"]}
    devices = ["banana", "cuda:0"] if not torch.cuda.is_available() else ["banana", "cuda:99"]
    for device in devices:
        code, _, err = run_cli([*head[command], "--model", f"sam3:{tiny_sam3_dir}", "--device", device], capsys)
        assert_one_line_error(code, err)
        assert device.split(":")[0] in err
    with pytest.raises(InputError):
        omniseg.load(f"sam3:{tiny_sam3_dir}", device="banana")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_segment_on_cuda(tiny_sam3_dir, tiny_model_dir, tmp_path, capsys):
    picture = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(1).random((40, 52, 3)) * 255).astype(np.uint8)).save(picture)
    for model in (f"sam3:{tiny_sam3_dir}", str(tiny_model_dir)):
        for device in ("cpu", "cuda"):
            out = tmp_path / f"{device}-{len(model)}"
            argv = ["segment", picture, "--model", model, "--classes", "car,sky", "--task", "instance"]
            code, _, err = run_cli([*argv, "--out", out, "--device", device, "--quiet"], capsys)
            assert code == 0, err
        cpu = json.loads((tmp_path / f"cpu-{len(model)}" / "x_instances.json").read_text())
        gpu = json.loads((tmp_path / f"cuda-{len(model)}" / "x_instances.json").read_text())
        assert len(cpu) == len(gpu)
        assert np.allclose([r["score"] for r in cpu], [r["score"] for r in gpu], atol=1e-3)


def test_prepare_encodes_the_vocabulary_before_the_first_image(tiny_sam3_dir, image, monkeypatch):
    seg = omniseg.load(f"sam3:{tiny_sam3_dir}")
    seg.source.shortlist = 4
    backend, calls = seg.source.backend, []
    real = backend.model.get_text_features
    monkeypatch.setattr(backend.model, "get_text_features", lambda **kw: calls.append(1) or real(**kw))
    for names in (["car", "sky"], [f"thing {i}" for i in range(300)]):
        vocabulary = seg.vocabulary(names)
        seg.source.prepare(vocabulary)
        prepared = len(calls)
        assert prepared > 0
        seg.segment(image, classes=vocabulary, threshold=0.0)
        seg.segment(image, classes=vocabulary, threshold=0.0)
        # nothing more for the small vocabulary; the shortlisted names' tokens, once, for the large one
        assert len(calls) - prepared == (0 if len(names) == 2 else 1)
        calls.clear()

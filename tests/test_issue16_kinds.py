"""Issue 16, items 2-4: the promptable, video, exemplar, Grounded-SAM and CLIPSeg model kinds wired
through the registry, the door, the commands and the existing evaluators, on tiny random models built
here (tiny_hf16). The evaluators' numbers on random weights mean nothing: these tests prove that each
kind reaches them and that they return finite numbers in range, in the right shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_hf
import tiny_hf16
from conftest import assert_one_line_error, run_cli
from omniseg import registry
from omniseg.backends.click_source import ClickSource
from omniseg.backends.clipseg import ClipSegDense
from omniseg.backends.grounded_sam import GroundedSam
from omniseg.backends.sam2 import ClickBackend
from omniseg.backends.sam2_video import VideoPropagator
from omniseg.backends.sam3_examples import Sam3Examples, instances_to_ids, part_boxes
from omniseg.backends.sam3_video import ConceptTracker
from omniseg.concepts import Instances
from omniseg.errors import InputError
from omniseg.eval.fewshot import evaluate_incontext
from omniseg.eval.interactive import evaluate_interactive
from omniseg.eval.video import evaluate_video, match_to_truth
from omniseg.tasks.interactive import Click
from omniseg.vocab import Vocabulary
from tiny_hf16 import scene, write_scenes

H, W = 40, 60
KINDS = ("sam2", "sam3_tracker", "sam2_video", "sam3_tracker_video", "sam3", "sam3_combined")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds16")
    with torch.random.fork_rng():
        built = {kind: getattr(tiny_hf16, f"make_{kind}")(root / kind) for kind in KINDS}
        built["gdino"] = tiny_hf16.make_grounding_dino(root / "gdino")
        built["clipseg"] = tiny_hf16.make_clipseg(root / "clipseg")
        built["sam"] = tiny_hf.make_sam(root / "sam")
    return built


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def uniform(tmp_path_factory) -> Path:
    """The uniform layout: 4 images, classes background / red / green (ids 0, 1, 2)."""
    return write_scenes(tmp_path_factory.mktemp("uniform16"), "", ["background", "red", "green"])


@pytest.fixture(scope="module")
def video_set(tmp_path_factory) -> Path:
    """The video layout: one sequence of 4 frames, objects 1 and 2 moving 2 px a frame."""
    return write_scenes(tmp_path_factory.mktemp("video16"), "seq")


def quiet_tracker(tracker: ConceptTracker) -> ConceptTracker:
    """Random weights score about 0.25: detect and keep everything, no hot-start delay (as test_sam3_video)."""
    tracker.model.score_threshold_detection = 0.0
    tracker.model.new_det_thresh = 0.0
    tracker.model.hotstart_delay = 0
    return tracker


# ------------------------------------------------------------------------------------- the registry
def test_kinds_and_roles_are_registered():
    roles = {name: kind.roles for name, kind in registry.KINDS.items()}
    for name in ("sam2", "sam3-tracker", "edgetam"):
        assert {"clicks", "video", "masks"} <= roles[name]
    assert {"examples", "concepts-video"} <= roles["sam3"]
    assert roles["grounding-dino"] == {"boxes"} and roles["clipseg"] == {"model"}


def test_register_merges_the_roles_of_several_blocks():
    def build(tag):
        return lambda path, context, role: (tag, role, path)

    try:
        registry.register(registry.ModelKind("demo16", frozenset({"model"}), build("a"), "first"))
        kind = registry.register(registry.ModelKind("demo16", frozenset({"examples"}), build("b"), "second"))
        assert kind.roles == {"model", "examples"}
        assert registry.build("demo16:X", "model") == ("a", "model", "X")
        assert registry.build("demo16:X", "examples") == ("b", "examples", "X")
        replaced = registry.register(registry.ModelKind("demo16", frozenset({"model", "examples"}), build("c"), "all"))
        assert replaced.roles == {"model", "examples"} and registry.build("demo16:X", "model")[0] == "c"
    finally:
        registry.KINDS.pop("demo16", None)


def test_load_builds_the_role_of_the_task(dirs):
    click = registry.load(f"sam2:{dirs['sam2']}")
    assert isinstance(click.source, ClickSource) and click.source.clicker.kind == "sam2"
    video = registry.load(f"sam2:{dirs['sam2_video']}", task="video")
    assert isinstance(video.source, VideoPropagator) and video.source.kind == "sam2_video"
    tracker_video = registry.load(f"sam3-tracker:{dirs['sam3_tracker_video']}", task="video")
    assert tracker_video.source.kind == "sam3_tracker_video"
    assert isinstance(registry.load(f"sam3:{dirs['sam3']}", task="incontext").source, Sam3Examples)
    assert isinstance(registry.load(f"sam3:{dirs['sam3_combined']}", task="track").source, ConceptTracker)
    assert isinstance(registry.load(f"clipseg:{dirs['clipseg']}").source, ClipSegDense)
    grounded = registry.load(boxes=f"grounding-dino:{dirs['gdino']}", masks=f"sam2:{dirs['sam2']}")
    assert isinstance(grounded.source, GroundedSam) and isinstance(grounded.source.masks, ClickBackend)
    # the kind names the family: a SAM 3 tracker checkpoint is not a sam2: model, a video one is no click model
    with pytest.raises(Exception, match="sam3_tracker"):
        registry.load(f"sam2:{dirs['sam3_tracker']}")
    with pytest.raises(Exception, match="sam2_video"):
        registry.load(f"sam2:{dirs['sam2_video']}", task="click")
    with pytest.raises(InputError, match="cannot incontext"):
        registry.load(f"sam2:{dirs['sam2']}", task="incontext")
    with pytest.raises(InputError, match="--masks"):
        registry.load(boxes=f"grounding-dino:{dirs['gdino']}")


def test_importing_the_registry_loads_no_transformers():
    """The new kinds' adapters import transformers inside their constructors (seconds; docs/ARCHITECTURE.md)."""
    code = "import sys, omniseg.registry; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------------------- clicks
@pytest.mark.parametrize("kind,key", [("sam2", "sam2"), ("sam3-tracker", "sam3_tracker")])
def test_click_door_reads_the_models_answers(dirs, kind, key, monkeypatch):
    image, ids = scene()
    segmenter = registry.load(f"{kind}:{dirs[key]}", task="click")
    source = segmenter.source
    encodes = []
    real = source.clicker.encode
    monkeypatch.setattr(source.clicker, "encode", lambda im: encodes.append(1) or real(im))
    regions = segmenter.prompt_regions(image, [Click(12, 10)])
    direct = ClickBackend(dirs[key]).predict(image, [(12.5, 10.5)], [1])
    assert torch.allclose(regions.masks, direct.logits.flatten(0, 1).sigmoid(), atol=1e-5)
    assert regions.masks.shape == (3, H, W) and regions.dim == 0
    result = segmenter.click(image.copy(), [(12, 10), (40, 30, False)])
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    assert len(encodes) == 1  # the same image, clicked again: encoded once
    with pytest.raises(InputError, match="masks only"):
        segmenter.click(image, [(12, 10)], classes=["red", "green"])
    with pytest.raises(InputError, match="no regions of its own"):
        segmenter.segment(image, ["red"])


def test_click_with_sam2_masks_and_native_embeddings_names_the_object(dirs):
    image, _ = scene()
    segmenter = registry.load(masks=f"sam2:{dirs['sam2']}")
    result = segmenter.click(image, [(12, 10)], classes=["red block", "green block"], threshold=0.0)
    assert result.label in ("red block", "green block") and result.mask.shape == (H, W)


@pytest.mark.parametrize("kind,key", [("sam2", "sam2"), ("sam3-tracker", "sam3_tracker")])
def test_cli_click_with_a_promptable_kind(dirs, kind, key, tmp_path, capsys):
    image = save(tmp_path / "scene.png", scene()[0])
    argv = ["click", image, "--point", "12,10", "--point", "40,30,0", "--box", "4,4,26,21"]
    code, _, err = run_cli([*argv, "--model", f"{kind}:{dirs[key]}", "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "scene.png") as mask:
        assert mask.size == (W, H)
    assert json.loads((tmp_path / "out" / "scene.json").read_text())["mask"]["height"] == H


def test_edgetam_without_timm_is_a_one_line_error(tmp_path, capsys):
    """transformers' EdgeTAM builds its backbone through timm, which is not installed here: the kind is
    registered and its checkpoint refused in one line saying what is missing (not faked)."""
    pytest.importorskip("safetensors")
    try:
        import timm  # noqa: F401

        pytest.skip("timm is installed: EdgeTAM can load here")
    except ImportError:
        pass
    from safetensors.torch import save_file

    directory = tmp_path / "edgetam"
    directory.mkdir()
    config = {
        "model_type": "edgetam",
        "vision_config": {"backbone_config": {"model_type": "timm_wrapper", "architecture": "repvit_m1"}},
    }
    (directory / "config.json").write_text(json.dumps(config))
    save_file({"weight": torch.zeros(1)}, str(directory / "model.safetensors"))
    image = save(tmp_path / "scene.png", scene()[0])
    code, _, err = run_cli(["click", image, "--point", "3,3", "--model", f"edgetam:{directory}"], capsys)
    assert_one_line_error(code, err)
    assert "timm" in err.lower()


def test_noc_evaluator_through_the_registered_click_kinds(dirs, uniform):
    for kind, key in (("sam2", "sam2"), ("sam3-tracker", "sam3_tracker")):
        report = evaluate_interactive(
            registry.load(f"{kind}:{dirs[key]}"), uniform, split="all", max_clicks=5, progress=False
        )
        assert report["objects"] == 4 * 3  # background, red and green per image (each >= 1% of it)
        for key_ in ("NoC@85", "NoC@90"):
            assert 1 <= report[key_] <= 5
        for key_ in ("mIoU@1", "mIoU@3", "mIoU@5", "failed@85", "failed@90"):
            assert 0 <= report[key_] <= 100 and np.isfinite(report[key_])
        assert report["model"] == f"{key} (clicks)"


# ------------------------------------------------------------------------------------------ video
def test_video_door_is_the_models_propagation(dirs):
    frames = [scene(2 * t)[0] for t in range(3)]
    first = scene()[1]
    segmenter = registry.load(f"sam2:{dirs['sam2_video']}", task="video")
    results = list(segmenter.video(frames, first))
    direct = list(VideoPropagator(dirs["sam2_video"]).propagate(frames, first))
    assert [r.frame for r in results] == [0, 1, 2]
    for result, expected in zip(results, direct, strict=True):
        np.testing.assert_array_equal(result.id_map, expected)
    with pytest.raises(InputError, match="exactly one"):
        list(segmenter.video(frames))


def test_jf_evaluator_through_the_registered_video_kinds(dirs, video_set):
    for kind, key in (("sam2", "sam2_video"), ("sam3-tracker", "sam3_tracker_video")):
        report = evaluate_video(registry.load(f"{kind}:{dirs[key]}", task="video"), video_set, progress=False)
        assert set(report["per_object"]) == {"seq_1", "seq_2"} and report["frames"] == 4
        for key_ in ("J&F", "J_mean", "F_mean"):
            assert 0 <= report[key_] <= 100 and np.isfinite(report[key_])


def test_concept_tracking_door_and_jf(dirs, video_set):
    segmenter = registry.load(f"sam3:{dirs['sam3_combined']}", task="track")
    quiet_tracker(segmenter.source)
    frames = [scene(2 * t)[0] for t in range(3)]
    results = list(segmenter.video(frames, classes="red, green"))
    assert len(results) == 3 and all(r.id_map.shape == (H, W) for r in results)
    found = {i for r in results for i in r.ids()}
    assert found and all(set(r.to_json()["labels"].values()) <= {"red", "green"} for r in results)
    assert set(results[0].to_json()["labels"]) == {str(i) for i in results[0].ids()}
    report = evaluate_video(segmenter, video_set, classes=["red", "green"], progress=False)
    assert set(report["per_object"]) == {"seq_1", "seq_2"} and 0 <= report["J&F"] <= 100
    assert report["config"] == {"classes": ["red", "green"]}
    with pytest.raises(InputError, match="does not track"):
        list(registry.load(f"sam2:{dirs['sam2_video']}", task="video").video(frames, classes=["red"]))


def test_match_to_truth_assigns_by_total_iou():
    gt = np.zeros((4, 4), np.uint8)
    gt[:, :2], gt[:, 2:] = 1, 2
    pred = np.where(gt == 1, 7, np.where(gt == 2, 9, 0))
    pred[0, 0] = 5  # a third object: unmatched, background
    (out,) = match_to_truth([pred], [gt])
    assert out[1, 0] == 1 and out[1, 3] == 2 and out[0, 0] == 0


def test_cli_video_first_mask_and_classes(dirs, video_set, tmp_path, capsys):
    frames = video_set / "images" / "seq"
    first = video_set / "masks" / "seq" / "000.png"
    code, _, err = run_cli(
        ["video", frames, "--first-mask", first, "--model", f"sam2:{dirs['sam2_video']}", "--out", tmp_path / "a"],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a").glob("*.json")) == [f"{t:03d}.json" for t in range(4)]
    code, _, err = run_cli(
        [
            "video",
            frames,
            "--classes",
            "red,green",
            "--model",
            f"sam3:{dirs['sam3_combined']}",
            "--out",
            tmp_path / "b",
        ],
        capsys,
    )
    assert code == 0, err
    answer = json.loads((tmp_path / "b" / "003.json").read_text())
    assert answer["frame"] == 3 and "labels" in answer
    code, _, err = run_cli(["video", frames, "--out", tmp_path / "c"], capsys)
    assert_one_line_error(code, err)
    code, _, err = run_cli(
        ["video", frames, "--classes", "red", "--model", f"sam2:{dirs['sam2_video']}", "--out", tmp_path / "d"],
        capsys,
    )
    assert_one_line_error(code, err)


# ---------------------------------------------------------------------------- exemplars (incontext)
def test_part_boxes_and_instances_to_ids():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:4] = True
    mask[5:9, 6:11] = True
    assert part_boxes(mask) == [(6.0, 5.0, 11.0, 9.0), (1.0, 1.0, 4.0, 3.0)]
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2], masks[1, 1:3], masks[2, 3] = True, True, True
    found = Instances(masks, torch.tensor([0.9, 0.5, 0.4]), torch.tensor([0, 1, 1]), torch.zeros(3, 4), (4, 4))
    category = instances_to_ids(found, [3, 8], "category")
    assert category[:, 0].tolist() == [3, 3, 8, 8]  # row 1: both cover it, the higher score (id 3) wins
    instance = instances_to_ids(found, [3, 8], "instance")
    assert instance[:, 0].tolist() == [3, 3, 8, 0]  # id 8 keeps its best instance only


def test_sam3_exemplars_from_other_images(dirs):
    example, ids = scene()
    target = scene(4)[0]
    segmenter = registry.load(f"sam3:{dirs['sam3']}", task="incontext")
    source = segmenter.source
    source.threshold = 0.0  # random weights: keep every query, so the id map is not empty
    (result,) = segmenter.incontext([(example, ids)], target)
    assert result.id_map.shape == (H, W) and set(result.ids()) <= {1, 2} and result.ids()
    # one prompt per id, its tokens those of SAM 3's box prompt on the EXAMPLE image
    prompts, owners, _ = source.prompts([(example, ids)])
    assert owners == [1, 2]
    encoding = source.backend.encode_image(example)
    expected = source.backend.box_prompt(encoding, part_boxes(ids == 2))
    assert torch.allclose(prompts[1].tokens, expected.tokens, atol=1e-5)
    with pytest.raises(InputError, match="mark nothing"):
        segmenter.incontext([(example, np.zeros_like(ids))], target)


def test_fewshot_evaluator_through_sam3_exemplars(dirs, uniform):
    segmenter = registry.load(f"sam3:{dirs['sam3']}", task="incontext")
    segmenter.source.threshold = 0.2
    report = evaluate_incontext(segmenter, uniform, shots=[1, 2], episodes=4, split="all", progress=False)
    assert set(report["by_shots"]) == {"1", "2"} and report["episodes"] == 4
    for one in report["by_shots"].values():
        assert 0 <= one["mIoU"] <= 100 and one["classes_evaluated"] >= 1
        assert all(0 <= v <= 100 for v in one["per_class_iou"].values())


def test_cli_incontext_with_sam3(dirs, tmp_path, capsys):
    example, ids = scene()
    e, m = save(tmp_path / "ex.png", example), save(tmp_path / "ex_ids.png", ids)
    target = save(tmp_path / "target.png", scene(4)[0])
    code, _, err = run_cli(
        ["incontext", "--example", e, m, target, "--model", f"sam3:{dirs['sam3']}", "--out", tmp_path / "out"], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "target.json").read_text())["height"] == H


# ----------------------------------------------------------------------------- Grounded-SAM, CLIPSeg
@pytest.mark.parametrize("masks", ["sam2", "sam"])
def test_grounded_sam_composed_source_refers(dirs, masks):
    image, _ = scene()
    segmenter = registry.load(boxes=f"grounding-dino:{dirs['gdino']}", masks=f"{masks}:{dirs[masks]}")
    segmenter.source.boxes.box_threshold = 0.0
    found = segmenter.source.segment(image, ["red block"], threshold=0.0)
    result = segmenter.refer(image, "red block", margin=1.0, max_regions=100)
    assert result.found and len(result.ranking) == len(found)
    np.testing.assert_array_equal(result.mask, found.masks.any(0).numpy())
    assert result.confidence == pytest.approx(float(found.scores.max()), abs=1e-6)


def test_clipseg_segments_are_its_dense_argmax(dirs):
    image, _ = scene()
    dense = ClipSegDense(dirs["clipseg"])
    names = ["red", "green", "noise"]
    found = dense.concepts(image, Vocabulary.from_names(names))
    label = dense.semantic(image, names, background=0.5)
    for mask, k in zip(found.masks, found.labels, strict=True):
        assert torch.equal(mask, label == k)
    assert set(found.labels.tolist()) == {int(v) for v in label.unique() if v >= 0}
    assert torch.all((found.scores > 0.5) & (found.scores <= 1))
    result = registry.load(f"clipseg:{dirs['clipseg']}").refer(image, "red")
    assert result.mask.shape == (H, W)


def test_cli_refer_with_grounded_sam_and_clipseg(dirs, tmp_path, capsys):
    image = save(tmp_path / "scene.png", scene()[0])
    grounded = ["--boxes", f"grounding-dino:{dirs['gdino']}", "--masks", f"sam2:{dirs['sam2']}"]
    for n, extra in enumerate((grounded, ["--model", f"clipseg:{dirs['clipseg']}"])):
        code, _, err = run_cli(["refer", image, "red block", *extra, "--out", tmp_path / str(n)], capsys)
        assert code == 0, err
        assert (tmp_path / str(n) / "scene.json").is_file()


# -------------------------------------------------------------------------------- offline, missing
CASES = [
    ("click", "sam2"),
    ("click", "sam3-tracker"),
    ("click", "edgetam"),
    ("video", "sam2"),
    ("track", "sam3"),
    ("incontext", "sam3"),
    ("refer-boxes", "grounding-dino"),
    ("refer", "clipseg"),
]


def _argv(command: str, spec: str, files: dict[str, Path], out: Path) -> list:
    if command == "click":
        return ["click", files["image"], "--point", "3,3", "--model", spec, "--out", out]
    if command == "video":
        return ["video", files["frames"], "--first-mask", files["first"], "--model", spec, "--out", out]
    if command == "track":
        return ["video", files["frames"], "--classes", "red", "--model", spec, "--out", out]
    if command == "incontext":
        return ["incontext", "--example", files["image"], files["first"], files["image"], "--model", spec, "--out", out]
    if command == "refer-boxes":
        return ["refer", files["image"], "red", "--boxes", spec, "--masks", "sam2:/no/such/sam2", "--out", out]
    return ["refer", files["image"], "red", "--model", spec, "--out", out]


@pytest.fixture()
def files(tmp_path):
    image, ids = scene()
    frames = tmp_path / "frames"
    save(frames / "000.png", image)
    save(frames / "001.png", image)
    return {"image": frames / "000.png", "first": save(tmp_path / "ids.png", ids), "frames": frames}


@pytest.mark.parametrize("command,kind", CASES)
@pytest.mark.parametrize("where", ["hub-offline", "missing", "partial"])
def test_offline_missing_or_partial_checkpoint_is_one_line_exit_2(
    command, kind, where, files, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    if where == "hub-offline":
        path = "facebook/some-checkpoint"
    elif where == "missing":
        path = str(tmp_path / "no-such-dir")
    else:
        partial = tmp_path / "partial"
        partial.mkdir()
        (partial / "config.json").write_text(json.dumps({"model_type": kind.replace("-", "_")}))
        path = str(partial)
    code, _, err = run_cli(_argv(command, f"{kind}:{path}", files, tmp_path / "out"), capsys)
    assert_one_line_error(code, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "spec,role",
    [
        ("sam2:{sam2}", "clicks"),
        ("sam2:{sam2_video}", "video"),
        ("sam3:{sam3}", "examples"),
        ("sam3:{sam3_combined}", "concepts-video"),
        ("grounding-dino:{gdino}", "boxes"),
        ("clipseg:{clipseg}", "model"),
    ],
)
def test_every_builder_places_its_model_on_the_context_device(dirs, spec, role):
    """BuildContext.device reaches each adapter (resolve_device): cpu here; an unknown one is one line."""
    built = registry.build(spec.format(**dirs), role, registry.BuildContext(device="cpu"))
    inner = getattr(built, "clicker", None) or getattr(built, "backend", None) or built
    assert next(inner.model.parameters()).device.type == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        registry.build(spec.format(**dirs), role, registry.BuildContext(device="banana"))


def test_eval_tracks_named_classes_from_the_cli(dirs, video_set, tmp_path, capsys):
    """`omniseg eval VIDEO --task video --classes a,b --model sam3:DIR`: J&F of concept tracking (no
    first mask), the names written into the report; --classes with another task is a one-line error."""
    out = tmp_path / "report.json"
    argv = ["eval", video_set, "--task", "video", "--classes", "red, green", "--model", f"sam3:{dirs['sam3_combined']}"]
    code, _, err = run_cli([*argv, "--json", out, "--quiet"], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["config"] == {"classes": ["red", "green"]} and 0 <= report["J&F"] <= 100
    code, _, err = run_cli(["eval", video_set, "--task", "semantic", "--classes", "red"], capsys)
    assert code == 2 and "--classes applies to --task video" in err and err.strip().count("\n") == 0

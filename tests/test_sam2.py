"""Clicks and video through SAM 2 (issue 16) on tiny random Sam2Model / Sam2VideoModel built here:
omniseg's torch pre/post-processing against transformers' own model calls and post-processing,
and the existing NoC and J&F evaluators run end to end on the outputs."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_hf16
from omniseg.backends.hub import IMAGENET_MEAN, IMAGENET_STD
from omniseg.backends.sam2 import ClickBackend
from omniseg.backends.sam2_video import VideoPropagator, ids_to_map
from omniseg.backends.sam3_processing import preprocess_image
from omniseg.errors import InputError, MissingResourceError, ModelLoadError
from omniseg.eval.interactive import next_click, noc
from omniseg.eval.video import score_sequence, summarize
from omniseg.tasks.interactive import Click
from transformers_reference import mask_iou, sam2_post_process_masks

KINDS = ("sam2", "sam3_tracker", "sam2_video", "sam3_tracker_video")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam2")
    with torch.random.fork_rng():
        return {kind: getattr(tiny_hf16, f"make_{kind}")(root / kind) for kind in KINDS}


@pytest.fixture(scope="module", params=["sam2", "sam3_tracker"])
def clicker(dirs, request):
    return ClickBackend(dirs[request.param])


@pytest.fixture(scope="module", params=["sam2_video", "sam3_tracker_video"])
def propagator(dirs, request):
    return VideoPropagator(dirs[request.param])


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(2)
    image = (rng.random((40, 60, 3)) * 60).astype(np.uint8)
    ids = np.zeros((40, 60), np.uint8)
    ids[5:20, 5:25] = 1
    ids[22:38, 30:55] = 2
    image[ids == 1] += np.array([180, 20, 20], np.uint8)
    image[ids == 2] += np.array([20, 180, 20], np.uint8)
    return image, ids


def test_preprocessing_uses_each_models_statistics(clicker, scene):
    """SAM 2: 64 px (its prompt encoder's frame) and ImageNet mean/std; SAM 3's tracker: 56 px and 0.5/0.5."""
    image = scene[0]
    size, mean, std = (64, IMAGENET_MEAN, IMAGENET_STD) if clicker.kind == "sam2" else (56, (0.5,) * 3, (0.5,) * 3)
    assert clicker.image_spec.size == (size, size)
    ours = preprocess_image(image, clicker.image_spec, torch.device("cpu"))
    pil = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    expected = torch.from_numpy((pil - np.array(mean)) / np.array(std)).permute(2, 0, 1)[None]
    assert float((ours - expected.float()).abs().max()) <= 2 / 255 / min(std) + 1e-5


@pytest.mark.parametrize(
    "points,labels,boxes",
    [
        ([(12.0, 10.0)], [1], []),
        ([(12.0, 10.0), (40.0, 30.0)], [1, 0], []),
        ([(12.0, 10.0)], [1], [(4.0, 4.0, 26.0, 21.0), (28.0, 20.0, 56.0, 39.0)]),
        ([], [], [(4.0, 4.0, 26.0, 21.0)]),
    ],
)
def test_clicks_and_boxes_equal_transformers(clicker, scene, points, labels, boxes):
    """The model on the same pixel_values with the processor's coordinate scaling (x S/60, y S/40 for an
    S px input), then Sam2ImageProcessor.post_process_masks (bilinear to the image, > 0; SAM 3's
    tracker processor calls the same method)."""
    image = scene[0]
    ours = clicker.predict(image, points, labels, boxes)
    groups = max(1, len(boxes))
    assert ours.masks.shape == (groups, 3, 40, 60) and ours.scores.shape == (groups, 3)
    pixels = preprocess_image(image, clicker.image_spec, torch.device("cpu"))
    side = clicker.image_spec.size[0]
    sx, sy = side / 60, side / 40
    kwargs = {}
    if points:
        kwargs["input_points"] = torch.tensor([[[[x * sx, y * sy] for x, y in points]] * groups])
        kwargs["input_labels"] = torch.tensor([[labels] * groups])
    if boxes:
        kwargs["input_boxes"] = torch.tensor([[[x0 * sx, y0 * sy, x1 * sx, y1 * sy] for x0, y0, x1, y1 in boxes]])
    with torch.inference_mode():
        out = clicker.model(pixel_values=pixels, multimask_output=True, **kwargs)
    (ref_masks,) = sam2_post_process_masks(list(out.pred_masks), [(40, 60)])
    assert torch.allclose(ours.scores, out.iou_scores[0], atol=1e-3)
    assert ref_masks.shape == ours.masks.shape
    for mine, theirs in zip(ours.masks.flatten(0, 1), ref_masks.flatten(0, 1), strict=True):
        assert mask_iou(mine, theirs) >= 0.99
    assert ours.masks.any() and not ours.masks.all()


def test_click_task_interface_and_errors(clicker, scene):
    image = scene[0]
    proposals = clicker.prompt(image, [Click(12, 10), Click(40, 30, positive=False)], [(4, 4, 26, 21)])
    assert proposals.masks.shape == (3, 40, 60) and proposals.scores.shape == (3,)
    assert float(proposals.masks.min()) >= 0 and float(proposals.masks.max()) <= 1
    with pytest.raises(InputError):
        clicker.predict(image)
    with pytest.raises(InputError):
        clicker.predict(image, [(1.0, 2.0)], [])


def test_noc_evaluator_runs_on_sam2_clicks(clicker, scene):
    """The NoC protocol of omniseg.eval.interactive (its next_click and noc) driving SAM 2: finite
    numbers (random weights: the values themselves mean nothing)."""
    image, ids = scene
    encoding = clicker.encode(image)
    valid = np.ones(ids.shape, bool)
    for obj in (1, 2):
        gt = ids == obj
        pred = np.zeros_like(gt)
        clicks: list[Click] = []
        ious = []
        for _ in range(5):
            click = next_click(pred, gt, valid)
            if click is None:
                break
            clicks.append(click)
            result = clicker.predict(
                encoding, [(c.x + 0.5, c.y + 0.5) for c in clicks], [int(c.positive) for c in clicks]
            )
            pred = result.masks[0, int(result.scores[0].argmax())].numpy()
            ious.append(float((pred & gt).sum() / max(1, (pred | gt).sum())))
        assert clicks[0].positive and gt[int(clicks[0].y), int(clicks[0].x)]  # the first click is inside the object
        assert len(ious) >= 1 and all(np.isfinite(ious))
        assert 1 <= noc(ious, 0.85, 5) <= 5


# ------------------------------------------------------------------------------------------ video
def reference_video(propagator: VideoPropagator, frames, first: np.ndarray) -> list[np.ndarray]:
    """transformers' own path: its inference session, its processor's process_new_mask_for_video_frame
    (called unbound; it reads only ``target_size``), propagate_in_video_iterator, post_process_masks."""
    import importlib

    kind = propagator.kind
    modeling = importlib.import_module(f"transformers.models.{kind}.modeling_{kind}")
    processing = importlib.import_module(f"transformers.models.{kind}.processing_{kind}")
    name = {"sam2_video": "Sam2Video", "sam3_tracker_video": "Sam3TrackerVideo"}[kind]
    video = torch.cat([preprocess_image(f, propagator.image_spec, torch.device("cpu")) for f in frames])
    session = getattr(modeling, f"{name}InferenceSession")(
        video=video, video_height=40, video_width=60, dtype=torch.float32
    )
    ids = [int(v) for v in np.unique(first) if v]
    getattr(processing, f"{name}Processor").process_new_mask_for_video_frame(
        types.SimpleNamespace(target_size=propagator.image_spec.size[0]),
        session,
        0,
        ids,
        [torch.from_numpy(first == i) for i in ids],
    )
    maps = []
    with torch.inference_mode():
        for out in propagator.model.propagate_in_video_iterator(session, start_frame_idx=0):
            (logits,) = sam2_post_process_masks([out.pred_masks], [(40, 60)], binarize=False)
            best, index = logits[:, 0].max(0)
            maps.append(np.where(best.numpy() > 0, np.array(out.object_ids)[index.numpy()], 0))
    return maps


def test_video_propagation_equals_transformers(propagator, scene):
    image, ids = scene
    frames = [np.roll(image, 2 * i, axis=1) for i in range(4)]
    ours = list(propagator.propagate(frames, ids))
    ref = reference_video(propagator, frames, ids)
    assert len(ours) == len(ref) == 4
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == (40, 60)
        for obj in (1, 2):
            assert mask_iou(torch.from_numpy(a == obj), torch.from_numpy(b == obj)) >= 0.99
    assert mask_iou(torch.from_numpy(ours[0] == 1), torch.from_numpy(ids == 1)) > 0.9  # frame 0 is the prompt
    # the J&F evaluator of omniseg.eval.video on the result (ground truth: the objects moving with the frames)
    gts = [np.roll(ids, 2 * i, axis=1) for i in range(4)]
    report = summarize({f"seq/{k}": v for k, v in score_sequence(ours, gts).items()})
    assert np.isfinite(report["J&F"]) and 0 <= report["J&F"] <= 100 and set(report["per_object"]) == {"seq/1", "seq/2"}


def test_ids_to_map_gives_overlaps_to_the_highest_logit():
    logits = torch.tensor([[[1.0, -1.0], [2.0, 0.5]], [[0.5, -2.0], [3.0, -1.0]]])
    assert ids_to_map(logits, [4, 9]).tolist() == [[4, 0], [9, 4]]


def test_video_errors(dirs, scene, tmp_path, monkeypatch):
    image, ids = scene
    propagator = VideoPropagator(dirs["sam2_video"])
    with pytest.raises(InputError, match="no object"):
        list(propagator.propagate([image], np.zeros_like(ids)))
    with pytest.raises(InputError, match="same size"):
        list(propagator.propagate([image, image[:-2]], ids))
    with pytest.raises(InputError):
        list(propagator.propagate([image], ids[:-1]))
    with pytest.raises(ModelLoadError, match="sam2_video"):
        ClickBackend(dirs["sam2_video"])  # a video checkpoint is not a click model
    with pytest.raises(InputError, match="unknown device"):
        VideoPropagator(dirs["sam2_video"], device="nonsense:0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(MissingResourceError, match="facebook/sam2.1-hiera-tiny"):
        ClickBackend("facebook/sam2.1-hiera-tiny")

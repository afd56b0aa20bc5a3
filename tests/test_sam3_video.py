"""SAM 3 concept tracking in video (issue 16, ``video --classes``) on a tiny random Sam3VideoModel (the
combined detector + tracker checkpoint of facebook/sam3's layout), against transformers' own session
set-up (``add_text_prompt``) and post-processing (``postprocess_outputs``)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import tiny_hf16
from omniseg.backends.sam3_processing import preprocess_image
from omniseg.backends.sam3_video import ConceptTracker, keep_best_per_pixel
from omniseg.errors import InputError
from omniseg.eval.video import score_sequence, summarize

NAMES = ["car", "sky"]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    with torch.random.fork_rng():
        directory = tiny_hf16.make_sam3_combined(tmp_path_factory.mktemp("sam3video") / "tiny")
    tracker = ConceptTracker(directory)
    # random weights score about 0.25: detect and keep everything, no hot-start delay
    tracker.model.score_threshold_detection = 0.0
    tracker.model.new_det_thresh = 0.0
    tracker.model.hotstart_delay = 0
    return tracker


@pytest.fixture(scope="module")
def frames():
    image = (np.random.default_rng(6).random((40, 60, 3)) * 255).astype(np.uint8)
    return [np.roll(image, 2 * i, axis=1) for i in range(3)]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """torchvision.ops.masks_to_boxes (the processor's boxes; not compared here)."""
    boxes = torch.zeros(len(masks), 4)
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
    return boxes


def reference_frames(tracker: ConceptTracker, frames, monkeypatch) -> list[dict]:
    """transformers: Sam3VideoInferenceSession on the same pixel values, the processor's add_text_prompt
    and postprocess_outputs (called unbound: they read the tokenizer and the processor's own methods)."""
    import importlib

    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

    # the module itself (its package's lazy attribute is a placeholder when torchvision is missing)
    processing = importlib.import_module("transformers.models.sam3_video.processing_sam3_video")

    monkeypatch.setattr(processing, "masks_to_boxes", masks_to_boxes, raising=False)
    cls = processing.Sam3VideoProcessor
    fake = types.SimpleNamespace(tokenizer=tracker.tokenizer)
    for method in (
        "_apply_non_overlapping_constraints",
        "_apply_object_wise_non_overlapping_constraints",
        "_apply_object_wise_non_overlapping_constraints_impl",
    ):
        setattr(fake, method, types.MethodType(getattr(cls, method), fake))
    video = torch.cat([preprocess_image(f, tracker.image_spec, torch.device("cpu")) for f in frames])
    session = Sam3VideoInferenceSession(video=video, video_height=40, video_width=60, dtype=torch.float32)
    cls.add_text_prompt(fake, session, NAMES)
    with torch.inference_mode():
        return [
            cls.postprocess_outputs(fake, session, out) for out in tracker.model.propagate_in_video_iterator(session)
        ]


def test_tracked_objects_equal_transformers(tracker, frames, monkeypatch):
    ours = list(tracker.track(frames, NAMES))
    ref = reference_frames(tracker, frames, monkeypatch)
    assert len(ours) == len(ref) == 3
    seen = 0
    for mine, theirs in zip(ours, ref, strict=True):
        assert mine.object_ids.tolist() == theirs["object_ids"].tolist()
        assert torch.allclose(mine.scores, theirs["scores"].float(), atol=1e-4)
        assert torch.equal(mine.masks, theirs["masks"].cpu())
        by_name = {
            name: [
                i for i, lab in zip(mine.object_ids.tolist(), mine.labels.tolist(), strict=True) if NAMES[lab] == name
            ]
            for name in NAMES
        }
        assert {k: v for k, v in by_name.items() if v} == theirs["prompt_to_obj_ids"]
        seen += len(mine.object_ids)
        assert mine.id_map().shape == (40, 60) and set(np.unique(mine.label_map())) <= {0, 1, 2}
    assert seen > 0
    # the J&F evaluator runs on the tracked label maps (random weights: the value means nothing)
    gts = [np.roll(np.where(np.arange(60) < 30, 1, 2)[None].repeat(40, 0), 2 * i, axis=1) for i in range(3)]
    report = summarize({f"s/{k}": v for k, v in score_sequence([f.label_map() for f in ours], gts).items()})
    assert np.isfinite(report["J&F"])


def test_keep_best_per_pixel():
    masks = torch.tensor([[[1, 1, 0]], [[0, 1, 1]]], dtype=torch.bool)
    kept = keep_best_per_pixel(masks, torch.tensor([0.2, 0.9]))
    assert kept.tolist() == [[[True, False, False]], [[False, True, True]]]


def test_errors(tracker, frames):
    with pytest.raises(InputError):
        list(tracker.track(frames, []))
    with pytest.raises(InputError, match="same size"):
        list(tracker.track([frames[0], frames[1][:-1]], NAMES))

"""Grounded-SAM (Grounding DINO boxes -> SAM 2 / SAM masks) and CLIPSeg dense maps (issue 16) on tiny
random models built here, against transformers' own processors, models and post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_hf
import tiny_hf16
from omniseg.backends.clipseg import ClipSegDense
from omniseg.backends.grounded_sam import GroundedSam, GroundingDinoBoxes, merged_text
from omniseg.backends.sam import SamBackend
from omniseg.backends.sam2 import ClickBackend
from omniseg.backends.sam3_processing import preprocess_image
from omniseg.errors import InputError, MissingResourceError
from transformers_reference import mask_iou, sam2_post_process_masks

NAMES = ["car", "sky", "red car", "road"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("grounded")
    with torch.random.fork_rng():
        return {
            "gdino": tiny_hf16.make_grounding_dino(root / "gdino"),
            "sam2": tiny_hf16.make_sam2(root / "sam2"),
            "sam": tiny_hf.make_sam(root / "sam"),
            "clipseg": tiny_hf16.make_clipseg(root / "clipseg"),
        }


@pytest.fixture(scope="module")
def gdino(dirs):
    return GroundingDinoBoxes(dirs["gdino"])


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(4).random((40, 60, 3)) * 255).astype(np.uint8)


def reference_detection(gdino: GroundingDinoBoxes, image: np.ndarray, names: list[str], threshold: float):
    """transformers: the processor merges the names, the model, post_process_grounded_object_detection;
    and the per-query token probabilities (to check the classes)."""
    inputs = gdino.processor(images=image, text=[n.lower() for n in names], return_tensors="pt")
    with torch.inference_mode():
        out = gdino.model(**inputs)
    (result,) = gdino.processor.post_process_grounded_object_detection(
        out, inputs.input_ids, threshold=threshold, text_threshold=threshold, target_sizes=[image.shape[:2]]
    )
    return result, out.logits[0].sigmoid(), inputs.input_ids[0]


def test_grounding_boxes_equal_transformers(gdino, image):
    scores = reference_detection(gdino, image, NAMES, 0.0)[0]["scores"]
    threshold = float(scores.median())  # keeps about half
    ref, probs, input_ids = reference_detection(gdino, image, NAMES, threshold)
    ours = gdino.detect(image, NAMES, threshold=threshold)
    assert 0 < len(ours) < len(scores)
    assert torch.allclose(ours.scores, ref["scores"], atol=1e-4)
    assert torch.allclose(ours.boxes, ref["boxes"], atol=1e-3)
    # classes: the character tokenizer gives one token per character after [BOS]: name c owns the tokens of
    # its characters in the merged text; the class is the name with the highest token probability
    text, spans = merged_text(NAMES)
    assert input_ids.shape[0] == len(text) + 2
    keep = probs.max(-1).values > threshold
    per_name = torch.stack([probs[keep, 1 + s : 1 + e].max(-1).values for s, e in spans], -1)
    assert torch.equal(ours.labels, per_name.argmax(-1))


def test_grounding_splits_long_vocabularies(gdino, image):
    names = [f"object {chr(97 + i)} thing" for i in range(12)]  # 12 x 16 characters > 64 tokens
    chunks = gdino._chunks(names)
    assert len(chunks) > 1 and sorted(i for c in chunks for i in c) == list(range(12))
    found = gdino.detect(image, names, threshold=0.0)
    assert len(found) == 10 * len(chunks)  # every query of every pass at threshold 0
    assert set(found.labels.tolist()) <= set(range(12)) and max(found.labels.tolist()) >= chunks[1][0]
    with pytest.raises(InputError, match="'.'"):
        gdino.detect(image, ["a.b"])
    with pytest.raises(InputError):
        gdino.detect(image, [])


def test_grounded_sam2_masks_are_sam2_answers_to_the_boxes(gdino, dirs, image):
    clicker = ClickBackend(dirs["sam2"])
    grounded = GroundedSam(gdino, clicker)
    threshold = float(reference_detection(gdino, image, NAMES, 0.0)[0]["scores"].median())
    ref, _, _ = reference_detection(gdino, image, NAMES, threshold)
    found = grounded.segment(image, NAMES, threshold=threshold)
    assert len(found) == len(ref["scores"]) and found.masks.shape == (len(found), 40, 60)
    pixels = preprocess_image(image, clicker.image_spec, torch.device("cpu"))
    scale = torch.tensor([64 / 60, 64 / 40, 64 / 60, 64 / 40])
    with torch.inference_mode():
        out = clicker.model(pixel_values=pixels, input_boxes=(ref["boxes"] * scale)[None], multimask_output=False)
    (masks,) = sam2_post_process_masks(list(out.pred_masks), [(40, 60)])
    for mine, theirs in zip(found.masks, masks[:, 0], strict=True):
        assert mask_iou(mine, theirs) >= 0.99
    assert grounded.name == "grounding-dino+sam2"


def test_grounded_sam_with_sam1(gdino, dirs, image):
    grounded = GroundedSam(gdino, SamBackend(dirs["sam"]))
    found = grounded.segment(image, NAMES, threshold=0.0)
    assert len(found) == 10 and found.masks.shape == (10, 40, 60) and found.masks.dtype == torch.bool
    assert grounded.segment(image, NAMES, threshold=1.0).masks.shape == (0, 40, 60)  # nothing above 1


# ------------------------------------------------------------------------------------------ CLIPSeg
def test_clipseg_logits_equal_transformers(dirs, image):
    """One vision pass broadcast over the names == transformers' forward with the image repeated per name."""
    dense = ClipSegDense(dirs["clipseg"])
    inputs = dense.processor(text=NAMES, images=[image] * len(NAMES), padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = dense.model(**inputs).logits
    ours = dense.low_res_logits(image, NAMES)
    assert ours.shape == ref.shape == (4, 32, 32)
    assert torch.allclose(ours, ref, atol=1e-4)
    full = dense.logits(image, NAMES)
    assert full.shape == (4, 40, 60)
    resized = torch.nn.functional.interpolate(ref[None], size=(40, 60), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(full, resized, atol=1e-4)
    labels = dense.semantic(image, NAMES)
    assert torch.equal(labels, resized.argmax(0))
    background = dense.semantic(image, NAMES, background=0.999)
    assert set(background.unique().tolist()) <= {-1, 0, 1, 2, 3} and (background == -1).any()


def test_clipseg_text_cache_and_errors(dirs, image, tmp_path, monkeypatch):
    dense = ClipSegDense(dirs["clipseg"])
    calls = []
    real = dense.model.clip.get_text_features
    monkeypatch.setattr(dense.model.clip, "get_text_features", lambda **k: calls.append(1) or real(**k))
    a = dense.low_res_logits(image, NAMES)
    b = dense.low_res_logits(image, NAMES[::-1])
    assert len(calls) == 1 and torch.allclose(a, b.flip(0), atol=1e-5)
    with pytest.raises(InputError):
        dense.logits(image, [])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(MissingResourceError, match="CIDAS/clipseg-rd64-refined"):
        ClipSegDense("CIDAS/clipseg-rd64-refined")
    with pytest.raises(MissingResourceError, match="IDEA-Research/grounding-dino-tiny"):
        GroundingDinoBoxes("IDEA-Research/grounding-dino-tiny")

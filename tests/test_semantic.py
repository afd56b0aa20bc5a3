"""Semantic segmentation from Regions (seeds/003 eq. 6) on hand-made regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omniseg.regions import Regions
from omniseg.tasks.semantic import (
    CONFIDENCE_SCALE,
    region_class_similarity,
    semantic_logits,
    semantic_segmentation,
)

# Two regions on a 1x3 image, embeddings e_x and e_y.
MASKS = torch.tensor([[[0.9, 0.6, 0.2]], [[0.1, 0.3, 0.8]]])
REGIONS = Regions(
    masks=MASKS, embeddings=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), scores=torch.ones(2), image_size=(1, 3)
)
# Class A: one prompt e_x. Class B: two prompts, e_y and (0.6, 0.8).
PROMPTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
OWNER = torch.tensor([0, 1, 1])
# <w,z>: A -> (1, 0); B -> prompt 1 (0, 1), prompt 2 (0.6, 0.8); max over B's prompts -> (0.6, 1).
# Unnormalised eq. 6, y = sum_i <w,z_i> s_i:
#   A = s_0                = (0.9, 0.6, 0.2)
#   B = 0.6 s_0 + 1.0 s_1  = (0.64, 0.66, 0.92)
# Mask mass sum_i s_i = (1.0, 0.9, 1.0), so normalised A = (0.9, 0.6667, 0.2), B = (0.64, 0.7333, 0.92).
# argmax: (A, B, B). Pixel 1 goes to B only through the max over B's prompts: with B's first
# prompt alone B = s_1 = 0.3 < 0.6, with the mean over its prompts B = 0.3 s_0 + 0.9 s_1 = 0.45 < 0.6.
EXPECTED_LABEL = [0, 1, 1]
EXPECTED_SCORE = [0.9, 0.66 / 0.9, 0.92]
# Without reference concepts the confidence is sigmoid(score / CONFIDENCE_SCALE).
EXPECTED_CONFIDENCE = 1 / (1 + np.exp(-np.asarray(EXPECTED_SCORE) / CONFIDENCE_SCALE))


def test_region_class_similarity_max_over_prompts():
    sim = region_class_similarity(REGIONS, PROMPTS, OWNER, 2)
    np.testing.assert_allclose(sim.numpy(), [[1.0, 0.0], [0.6, 1.0]], rtol=1e-6)


def test_semantic_logits_by_hand():
    y = semantic_logits(MASKS, torch.tensor([[1.0, 0.0], [0.6, 1.0]]))
    assert y.shape == (2, 1, 3)
    np.testing.assert_allclose(y[:, 0].numpy(), [[0.9, 0.6 / 0.9, 0.2], [0.64, 0.66 / 0.9, 0.92]], rtol=1e-6)


def test_semantic_segmentation_by_hand():
    label, confidence = semantic_segmentation(REGIONS, PROMPTS, OWNER, 2)
    assert label.shape == (1, 3) and label.dtype == torch.int64
    assert label[0].tolist() == EXPECTED_LABEL
    np.testing.assert_allclose(confidence[0].numpy(), EXPECTED_CONFIDENCE, rtol=1e-5)


# "Unknown": region 1 is (0, 0.6, 0.8), closer to a known concept C = e_z than to the asked class B = e_y.
# Asked A = e_x, B = e_y. y_A = (0.9, 0.6/0.9, 0.2), y_B = 0.6 s_1 / mass = (0.06, 0.2, 0.48): argmax (A, A, B).
# y_ref = 0.8 s_1 / mass = (0.08, 0.2667, 0.64), so pixel 2's margin is 0.48 - 0.64 = -0.16: confidence 0.04.
UNKNOWN_REGIONS = Regions(
    masks=MASKS, embeddings=torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]), scores=torch.ones(2), image_size=(1, 3)
)
EYE3 = torch.eye(3)


def test_confidence_is_the_margin_over_the_best_other_known_concept():
    label, confidence = semantic_segmentation(UNKNOWN_REGIONS, EYE3[:2], torch.tensor([0, 1]), 2, reference=EYE3[2:])
    assert label[0].tolist() == [0, 0, 1]
    margins = np.array([0.9 - 0.08, 0.6 / 0.9 - 0.24 / 0.9, 0.48 - 0.64])
    np.testing.assert_allclose(confidence[0].numpy(), 1 / (1 + np.exp(-margins / CONFIDENCE_SCALE)), rtol=1e-4)


def test_threshold_leaves_pixels_another_concept_explains_better_unlabeled():
    label, _ = semantic_segmentation(
        UNKNOWN_REGIONS, EYE3[:2], torch.tensor([0, 1]), 2, threshold=0.5, reference=EYE3[2:]
    )
    assert label[0].tolist() == [0, 0, -1]
    # Asked for C itself, the reference concept is the answer, not an alternative: nothing unknown.
    label, _ = semantic_segmentation(
        UNKNOWN_REGIONS, EYE3, torch.tensor([0, 1, 2]), 3, threshold=0.5, reference=EYE3[2:]
    )
    assert label[0].tolist() == [0, 0, 2]
    label, _ = semantic_segmentation(REGIONS, PROMPTS, OWNER, 2, threshold=1.01)
    assert (label == -1).all()


def test_normalisation_by_mask_mass_does_not_change_argmax():
    rng = np.random.default_rng(0)
    masks = rng.uniform(0.0, 1.0, size=(7, 5, 6))
    class_sim = rng.uniform(-1.0, 1.0, size=(4, 7))
    # Independent eq. 6 without normalisation: y[k,h,w] = sum_i c[k,i] s_i(h,w)
    raw = np.einsum("ki,ihw->khw", class_sim, masks)
    y = semantic_logits(torch.from_numpy(masks), torch.from_numpy(class_sim)).numpy()
    np.testing.assert_array_equal(y.argmax(0), raw.argmax(0))
    np.testing.assert_allclose(y, raw / masks.sum(0, keepdims=True), rtol=1e-10)


def test_output_is_upsampled_to_image_size():
    # Region 0 covers the left half of a 4x4 mask grid, region 1 the right half.
    masks = torch.zeros(2, 4, 4)
    masks[0, :, :2] = 1.0
    masks[1, :, 2:] = 1.0
    regions = Regions(masks=masks, embeddings=torch.eye(2), scores=torch.ones(2), image_size=(8, 8))
    prompts, owner = torch.eye(2), torch.tensor([0, 1])  # class k <-> region k
    # Bilinear (align_corners=False) x2: output column j samples source x = (j + 0.5)/2 - 0.5, so
    # columns 0..3 lie at x <= 1.25 (nearer source columns 0..1, region 0) and 4..7 at x >= 1.75.
    label, _ = semantic_segmentation(regions, prompts, owner, 2)
    assert label.shape == (8, 8)
    expected = np.zeros((8, 8), np.int64)
    expected[:, 4:] = 1
    np.testing.assert_array_equal(label.numpy(), expected)
    # An explicit out_size wins over image_size.
    label, score = semantic_segmentation(regions, prompts, owner, 2, out_size=(12, 16))
    assert label.shape == (12, 16) and score.shape == (12, 16)
    assert (label[:, :8] == 0).all() and (label[:, 8:] == 1).all()


def test_regions_must_agree_on_n():
    with pytest.raises(ValueError):
        Regions(masks=torch.zeros(2, 4, 4), embeddings=torch.zeros(3, 8), scores=torch.zeros(2), image_size=(4, 4))
    r = Regions(masks=torch.zeros(2, 4, 4), embeddings=torch.zeros(2, 8), scores=torch.zeros(2), image_size=(4, 4))
    assert len(r) == 2 and r.dim == 8


def test_upsampled_max_in_class_chunks_equals_all_at_once(monkeypatch):
    from omniseg.tasks import semantic

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 20, 30, generator=gen)
    logits[5] = logits[30]  # a tie across chunks goes to the lower class index, as torch.max does
    ref = F.interpolate(logits[None], size=(97, 131), mode="bilinear", align_corners=False)[0].max(0)
    monkeypatch.setattr(semantic, "UPSAMPLE_BUDGET", 97 * 131 * 4)  # 4 classes at a time
    score, label = semantic.upsampled_max(logits, (97, 131))
    assert torch.equal(score, ref[0]) and torch.equal(label, ref[1])

"""ConfusionMatrix on hand-computed examples (detectron2 averaging rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omniseg.eval.metrics import ConfusionMatrix


def test_hand_computed_example_with_ignore_and_unlabeled():
    gt = np.array([[0, 0, 0, 1], [1, 1, 255, 255]], np.uint8)
    pred = np.array([[0, 0, 1, 1], [1, 255, 0, 2]], np.int64)
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # Pixels with gt 255 do not count (their predictions 0 and 2 are dropped).
    # gt 0: preds 0,0,1 -> tp 2, 3 gt pixels.  gt 1: preds 1,1,255 -> tp 2, 3 gt pixels, 1 unlabeled.
    # predicted as 0: 2 pixels; as 1: 1 (from gt 0) + 2 = 3; as 2: 0.
    # IoU_0 = 2 / (3 + 2 - 2) = 2/3;  IoU_1 = 2 / (3 + 3 - 2) = 1/2;  class 2 has no GT -> excluded.
    # Acc_0 = 2/3, Acc_1 = 2/3;  pixel acc = 4/6.
    s = cm.scores()
    assert s["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2 * 100)
    assert s["mAcc"] == pytest.approx(2 / 3 * 100)
    assert s["pixel_acc"] == pytest.approx(4 / 6 * 100)
    np.testing.assert_allclose(s["iou"][:2], [2 / 3, 1 / 2])
    assert math.isnan(s["iou"][2]) and math.isnan(s["acc"][2])
    assert cm.matrix[1, 3] == 1  # the "unlabeled" column
    assert cm.matrix.sum() == 6


@pytest.mark.parametrize("unlabeled", [-1, 255])
def test_unlabeled_prediction_counts_as_wrong(unlabeled):
    cm = ConfusionMatrix(2)
    cm.update(np.array([unlabeled, 0, 1, 1]), np.array([0, 0, 1, 1]))
    # gt 0: tp 1 of 2, predicted-as-0 = 1 -> IoU_0 = 1/(2+1-1) = 1/2; IoU_1 = 2/(2+2-2) = 1
    s = cm.scores()
    np.testing.assert_allclose(s["iou"], [0.5, 1.0])
    np.testing.assert_allclose(s["acc"], [0.5, 1.0])
    assert s["pixel_acc"] == pytest.approx(75.0)


def test_class_predicted_but_absent_from_gt_is_excluded_from_miou():
    cm = ConfusionMatrix(3)
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])
    cm.update(pred, gt)
    # IoU_0 = 1/(2+1-1) = 1/2 (its false negative went to class 2), IoU_1 = 2/2 = 1.
    # Class 2 is predicted once but has no GT: detectron2 leaves it out -> mIoU = 75
    # (mmseg-style counting it as IoU 0 would give 50).
    s = cm.scores()
    present = [c for c in range(3) if (gt == c).any()]
    assert s["mIoU"] == pytest.approx(np.mean([s["iou"][c] for c in present]) * 100)
    assert s["mIoU"] == pytest.approx(75.0)
    assert math.isnan(s["iou"][2])


def test_updates_accumulate_and_match_numpy_reference():
    rng = np.random.default_rng(0)
    k = 4
    cm = ConfusionMatrix(k)
    gts, preds = [], []
    for _ in range(3):
        gt = rng.integers(0, k, size=(5, 7))
        gt[rng.random(gt.shape) < 0.2] = 255
        pred = rng.integers(-1, k, size=(5, 7))
        cm.update(pred, gt)
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    gt, pred = np.concatenate(gts), np.concatenate(preds)
    keep = gt != 255
    gt, pred = gt[keep], pred[keep]
    ious = []
    for c in range(k):
        if (gt == c).any():
            inter = np.sum((gt == c) & (pred == c))
            union = np.sum((gt == c) | (pred == c))
            ious.append(inter / union)
    assert cm.scores()["mIoU"] == pytest.approx(np.mean(ious) * 100)
    assert cm.scores()["pixel_acc"] == pytest.approx(np.mean(gt == pred) * 100)


def test_shape_mismatch_and_empty():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    s = cm.scores()
    assert math.isnan(s["mIoU"]) and math.isnan(s["pixel_acc"])
    cm.update(np.zeros((2, 2)), np.full((2, 2), 255))  # only ignore pixels: still nothing counted
    assert cm.matrix.sum() == 0

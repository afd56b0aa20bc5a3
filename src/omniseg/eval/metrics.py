"""Semantic segmentation metrics from a confusion matrix.

Averaging rule (detectron2's SemSegEvaluator): a class enters mIoU and mAcc only if it has
ground-truth pixels in the evaluated set. mmseg instead reports NaN for absent classes and,
with predictions of absent classes, counts their IoU as 0; we follow detectron2 and say so in
the JSON ("averaging": "detectron2").
"""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # rows = ground truth, columns = prediction; the extra column counts "unlabeled" predictions
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: class ids, anything outside [0, K) counts as unlabeled; gt: ids, ignore_index skipped."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        gt = gt.astype(np.int64).ravel()
        pred = pred.astype(np.int64).ravel()
        keep = (gt != self.ignore_index) & (gt >= 0) & (gt < self.num_classes)
        gt, pred = gt[keep], pred[keep]
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        k = self.num_classes + 1
        self.matrix += np.bincount(gt * k + pred, minlength=self.num_classes * k).reshape(self.num_classes, k)

    def scores(self) -> dict:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m[:, : self.num_classes])
        gt_pixels = m.sum(1)
        pred_pixels = m[:, : self.num_classes].sum(0)
        union = gt_pixels + pred_pixels - tp
        present = gt_pixels > 0
        iou = np.full(self.num_classes, np.nan)
        acc = np.full(self.num_classes, np.nan)
        iou[present] = tp[present] / union[present]
        acc[present] = tp[present] / gt_pixels[present]
        total = gt_pixels.sum()
        return {
            "mIoU": float(np.nanmean(iou) * 100) if present.any() else float("nan"),
            "mAcc": float(np.nanmean(acc) * 100) if present.any() else float("nan"),
            "pixel_acc": float(tp.sum() / total * 100) if total else float("nan"),
            "iou": iou,
            "acc": acc,
        }

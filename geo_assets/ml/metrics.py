"""Segmentation metrics from an accumulable confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geo_assets.geo.landcover import IGNORE


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(K,K) int64 counts, rows = truth, cols = pred. Pixels where either side is `ignore` are skipped.

    Sum matrices from several tiles to get dataset-level scores.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    keep = (truth != ignore) & (pred != ignore)
    t = truth[keep].astype(np.int64, copy=False)
    p = pred[keep].astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"values outside [0, {num_classes}) found (other than ignore={ignore})")
    # One bincount over flattened (truth, pred) pairs: O(n) and far faster than np.add.at.
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU/F1/support plus means. Classes absent from both truth and prediction get
    iou/f1 None and are left out of the means (they carry no evidence either way)."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {len(class_names)} class names")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class: dict[str, dict[str, Any]] = {}
    ious: list[float] = []
    f1s: list[float] = []
    for k, name in enumerate(class_names):
        fp, fn = int(predicted[k] - tp[k]), int(support[k] - tp[k])
        if support[k] == 0 and predicted[k] == 0:
            iou = f1 = None
        else:
            iou = float(tp[k] / (tp[k] + fp + fn))
            f1 = float(2 * tp[k] / (2 * tp[k] + fp + fn))
            ious.append(iou)
            f1s.append(f1)
        per_class[name] = {"iou": iou, "f1": f1, "support": int(support[k])}
    total = int(cm.sum())
    return {
        "per_class": per_class,
        "miou": float(np.mean(ious)) if ious else None,
        "mean_f1": float(np.mean(f1s)) if f1s else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
    }

import numpy as np
import pytest

from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.metrics import confusion_matrix, scores

NAMES = ["a", "b", "c", "d"]
# Hand-worked example; the last pixel is unlabelled and must not count.
TRUTH = np.array([0, 0, 1, 1, 2, IGNORE], dtype=np.uint8)
PRED = np.array([0, 1, 1, 1, 0, 2], dtype=np.uint8)


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(PRED, TRUTH, 4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_scores_hand_computed():
    s = scores(confusion_matrix(PRED, TRUTH, 4), NAMES)
    pc = s["per_class"]
    assert pc["a"] == {"iou": pytest.approx(1 / 3), "f1": pytest.approx(0.5), "support": 2}
    assert pc["b"] == {"iou": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 2}
    assert pc["c"] == {"iou": 0.0, "f1": 0.0, "support": 1}
    # Never seen nor predicted: reported as None and excluded from the means.
    assert pc["d"] == {"iou": None, "f1": None, "support": 0}
    assert s["miou"] == pytest.approx(1 / 3)
    assert s["mean_f1"] == pytest.approx(1.3 / 3)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)


def test_predicted_but_absent_class_counts_in_means():
    truth = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 1])
    s = scores(confusion_matrix(pred, truth, 2), ["x", "y"])
    assert s["per_class"]["y"] == {"iou": 0.0, "f1": 0.0, "support": 0}
    assert s["miou"] == pytest.approx((3 / 4 + 0.0) / 2)


def test_ignored_prediction_pixels_are_skipped():
    truth = np.array([0, 1, 1])
    pred = np.array([0, IGNORE, 1])
    np.testing.assert_array_equal(confusion_matrix(pred, truth, 2), [[1, 0], [0, 1]])


def test_custom_ignore_value():
    truth = np.array([0, 1, 9])
    pred = np.array([0, 0, 1])
    np.testing.assert_array_equal(confusion_matrix(pred, truth, 2, ignore=9), [[1, 0], [1, 0]])


def test_accumulation_and_agreement_with_naive_count():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(3, 50, 40)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.2] = IGNORE
    pred = rng.integers(0, 5, size=truth.shape).astype(np.uint8)
    total = sum(confusion_matrix(pred[i], truth[i], 5) for i in range(3))
    np.testing.assert_array_equal(total, confusion_matrix(pred, truth, 5))
    naive = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(truth.ravel(), pred.ravel()):
        if t != IGNORE:
            naive[t, p] += 1
    np.testing.assert_array_equal(total, naive)


def test_all_ignored_gives_empty_scores():
    cm = confusion_matrix(np.zeros(4, np.uint8), np.full(4, IGNORE, np.uint8), 2)
    assert cm.sum() == 0
    s = scores(cm, ["x", "y"])
    assert s["miou"] is None and s["mean_f1"] is None and s["pixel_accuracy"] is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3), np.zeros(4), 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="class names"):
        scores(np.zeros((3, 3), np.int64), ["x", "y"])

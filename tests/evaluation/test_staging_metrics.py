"""Known answers for the 2026 metrics: balanced accuracy and the combined ranking score."""

import math

import pytest

from hmvnet.evaluation.metrics import balanced_accuracy, hecktor2026_score


def test_balanced_accuracy_is_the_mean_per_class_recall():
    truth = ["T1", "T1", "T1", "T1", "T2", "T2", "T3", "T3"]
    pred = ["T1", "T1", "T1", "T2", "T2", "T3", "T3", "T4"]  # recalls 3/4, 1/2, 1/2; T4 only lowers T3
    assert balanced_accuracy(truth, pred) == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert balanced_accuracy(truth, ["T1"] * 8) == pytest.approx(1 / 3)  # the majority class: 1 / n_classes
    assert math.isnan(balanced_accuracy([], []))


def test_hecktor2026_score_weights():
    assert hecktor2026_score(0.8, 0.6, 0.4, 0.7) == pytest.approx(0.25 * 0.8 + 0.35 * 0.5 + 0.40 * 0.7)
    assert hecktor2026_score(1.0, 1.0, 1.0, 1.0) == pytest.approx(1.0)

"""Accuracy, F1 and Matthews correlation against values worked out by hand from confusion counts."""

import math

import pytest

from minibert_adapters.training.metrics import accuracy, classification_metrics, f1_binary, matthews

# pred, gold: TP = 2, FP = 1, FN = 1, TN = 3 (positive class 1).
PRED = [1, 1, 1, 0, 0, 0, 0]
GOLD = [1, 1, 0, 1, 0, 0, 0]


def test_binary_metrics_from_confusion_counts():
    assert accuracy(PRED, GOLD) == pytest.approx(5 / 7)
    assert f1_binary(PRED, GOLD) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2TP / (2TP + FP + FN) = 2/3
    expected = (2 * 3 - 1 * 1) / math.sqrt((2 + 1) * (2 + 1) * (3 + 1) * (3 + 1))  # 5 / 12
    assert matthews(PRED, GOLD) == pytest.approx(expected)


def test_perfect_and_inverted_predictions():
    assert matthews([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert matthews([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)
    assert f1_binary([1, 0, 0, 1], [0, 1, 1, 0]) == 0.0


def test_undefined_cases_are_zero_as_in_sklearn():
    assert matthews([1, 1, 1], [1, 0, 1]) == 0.0          # constant prediction
    assert matthews([0, 1, 0], [1, 1, 1]) == 0.0          # constant truth
    assert f1_binary([0, 0, 0], [0, 0, 0]) == 0.0         # no positives predicted or true


def test_multiclass_matthews_is_gorodkins_rk():
    # Confusion (rows gold, columns pred) [[2, 1, 0], [0, 2, 0], [1, 0, 1]]: c = 5, s = 7,
    # t = (3, 2, 2), p = (3, 3, 1): (c s - t.p) / sqrt((s^2 - t.t)(s^2 - p.p)) = (35 - 17) / sqrt(32 * 30).
    gold = [0, 0, 0, 1, 1, 2, 2]
    pred = [0, 0, 1, 1, 1, 0, 2]
    assert matthews(pred, gold) == pytest.approx(18 / math.sqrt(32 * 30))


def test_classification_metrics_names_and_count():
    assert classification_metrics(PRED, GOLD) == pytest.approx(
        {"accuracy": 5 / 7, "f1": 2 / 3, "mcc": 5 / 12, "n": 7})
    assert "f1" not in classification_metrics([0, 1, 2], [0, 1, 1], num_labels=3)


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="equally many"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="equally many"):
        matthews([], [])

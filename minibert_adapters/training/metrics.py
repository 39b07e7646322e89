"""Classification metrics as GLUE reports them: accuracy, F1 of class 1 (binary), Matthews correlation.

Each follows sklearn's definition, including its convention for the undefined cases: F1 and MCC are 0 when
their denominator is 0 (no predicted and no true positives; a constant prediction or a constant truth).
"""

from __future__ import annotations

import math

import numpy as np


def accuracy(pred, gold) -> float:
    pred, gold = _pair(pred, gold)
    return float(np.mean(pred == gold))


def f1_binary(pred, gold, positive: int = 1) -> float:
    """F1 of the class `positive`: 2 TP / (2 TP + FP + FN) (sklearn's f1_score, average="binary")."""
    pred, gold = _pair(pred, gold)
    tp = int(np.sum((pred == positive) & (gold == positive)))
    fp = int(np.sum((pred == positive) & (gold != positive)))
    fn = int(np.sum((pred != positive) & (gold == positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews(pred, gold) -> float:
    """Matthews correlation, multi-class as sklearn's matthews_corrcoef (Gorodkin's R_K); binary: the usual
    (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))."""
    pred, gold = _pair(pred, gold)
    classes = np.union1d(pred, gold)
    confusion = np.array([[np.sum((gold == a) & (pred == b)) for b in classes] for a in classes], dtype=np.float64)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)  # true and predicted counts per class
    n, correct = confusion.sum(), np.trace(confusion)
    cov_yp = correct * n - t @ p
    cov_yy, cov_pp = n * n - t @ t, n * n - p @ p
    return float(cov_yp / math.sqrt(cov_yy * cov_pp)) if cov_yy * cov_pp else 0.0


def classification_metrics(pred, gold, num_labels: int = 2) -> dict:
    """{"accuracy", "f1" (binary tasks only), "mcc", "n"}."""
    result = {"accuracy": accuracy(pred, gold)}
    if num_labels == 2:
        result["f1"] = f1_binary(pred, gold)
    result["mcc"] = matthews(pred, gold)
    result["n"] = int(len(np.asarray(pred)))
    return result


def _pair(pred, gold):
    pred, gold = np.asarray(pred).ravel(), np.asarray(gold).ravel()
    if pred.shape != gold.shape or not len(pred):
        raise ValueError(f"predictions and labels must be equally many and not none, got {len(pred)} and {len(gold)}")
    return pred, gold

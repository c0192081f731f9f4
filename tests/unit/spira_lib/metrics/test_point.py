"""Point metrics: AUC with ties, confusion-matrix metrics, undefined values, input errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spira_lib.metrics import binary_metrics, roc_auc


def _brute_force_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_auc_perfect_inverted_and_constant():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_partial_ties_count_half():
    # patient 0.5 ties control 0.5 (half) and beats control 0.1; patient 0.9 beats both.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_brute_force_pairwise_count(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    p = np.round(rng.random(80), 1)  # rounding forces many ties
    assert roc_auc(y, p) == pytest.approx(_brute_force_auc(y, p))


def test_auc_undefined_with_one_class_is_none():
    assert roc_auc([1, 1, 1], [0.2, 0.4, 0.9]) is None
    assert roc_auc([], []) is None


def test_binary_metrics_hand_made_example():
    y = [1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.6, 0.2, 0.7, 0.5, 0.1, 0.3]
    # threshold 0.5 is inclusive: 0.5 is predicted patient.
    m = binary_metrics(y, p, threshold=0.5)
    assert m["confusion"] == {"tn": 2, "fp": 2, "fn": 1, "tp": 2}
    assert m["n_files"] == 7 and m["n_positive"] == 3 and m["n_negative"] == 4
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert m["roc_auc"] == pytest.approx(_brute_force_auc(np.array(y), np.array(p)))
    assert all(isinstance(v, int) for v in m["confusion"].values())


def test_binary_metrics_threshold_moves_predictions():
    m = binary_metrics([1, 0], [0.6, 0.4], threshold=0.7)
    assert m["confusion"] == {"tn": 1, "fp": 0, "fn": 1, "tp": 0}


def test_undefined_metrics_are_none_not_nan():
    only_controls = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert only_controls["roc_auc"] is None
    assert only_controls["sensitivity"] is None
    assert only_controls["balanced_accuracy"] is None
    assert only_controls["precision"] is None  # nothing predicted positive
    assert only_controls["f1"] is None
    assert only_controls["specificity"] == 1.0
    empty = binary_metrics([], [])
    assert empty["accuracy"] is None and empty["n_files"] == 0
    # JSON with allow_nan=False rejects NaN, so this proves there is none.
    json.dumps(only_controls, allow_nan=False)
    json.dumps(empty, allow_nan=False)


@pytest.mark.parametrize(
    "y, p, message",
    [
        ([0, 2], [0.1, 0.2], "0 (control) and 1 (patient)"),
        ([0, 1], [0.1], "y_true has 2 labels"),
        ([0, 1], [0.1, float("nan")], "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(y, p, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        binary_metrics(y, p)

"""Metrics: AUC, confusion-derived metrics, bootstrap, slices, paired diff, report."""
from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pytest

from spira_lib.config import EvaluationConfig
from spira_lib.metrics import (
    INTERVAL_METRICS,
    SUMMARY_KEYS,
    binary_metrics,
    bootstrap_intervals,
    evaluate_predictions,
    paired_auc_difference,
    roc_auc,
    slice_metrics,
    summary_metrics,
)


def _brute_force_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _noisy_scores(n_pos: int, n_neg: int, seed: int, signal: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    p = np.clip(y * signal + rng.random(y.size) * (1 - signal), 0, 1)
    return y, p


# --------------------------------------------------------------------------- AUC


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


# --------------------------------------------------------------------------- binary metrics


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


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_intervals_contain_point_estimates():
    y, p = _noisy_scores(30, 30, seed=3)
    point = binary_metrics(y, p)
    iv = bootstrap_intervals(y, p, threshold=0.5, n_samples=500, confidence=0.95, seed=1)
    assert set(iv) == set(INTERVAL_METRICS)
    for name in INTERVAL_METRICS:
        lo, hi = iv[name]
        assert lo <= point[name] <= hi, name
        assert 0.0 <= lo <= hi <= 1.0


def test_bootstrap_intervals_narrow_with_more_files():
    small_y, small_p = _noisy_scores(15, 15, seed=4)
    big_y, big_p = _noisy_scores(300, 300, seed=4)
    small = bootstrap_intervals(small_y, small_p, threshold=0.5, n_samples=400, confidence=0.95, seed=0)
    big = bootstrap_intervals(big_y, big_p, threshold=0.5, n_samples=400, confidence=0.95, seed=0)
    for name in ("roc_auc", "accuracy", "balanced_accuracy"):
        assert big[name][1] - big[name][0] < (small[name][1] - small[name][0]) * 0.6, name


def test_bootstrap_auc_distribution_matches_direct_resampling():
    # The count-based vectorised AUC must equal AUC computed on explicit resamples.
    y, p = _noisy_scores(12, 9, seed=5)
    p = np.round(p, 1)
    from spira_lib.metrics import _auc_from_counts, _stratified_counts

    rng = np.random.default_rng(0)
    c_pos, c_neg = _stratified_counts(rng, 20, 12, 9)
    fast = _auc_from_counts(p[y == 1], p[y == 0], c_pos, c_neg)
    for b in range(20):
        yy = np.r_[np.ones(12, int), np.zeros(9, int)]
        pp = np.r_[np.repeat(p[y == 1], c_pos[b]), np.repeat(p[y == 0], c_neg[b])]
        assert fast[b] == pytest.approx(roc_auc(yy, pp))


def test_bootstrap_is_deterministic_by_seed():
    y, p = _noisy_scores(20, 25, seed=6)
    a = bootstrap_intervals(y, p, threshold=0.5, n_samples=200, confidence=0.95, seed=11)
    b = bootstrap_intervals(y, p, threshold=0.5, n_samples=200, confidence=0.95, seed=11)
    c = bootstrap_intervals(y, p, threshold=0.5, n_samples=200, confidence=0.95, seed=12)
    assert a == b
    assert a != c


def test_bootstrap_zero_samples_and_single_class():
    y, p = _noisy_scores(5, 5, seed=7)
    assert bootstrap_intervals(y, p, threshold=0.5, n_samples=0, confidence=0.95, seed=0) == {}
    iv = bootstrap_intervals([0, 0, 0, 0], [0.1, 0.6, 0.2, 0.3], threshold=0.5, n_samples=100, confidence=0.95, seed=0)
    assert iv["roc_auc"] is None and iv["sensitivity"] is None and iv["balanced_accuracy"] is None
    assert iv["specificity"] is not None
    json.dumps(iv, allow_nan=False)


def test_bootstrap_is_fast():
    y, p = _noisy_scores(30, 30, seed=8)
    start = time.perf_counter()
    bootstrap_intervals(y, p, threshold=0.5, n_samples=1000, confidence=0.95, seed=0)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- slices


def _slice_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "label": [1, 0, 1, 0, 1, 0, 1, 0],
            "prob": [0.9, 0.1, 0.8, 0.7, 0.3, 0.2, 0.6, 0.4],
            "sex": ["F", "F", "M", "M", "F", None, "M", "F"],
            "age": [25.0, 40.0, 59.9, 60.0, 75.0, None, 10.0, 250.0],
            "hospital": ["HC", "HC", "HC", "HC", "HC", "HC", "HC", "HC"],
        }
    )


def test_slice_values_bands_and_small_flag():
    slices = slice_metrics(_slice_frame(), threshold=0.5, age_bands=[0, 40, 60, 200], min_slice_size=3)
    keyed = {(s["slice"], s["value"]): s for s in slices}
    assert [k for k in keyed if k[0] == "sex"] == [("sex", "F"), ("sex", "M"), ("sex", "unknown")]
    # Left-closed bands: 40 -> "40-60", 60 -> "60-200"; None and 250 are "unknown".
    assert [k[1] for k in keyed if k[0] == "age_band"] == ["0-40", "40-60", "60-200", "unknown"]
    assert keyed[("age_band", "0-40")]["n"] == 2
    assert keyed[("age_band", "40-60")]["n"] == 2
    assert keyed[("age_band", "60-200")]["n"] == 2
    assert keyed[("age_band", "unknown")]["n"] == 2
    assert keyed[("sex", "F")]["n"] == 4 and keyed[("sex", "F")]["small"] is False
    assert keyed[("sex", "unknown")]["small"] is True
    assert keyed[("hospital", "HC")]["n"] == 8
    # F slice: labels 1,0,1,0 with probs .9,.1,.3,.4 -> tp=1, fn=1, tn=2.
    f = keyed[("sex", "F")]
    assert f["confusion"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert f["balanced_accuracy"] == pytest.approx(0.75)
    # Single-class slice: accuracy is defined, balanced accuracy is not.
    unknown_sex = keyed[("sex", "unknown")]
    assert unknown_sex["balanced_accuracy"] is None and unknown_sex["accuracy"] == 1.0


def test_slice_metrics_skips_missing_columns():
    frame = pl.DataFrame({"label": [1, 0], "prob": [0.7, 0.2], "sex": ["F", "M"]})
    slices = slice_metrics(frame, threshold=0.5, age_bands=[0, 40, 60, 200], min_slice_size=1)
    assert {s["slice"] for s in slices} == {"sex"}


def test_slice_metrics_rejects_bad_bands_and_frames():
    with pytest.raises(ValueError, match="strictly increasing"):
        slice_metrics(_slice_frame(), threshold=0.5, age_bands=[0, 60, 40], min_slice_size=1)
    with pytest.raises(ValueError, match="missing column"):
        slice_metrics(pl.DataFrame({"label": [1]}), threshold=0.5, age_bands=[0, 1], min_slice_size=1)


# --------------------------------------------------------------------------- paired difference


def test_paired_diff_zero_for_identical_models():
    y, p = _noisy_scores(20, 20, seed=9)
    out = paired_auc_difference(y, p, p, n_samples=300, confidence=0.95, seed=0)
    assert out["diff"] == 0.0 and out["lo"] == 0.0 and out["hi"] == 0.0
    assert out["n_files"] == 40


def test_paired_diff_sign_follows_better_model():
    y, good = _noisy_scores(40, 40, seed=10, signal=0.6)
    rng = np.random.default_rng(1)
    bad = rng.random(y.size)
    better = paired_auc_difference(y, good, bad, n_samples=500, confidence=0.95, seed=0)
    worse = paired_auc_difference(y, bad, good, n_samples=500, confidence=0.95, seed=0)
    assert better["diff"] == pytest.approx(roc_auc(y, good) - roc_auc(y, bad))
    assert better["diff"] > 0 and better["lo"] > 0
    assert worse["diff"] == pytest.approx(-better["diff"])
    assert worse["hi"] < 0
    assert better["lo"] <= better["diff"] <= better["hi"]


def test_paired_diff_undefined_with_one_class():
    out = paired_auc_difference([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], n_samples=50, confidence=0.95, seed=0)
    assert out["diff"] is None and out["lo"] is None and out["hi"] is None


# --------------------------------------------------------------------------- evaluate_predictions


def test_evaluate_predictions_shortcut_numbers():
    # 4 patients, 4 controls. Clean: all correct except one patient (0.4).
    frame = pl.DataFrame(
        {
            "label": [1, 1, 1, 1, 0, 0, 0, 0],
            "prob": [0.9, 0.8, 0.7, 0.4, 0.1, 0.2, 0.3, 0.1],
            "sex": ["F", "M", "F", "M", "F", "M", "F", "M"],
        }
    )
    # Noise on controls only: patients identical, two controls now look like patients.
    shortcut = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.7, 0.3, 0.2])
    cfg = EvaluationConfig(bootstrap_samples=100)
    report = evaluate_predictions(frame, cfg, shortcut_prob=shortcut)
    s = report["shortcut"]
    assert s["clean_accuracy"] == pytest.approx(7 / 8)
    assert s["shortcut_accuracy"] == pytest.approx(5 / 8)
    assert s["noisy_control_accuracy"] == pytest.approx(2 / 4)
    assert s["drop"] == pytest.approx(2 / 8)
    assert s["n_controls"] == 4
    assert report["metrics"]["shortcut_accuracy"] == pytest.approx(5 / 8)
    assert report["threshold"] == 0.5
    assert set(report["intervals"]) == set(INTERVAL_METRICS)
    assert {sl["value"] for sl in report["slices"]} == {"F", "M"}
    json.dumps(report, allow_nan=False)


def test_evaluate_predictions_without_shortcut_and_length_check():
    frame = pl.DataFrame({"label": [1, 0, 1, 0], "prob": [0.9, 0.1, 0.6, 0.4]})
    report = evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=0))
    assert report["shortcut"] is None
    assert report["metrics"]["shortcut_accuracy"] is None
    assert report["intervals"] == {}
    assert report["slices"] == []
    with pytest.raises(ValueError, match="shortcut_prob"):
        evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=0), shortcut_prob=np.array([0.1, 0.2]))


def test_summary_metrics_keys_exact():
    frame = pl.DataFrame({"label": [1, 0, 1, 0], "prob": [0.9, 0.1, 0.6, 0.4]})
    noisy = np.array([0.9, 0.6, 0.6, 0.4])
    report = evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=10), shortcut_prob=noisy)
    summary = summary_metrics(report)
    assert list(summary) == list(SUMMARY_KEYS)
    assert set(summary) == {
        "roc_auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "n_files", "shortcut_accuracy",
    }
    assert summary["n_files"] == 4 and summary["accuracy"] == 1.0
    assert summary["shortcut_accuracy"] == pytest.approx(0.75)
    assert summary_metrics({}) == {k: (0 if k == "n_files" else None) for k in SUMMARY_KEYS}

"""Bootstrap intervals and the paired AUC difference."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spira_lib.metrics import INTERVAL_METRICS, binary_metrics, bootstrap_intervals, paired_auc_difference, roc_auc


def _noisy_scores(n_pos: int, n_neg: int, seed: int, signal: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    p = np.clip(y * signal + rng.random(y.size) * (1 - signal), 0, 1)
    return y, p


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
    from spira_lib.metrics.bootstrap import _auc_from_counts, _stratified_counts

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

"""Drift statistics: KS + Wasserstein per feature with BH, MMD permutation test, chi-square on categories."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from spira_lib.monitoring.drift import bh_adjust, categorical_shift, embedding_mmd, feature_drift

FEATURES = ("a", "b", "c", "d", "e")


def sample(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    shift = shift or {}
    return {f: rng.normal(shift.get(f, 0.0), 1.0, n) for f in FEATURES}


def test_bh_matches_a_hand_computed_example_and_keeps_nan():
    # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): p * m / rank = 0.02, 0.02, 0.04, 0.04, then the running minimum from the top.
    q = bh_adjust([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(q[:4], [0.02, 0.04, 0.04, 0.02])
    assert np.isnan(q[4])
    assert bh_adjust([]).size == 0


def test_same_distribution_rarely_alarms_across_seeds():
    alarms = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        res = feature_drift(sample(rng, 400), sample(rng, 100), alpha=0.01)
        assert [r.name for r in res] == list(FEATURES)
        alarms += any(r.moved for r in res)
    # Nominal 1% of 60 batches; allow sampling noise but not a broken test (which would alarm often).
    assert alarms <= 3


def test_a_shifted_feature_is_found_and_the_others_are_not():
    found, others = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        res = {r.name: r for r in feature_drift(sample(rng, 400), sample(rng, 100, {"c": 0.8}), alpha=0.01)}
        found += res["c"].moved
        others += sum(r.moved for n, r in res.items() if n != "c")
        assert res["c"].p_adjusted >= res["c"].p_value
    assert found >= 19
    assert others <= 2


def test_wasserstein_is_in_the_features_unit_and_normalised_by_the_spread():
    rng = np.random.default_rng(5)
    ref = {"a": rng.normal(0, 10.0, 5000)}
    cur = {"a": rng.normal(5.0, 10.0, 5000)}
    (r,) = feature_drift(ref, cur)
    assert r.wasserstein == pytest.approx(5.0, rel=0.1)
    assert r.wasserstein_norm == pytest.approx(0.5, rel=0.1)
    assert r.cur_median - r.ref_median == pytest.approx(5.0, abs=0.8)


def test_features_with_too_few_values_are_left_out():
    rng = np.random.default_rng(6)
    res = feature_drift({"a": rng.normal(size=50), "b": [np.nan] * 50}, {"a": rng.normal(size=50), "b": [1.0, np.nan]})
    assert [r.name for r in res] == ["a"]


def test_mmd_matches_a_direct_computation():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(9, 3))
    res = embedding_mmd(x, y, n_permutations=50, seed=0)
    z = np.concatenate([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    med = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / (2 * med))
    kxx, kyy, kxy = k[:12, :12], k[12:, 12:], k[:12, 12:]
    n, m = 12, 9
    expected = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    assert res.mmd2 == pytest.approx(expected, rel=1e-9)
    assert res.bandwidth == pytest.approx(np.sqrt(med))
    assert (res.n_ref, res.n_cur) == (12, 9)


def test_mmd_p_values_are_uniform_under_the_null_and_small_under_a_shift():
    null = [embedding_mmd(*np.random.default_rng(s).normal(size=(2, 40, 4)), n_permutations=200, seed=s).p_value for s in range(60)]
    # Uniform on (0, 1]: a KS test against U(0, 1) must not reject, and small p-values are rare.
    assert stats.kstest(null, "uniform").pvalue > 0.01
    assert sum(p < 0.05 for p in null) <= 8
    rng = np.random.default_rng(99)
    shifted = embedding_mmd(rng.normal(size=(200, 8)), rng.normal(0.6, 1.0, size=(100, 8)), n_permutations=500, seed=1)
    assert shifted.p_value < 0.01
    assert shifted.p_value == pytest.approx(1 / 501)
    assert shifted.mmd2 > 0


def test_mmd_rejects_bad_shapes():
    with pytest.raises(ValueError):
        embedding_mmd(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        embedding_mmd(np.zeros((1, 3)), np.zeros((5, 3)))


def test_categorical_shift_same_mix_vs_changed_mix():
    same = categorical_shift({"F": 500, "M": 500}, {"F": 50, "M": 50}, name="sex")
    assert same.p_value > 0.5 and same.method == "asymptotic" and same.tv_distance == pytest.approx(0.0)
    moved = categorical_shift({"F": 500, "M": 500}, {"F": 80, "M": 20}, name="sex")
    assert moved.p_value < 1e-6 and moved.tv_distance == pytest.approx(0.3)


def test_categorical_shift_rare_categories_use_monte_carlo_and_new_categories_count():
    rare = categorical_shift({"A": 900, "B": 95, "C": 5}, {"A": 90, "B": 10}, name="hospital")
    assert rare.method == "monte-carlo" and rare.p_value > 0.1
    new = categorical_shift({"A": 900, "B": 100}, {"A": 50, "B": 10, "NEW": 40}, name="hospital")
    assert new.p_value < 0.001 and "NEW" in new.ref_counts and new.ref_counts["NEW"] == 0


def test_categorical_shift_with_one_category_is_untestable():
    res = categorical_shift({"F": 10}, {"F": 3})
    assert res.method == "untestable" and res.p_value == 1.0

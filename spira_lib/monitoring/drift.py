"""Two-sample drift tests: per profile feature, on the model's embeddings, and on categories.

- ``feature_drift``: per feature a two-sample Kolmogorov-Smirnov test
  (``scipy.stats.ks_2samp``) and the Wasserstein-1 distance
  (``scipy.stats.wasserstein_distance``, also divided by the reference's robust
  spread so features in Hz, dB and counts are comparable), Benjamini-Hochberg
  adjusted p-values across the features (``scipy.stats.false_discovery_control``).
- ``embedding_mmd``: squared maximum mean discrepancy (unbiased) between clip
  embeddings with an RBF kernel (median-heuristic bandwidth) and a permutation
  p-value. scipy has no MMD, so this one is written here, vectorised over
  permutations.
- ``categorical_shift``: chi-square test of homogeneity for label / sex / age
  band / hospital counts (``scipy.stats.chi2_contingency``; Monte Carlo p-value
  when an expected count is below 5, where the chi-square approximation fails).

All functions are pure; ``report.drift_report`` combines them into one decision.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from spira_lib.monitoring.profile import FEATURE_NAMES, UNITS
from spira_lib.monitoring.reference import FeatureSample, ProfileTable, ReferenceProfile, _robust_scale

MIN_SAMPLES = 5  # fewer finite values than this on either side: the feature is not tested


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureDrift(_Result):
    name: str
    unit: str
    n_ref: int
    n_cur: int
    ks_statistic: float
    p_value: float
    p_adjusted: float  # Benjamini-Hochberg over the tests it was adjusted with
    wasserstein: float  # in the feature's unit
    wasserstein_norm: float  # divided by the reference's robust spread
    ref_median: float
    cur_median: float
    moved: bool  # p_adjusted < alpha


class EmbeddingDrift(_Result):
    mmd2: float  # unbiased estimate; can be slightly negative when nothing moved
    p_value: float
    n_permutations: int
    bandwidth: float  # RBF sigma (median pairwise distance)
    n_ref: int
    n_cur: int
    p_adjusted: float | None = None  # set when adjusted together with other tests (report.drift_report)
    moved: bool | None = None


class CategoricalShift(_Result):
    name: str
    statistic: float
    p_value: float
    method: str  # "asymptotic" | "monte-carlo" | "untestable"
    tv_distance: float  # total variation between the two category distributions, 0..1
    ref_counts: dict[str, int]
    cur_counts: dict[str, int]
    p_adjusted: float | None = None  # set when adjusted together with other tests (report.drift_report)
    moved: bool | None = None


def bh_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return out


def _samples(source: ReferenceProfile | ProfileTable | Mapping[str, Sequence[float]], name: str) -> tuple[np.ndarray, float | None]:
    """Finite values of one feature and, for a stored reference, its full-sample spread."""
    if isinstance(source, ReferenceProfile):
        fs: FeatureSample | None = source.features.get(name)
        return (np.zeros(0), None) if fs is None else (fs.array(), fs.scale)
    if isinstance(source, ProfileTable):
        return (source.values(name), None) if name in source.frame.columns else (np.zeros(0), None)
    x = np.asarray(source.get(name, []), dtype=np.float64)
    return x[np.isfinite(x)], None


def _feature_names(reference: object, features: Sequence[str] | None) -> list[str]:
    if features is not None:
        return list(features)
    if isinstance(reference, Mapping):
        return [n for n in reference if n in FEATURE_NAMES] + sorted(set(reference) - set(FEATURE_NAMES))
    return list(FEATURE_NAMES)


def feature_drift(
    reference: ReferenceProfile | ProfileTable | Mapping[str, Sequence[float]],
    current: ProfileTable | Mapping[str, Sequence[float]],
    *,
    alpha: float = 0.01,
    features: Sequence[str] | None = None,
) -> list[FeatureDrift]:
    """Per-feature KS + Wasserstein between a reference and a current batch, BH-adjusted across features.

    A feature with fewer than ``MIN_SAMPLES`` finite values on either side is
    left out (e.g. f0 when no frame is voiced). ``moved`` means the adjusted
    p-value is below ``alpha``.
    """
    rows = []
    for name in _feature_names(reference, features):
        ref, scale = _samples(reference, name)
        cur, _ = _samples(current, name)
        if ref.size < MIN_SAMPLES or cur.size < MIN_SAMPLES:
            continue
        ks = stats.ks_2samp(ref, cur, alternative="two-sided", method="auto")
        w = float(stats.wasserstein_distance(ref, cur))
        spread = scale if scale is not None else _robust_scale(ref)
        rows.append(dict(
            name=name, unit=UNITS.get(name, ""), n_ref=int(ref.size), n_cur=int(cur.size),
            ks_statistic=float(ks.statistic), p_value=float(ks.pvalue), wasserstein=w,
            wasserstein_norm=w / spread, ref_median=float(np.median(ref)), cur_median=float(np.median(cur)),
        ))
    adjusted = bh_adjust([r["p_value"] for r in rows])
    return [FeatureDrift(**r, p_adjusted=float(q), moved=bool(q < alpha)) for r, q in zip(rows, adjusted)]


def _sq_distances(z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def _mmd2_unbiased(k0: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of ``groups`` (indices of one sample; the rest is the other) given K with a zero diagonal.

    MMD^2 is symmetric in its two samples, so ``groups`` holds the SMALLER one:
    each permutation then costs a ``s x s`` block sum instead of a full ``N x N``
    quadratic form (36x less work for 100 current vs 500 reference clips).
    """
    big_n, s = k0.shape[0], groups.shape[1]
    b = big_n - s
    row_sums = k0.sum(axis=1)
    total = row_sums.sum()
    s_ss = k0[groups[:, :, None], groups[:, None, :]].sum(axis=(1, 2))
    s_sb = row_sums[groups].sum(axis=1) - s_ss
    s_bb = total - s_ss - 2.0 * s_sb
    return s_ss / (s * (s - 1)) + s_bb / (b * (b - 1)) - 2.0 * s_sb / (s * b)


def embedding_mmd(
    ref_emb: np.ndarray, cur_emb: np.ndarray, *, n_permutations: int = 2000, seed: int = 0, chunk: int = 200
) -> EmbeddingDrift:
    """MMD^2 between two sets of embeddings ``[n, D]`` / ``[m, D]`` and its permutation p-value.

    Kernel: exp(-d^2 / (2 sigma^2)) with sigma the median pairwise distance of
    the pooled sample (permutation-invariant, so the test stays exact). The
    p-value is ``(1 + #{permuted >= observed}) / (1 + n_permutations)``: never
    below ``1 / (1 + n_permutations)``, so use enough permutations for the
    threshold it must pass after a multiple-testing correction.
    """
    x, y = np.asarray(ref_emb, dtype=np.float64), np.asarray(cur_emb, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be [n, D] and [m, D] with the same D, got {x.shape} and {y.shape}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 embeddings on each side, got {n} and {m}")
    d2 = _sq_distances(np.concatenate([x, y]))
    off = d2[np.triu_indices(n + m, k=1)]
    med = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    k0 = np.exp(-d2 / (2.0 * med))
    np.fill_diagonal(k0, 0.0)
    small = min(n, m)
    observed_group = np.arange(n, n + m) if m <= n else np.arange(n)
    observed = float(_mmd2_unbiased(k0, observed_group[None, :])[0])
    rng = np.random.default_rng(seed)
    exceed = 0
    for lo in range(0, n_permutations, chunk):
        p = min(chunk, n_permutations - lo)
        # Random subsets: argsort of uniform keys gives p independent permutations at once.
        groups = np.argsort(rng.random((p, n + m)), axis=1)[:, :small]
        exceed += int(np.count_nonzero(_mmd2_unbiased(k0, groups) >= observed - 1e-12))
    return EmbeddingDrift(
        mmd2=observed, p_value=(1 + exceed) / (1 + n_permutations), n_permutations=n_permutations,
        bandwidth=float(np.sqrt(med)), n_ref=n, n_cur=m,
    )


def categorical_shift(
    ref_counts: Mapping[str, int], cur_counts: Mapping[str, int], *, name: str = "", seed: int = 0, n_resamples: int = 9999
) -> CategoricalShift:
    """Did the category mix change? Chi-square test of homogeneity on the 2 x K table of counts."""
    keys = sorted(k for k in set(ref_counts) | set(cur_counts) if ref_counts.get(k, 0) + cur_counts.get(k, 0) > 0)
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.int64)
    tv = 0.5 * float(np.abs(ref / max(ref.sum(), 1) - cur / max(cur.sum(), 1)).sum()) if ref.sum() and cur.sum() else 0.0
    base = dict(name=name, tv_distance=tv, ref_counts=dict(zip(keys, map(int, ref))), cur_counts=dict(zip(keys, map(int, cur))))
    if len(keys) < 2 or ref.sum() == 0 or cur.sum() == 0:
        return CategoricalShift(statistic=0.0, p_value=1.0, method="untestable", **base)
    table = np.stack([ref, cur])
    expected = stats.contingency.expected_freq(table)
    if expected.min() >= 5:
        res = stats.chi2_contingency(table, correction=False)
        return CategoricalShift(statistic=float(res.statistic), p_value=float(res.pvalue), method="asymptotic", **base)
    mc = stats.MonteCarloMethod(n_resamples=n_resamples, rng=np.random.default_rng(seed))
    res = stats.chi2_contingency(table, correction=False, method=mc)
    return CategoricalShift(statistic=float(res.statistic), p_value=float(res.pvalue), method="monte-carlo", **base)

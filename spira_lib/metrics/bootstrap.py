"""Bootstrap intervals of the metrics, and the paired AUC difference between two models on the same files."""
from __future__ import annotations

from typing import Any

import numpy as np

from spira_lib.metrics.point import INTERVAL_METRICS, as_arrays, roc_auc


def _stratified_counts(
    rng: np.random.Generator, n_samples: int, n_pos: int, n_neg: int
) -> tuple[np.ndarray, np.ndarray]:
    """How often each patient / control is drawn in each resample.

    Drawing per class keeps the class sizes fixed, so every resample has both
    classes and AUC/sensitivity/specificity are always defined. Working with
    counts (instead of the resampled arrays) lets every metric be computed for
    all resamples at once.
    """

    def counts(n: int) -> np.ndarray:
        if n == 0:
            return np.zeros((n_samples, 0), dtype=np.int64)
        draws = rng.integers(0, n, size=(n_samples, n))
        flat = draws + (np.arange(n_samples)[:, None] * n)
        return np.bincount(flat.ravel(), minlength=n_samples * n).reshape(n_samples, n)

    return counts(n_pos), counts(n_neg)


def _auc_from_counts(
    p_pos: np.ndarray, p_neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray
) -> np.ndarray:
    """AUC of every resample, O(resamples x files) via sorted cumulative counts."""
    order = np.argsort(p_neg, kind="stable")
    neg_sorted = p_neg[order]
    cum = np.zeros((c_neg.shape[0], c_neg.shape[1] + 1), dtype=np.float64)
    np.cumsum(c_neg[:, order], axis=1, out=cum[:, 1:])
    lo = np.searchsorted(neg_sorted, p_pos, side="left")  # controls strictly below each patient
    hi = np.searchsorted(neg_sorted, p_pos, side="right")  # ... or tied with it
    below = cum[:, lo]
    tied = cum[:, hi] - below
    wins = np.sum(c_pos * (below + 0.5 * tied), axis=1)
    return wins / (p_pos.size * p_neg.size)


def _metrics_from_counts(
    p_pos: np.ndarray, p_neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    n_pos, n_neg = p_pos.size, p_neg.size
    tp = c_pos @ (p_pos >= threshold).astype(np.float64)
    fp = c_neg @ (p_neg >= threshold).astype(np.float64)
    fn = n_pos - tp
    tn = n_neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tp / n_pos if n_pos else np.full(tp.shape, np.nan)
        spec = tn / n_neg if n_neg else np.full(tn.shape, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    out = {
        "accuracy": (tp + tn) / (n_pos + n_neg),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2.0,
        "f1": f1,
    }
    if n_pos and n_neg:
        out["roc_auc"] = _auc_from_counts(p_pos, p_neg, c_pos, c_neg)
    else:
        out["roc_auc"] = np.full(tp.shape, np.nan)
    return out


def _percentile_interval(values: np.ndarray, confidence: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def _check_bootstrap_args(n_samples: int, confidence: float) -> None:
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0 (got {n_samples})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1 (got {confidence})")


def bootstrap_intervals(
    y_true: Any,
    y_prob: Any,
    *,
    threshold: float = 0.5,
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 7,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals ``{metric: [lo, hi] | None}`` for INTERVAL_METRICS.

    Files are resampled with replacement within each class. A metric that is
    undefined on the data (e.g. sensitivity without patients) gets None.
    ``n_samples == 0`` returns ``{}`` (bootstrap disabled).
    """
    _check_bootstrap_args(n_samples, confidence)
    y, p = as_arrays(y_true, y_prob)
    if n_samples == 0:
        return {}
    if y.size == 0:
        return {name: None for name in INTERVAL_METRICS}
    p_pos, p_neg = p[y == 1], p[y == 0]
    rng = np.random.default_rng(seed)
    c_pos, c_neg = _stratified_counts(rng, n_samples, p_pos.size, p_neg.size)
    values = _metrics_from_counts(p_pos, p_neg, c_pos, c_neg, threshold)
    return {name: _percentile_interval(values[name], confidence) for name in INTERVAL_METRICS}


def paired_auc_difference(
    y_true: Any,
    p_new: Any,
    p_old: Any,
    *,
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 7,
) -> dict[str, Any]:
    """AUC(new) - AUC(old) on the same files, with a paired bootstrap interval.

    Both models are scored on the SAME resampled files in every resample, so
    the interval reflects the difference between models rather than the
    sampling noise of the test set, which is mostly shared.

    Returns ``{"diff", "lo", "hi", "n_files", "auc_new", "auc_old",
    "confidence", "n_samples"}``; diff/lo/hi are None when AUC is undefined
    (single class), lo/hi are None when ``n_samples == 0``.
    """
    _check_bootstrap_args(n_samples, confidence)
    y, pn = as_arrays(y_true, p_new, prob_name="p_new")
    _, po = as_arrays(y_true, p_old, prob_name="p_old")
    auc_new, auc_old = roc_auc(y, pn), roc_auc(y, po)
    out: dict[str, Any] = {
        "diff": None,
        "lo": None,
        "hi": None,
        "n_files": int(y.size),
        "auc_new": auc_new,
        "auc_old": auc_old,
        "confidence": float(confidence),
        "n_samples": int(n_samples),
    }
    if auc_new is None or auc_old is None:
        return out
    out["diff"] = auc_new - auc_old
    if n_samples == 0:
        return out
    pos, neg = y == 1, y == 0
    rng = np.random.default_rng(seed)
    c_pos, c_neg = _stratified_counts(rng, n_samples, int(pos.sum()), int(neg.sum()))
    diffs = _auc_from_counts(pn[pos], pn[neg], c_pos, c_neg) - _auc_from_counts(po[pos], po[neg], c_pos, c_neg)
    interval = _percentile_interval(diffs, confidence)
    if interval is not None:
        out["lo"], out["hi"] = interval
    return out

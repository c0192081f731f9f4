"""What the report's pictures are drawn from: the ROC curve with a bootstrap band, and score histograms.

Only aggregates leave this module (curve points on a fixed grid, bin counts),
never per-file scores, so a report can be read by people who may not see
individual patients' results.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from spira_lib.metrics.bootstrap import _stratified_counts
from spira_lib.metrics.point import as_arrays

# False-positive rates at which the ROC band is evaluated.
FPR_GRID = tuple(round(i / 50, 4) for i in range(51))
SCORE_BINS = tuple(round(i / 20, 4) for i in range(21))


def roc_points(y_true: Any, y_prob: Any) -> dict[str, list[float]] | None:
    """The empirical ROC curve (one point per distinct threshold); None unless both classes are present."""
    y, p = as_arrays(y_true, y_prob)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    # A threshold between distinct scores: cumulate, then keep the last row of each tied block.
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), ps.size - 1]
    tps, fps = np.cumsum(ys)[last], np.cumsum(1 - ys)[last]
    return {"fpr": [0.0, *(fps / n_neg).round(4).tolist()], "tpr": [0.0, *(tps / n_pos).round(4).tolist()]}


def _tpr_at(p_pos: np.ndarray, p_neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """TPR at each grid FPR for every resample (rows), thresholding at the matching control quantile."""
    out = np.empty((c_pos.shape[0], grid.size))
    neg_order = np.argsort(-p_neg, kind="stable")
    neg_sorted = p_neg[neg_order]
    for r in range(c_pos.shape[0]):
        neg_cum = np.cumsum(c_neg[r, neg_order]) / p_neg.size  # FPR when the threshold is at each sorted control
        for g, fpr in enumerate(grid):
            k = int(np.searchsorted(neg_cum, fpr, side="right"))
            threshold = neg_sorted[k] if k < neg_sorted.size else -np.inf
            out[r, g] = float(c_pos[r] @ (p_pos > threshold)) / p_pos.size
    return out


def roc_band(y_true: Any, y_prob: Any, *, n_samples: int = 200, confidence: float = 0.95, seed: int = 7) -> dict[str, list[float]] | None:
    """Pointwise bootstrap interval of the TPR at each grid FPR (class-stratified resamples)."""
    y, p = as_arrays(y_true, y_prob)
    p_pos, p_neg = p[y == 1], p[y == 0]
    if not p_pos.size or not p_neg.size or n_samples <= 0:
        return None
    grid = np.asarray(FPR_GRID)
    c_pos, c_neg = _stratified_counts(np.random.default_rng(seed), n_samples, p_pos.size, p_neg.size)
    tpr = _tpr_at(p_pos, p_neg, c_pos, c_neg, grid)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(tpr, [alpha, 1.0 - alpha], axis=0)
    return {"fpr": list(FPR_GRID), "lo": lo.round(4).tolist(), "hi": hi.round(4).tolist()}


def score_histogram(y_true: Any, y_prob: Any) -> dict[str, Any]:
    """Counts of predicted probabilities in 20 bins over [0, 1], per class."""
    y, p = as_arrays(y_true, y_prob)
    edges = np.asarray(SCORE_BINS)
    return {
        "edges": list(SCORE_BINS),
        "controls": np.histogram(p[y == 0], bins=edges)[0].tolist(),
        "patients": np.histogram(p[y == 1], bins=edges)[0].tolist(),
    }

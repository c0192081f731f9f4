"""Point metrics of per-file predictions, and the input rules every metric shares.

Everything here is plain numpy/polars and returns JSON-safe values: floats,
ints, lists, dicts and ``None`` for a metric that is undefined on the given
files (AUC with a single class, sensitivity without patients, ...). ``NaN``
never leaves this module, because reports are stored as JSON and compared by
the promotion gate.

Conventions:

* class 1 = patient (positive), 0 = control;
* a file is predicted positive when ``prob >= threshold``;
* ROC-AUC is the Mann-Whitney statistic, P(prob_patient > prob_control) with
  ties counted as one half, so a constant model scores exactly 0.5.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

INTERVAL_METRICS: tuple[str, ...] = (
    "roc_auc",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "sensitivity",
    "specificity",
)

SUMMARY_KEYS: tuple[str, ...] = INTERVAL_METRICS + ("n_files", "shortcut_accuracy")

# Label used for a slice whose attribute is null or outside every age band.
UNKNOWN = "unknown"


def as_arrays(y_true: Any, y_prob: Any, *, prob_name: str = "y_prob") -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels/probabilities; errors name the argument and the reason."""
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and {prob_name} must be 1-D (got shapes {y.shape} and {p.shape})")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} labels but {prob_name} has {p.shape[0]} values")
    if y.size:
        try:
            yf = y.astype(float)
        except (TypeError, ValueError):
            raise ValueError(f"y_true must hold only 0 (control) and 1 (patient); got dtype {y.dtype}") from None
        if not np.all((yf == 0) | (yf == 1)):
            bad = sorted({v for v in y.tolist() if v not in (0, 1)})[:5]
            raise ValueError(f"y_true must hold only 0 (control) and 1 (patient); found {bad}")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{prob_name} contains NaN or infinite values")
    return y.astype(np.int8), p


def ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def clean(value: float | None) -> float | None:
    """Map NaN/inf to None so the value is JSON-safe."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def roc_auc(y_true: Any, y_prob: Any) -> float | None:
    """Mann-Whitney ROC-AUC with average ranks for ties; None unless both classes are present."""
    y, p = as_arrays(y_true, y_prob)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks: tied scores share the mean of the ranks they span, which is
    # what makes a tie between a patient and a control count as one half.
    uniq, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # 1-based mean rank of each unique value
    ranks = avg_rank[inverse]
    rank_sum_pos = ranks[y == 1].sum()
    u = rank_sum_pos - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _from_confusion(tn: int, fp: int, fn: int, tp: int) -> dict[str, float | None]:
    n = tn + fp + fn + tp
    sens = ratio(tp, tp + fn)
    spec = ratio(tn, tn + fp)
    return {
        "accuracy": ratio(tp + tn, n),
        "balanced_accuracy": (sens + spec) / 2.0 if sens is not None and spec is not None else None,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": sens,
        "specificity": spec,
        "precision": ratio(tp, tp + fp),
    }


def binary_metrics(y_true: Any, y_prob: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Per-file classification metrics at ``threshold``.

    Returns ``{"roc_auc", "accuracy", "balanced_accuracy", "f1", "sensitivity",
    "specificity", "precision", "n_files", "n_positive", "n_negative",
    "confusion": {"tn", "fp", "fn", "tp"}}``; undefined metrics are None.
    Balanced accuracy needs both classes (it is the mean of sensitivity and
    specificity), so it is None on a single-class set.
    """
    y, p = as_arrays(y_true, y_prob)
    pred = p >= threshold
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fn = int(np.sum(~pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))
    out: dict[str, Any] = {"roc_auc": roc_auc(y, p)}
    out.update(_from_confusion(tn, fp, fn, tp))
    out["n_files"] = int(y.size)
    out["n_positive"] = int(pos.sum())
    out["n_negative"] = int(y.size - pos.sum())
    out["confusion"] = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    return out

"""Evaluation metrics for the per-file predictions of a SPIRA model.

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
from typing import Any, Iterable

import numpy as np
import polars as pl

from spira_lib.config import EvaluationConfig

# Metrics that get bootstrap intervals, in report order.
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


# --------------------------------------------------------------------------- inputs


def _as_arrays(y_true: Any, y_prob: Any, *, prob_name: str = "y_prob") -> tuple[np.ndarray, np.ndarray]:
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


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _clean(value: float | None) -> float | None:
    """Map NaN/inf to None so the value is JSON-safe."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- point metrics


def roc_auc(y_true: Any, y_prob: Any) -> float | None:
    """Mann-Whitney ROC-AUC with average ranks for ties; None unless both classes are present."""
    y, p = _as_arrays(y_true, y_prob)
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
    sens = _ratio(tp, tp + fn)
    spec = _ratio(tn, tn + fp)
    return {
        "accuracy": _ratio(tp + tn, n),
        "balanced_accuracy": (sens + spec) / 2.0 if sens is not None and spec is not None else None,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": sens,
        "specificity": spec,
        "precision": _ratio(tp, tp + fp),
    }


def binary_metrics(y_true: Any, y_prob: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Per-file classification metrics at ``threshold``.

    Returns ``{"roc_auc", "accuracy", "balanced_accuracy", "f1", "sensitivity",
    "specificity", "precision", "n_files", "n_positive", "n_negative",
    "confusion": {"tn", "fp", "fn", "tp"}}``; undefined metrics are None.
    Balanced accuracy needs both classes (it is the mean of sensitivity and
    specificity), so it is None on a single-class set.
    """
    y, p = _as_arrays(y_true, y_prob)
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


# --------------------------------------------------------------------------- bootstrap


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
    y, p = _as_arrays(y_true, y_prob)
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
    y, pn = _as_arrays(y_true, p_new, prob_name="p_new")
    _, po = _as_arrays(y_true, p_old, prob_name="p_old")
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


# --------------------------------------------------------------------------- slices


def _band_labels(edges: list[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def _check_bands(age_bands: list[float]) -> list[float]:
    edges = [float(e) for e in age_bands]
    if len(edges) < 2:
        raise ValueError(f"age_bands needs at least two edges (got {age_bands})")
    if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(f"age_bands must be strictly increasing (got {age_bands})")
    return edges


def _age_band_column(ages: pl.Series, edges: list[float]) -> list[str]:
    labels = _band_labels(edges)
    arr = ages.cast(pl.Float64, strict=False).to_numpy()
    # Bands are left-closed [lo, hi); null/NaN or out-of-range ages are "unknown".
    idx = np.searchsorted(np.asarray(edges), arr, side="right") - 1
    out = []
    for a, i in zip(arr, idx):
        if a is None or not np.isfinite(a) or i < 0 or i >= len(labels):
            out.append(UNKNOWN)
        else:
            out.append(labels[i])
    return out


def _string_column(series: pl.Series) -> list[str]:
    values = series.cast(pl.Utf8, strict=False).to_list()
    return [UNKNOWN if v is None or str(v).strip() == "" else str(v) for v in values]


def _slice_order(values: Iterable[str], preferred: list[str] | None = None) -> list[str]:
    present = set(values)
    if preferred is not None:
        ordered = [v for v in preferred if v in present]
    else:
        ordered = sorted(v for v in present if v != UNKNOWN)
    if UNKNOWN in present:
        ordered.append(UNKNOWN)
    return ordered


def _require_columns(frame: pl.DataFrame, *names: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame is missing column(s) {missing} (has {frame.columns})")


def slice_metrics(
    frame: pl.DataFrame,
    *,
    threshold: float = 0.5,
    age_bands: list[float] | None = None,
    min_slice_size: int = 5,
) -> list[dict[str, Any]]:
    """binary_metrics per sex, per age band and per hospital.

    Each entry is ``{"slice": "sex"|"age_band"|"hospital", "value": str,
    "n": int, "small": n < min_slice_size, **binary_metrics}``. A column that
    is absent is skipped; null values (and ages outside every band) are
    grouped under the value "unknown" so every file is accounted for. Age
    bands are left-closed: with edges [0, 40, 60, 200], age 40 is in "40-60".
    Empty bands are omitted. Order: sex, age_band, hospital; values sorted
    (bands in edge order), "unknown" last.
    """
    _require_columns(frame, "label", "prob")
    edges = _check_bands(age_bands if age_bands is not None else [0, 40, 60, 200])
    y = frame["label"].to_numpy()
    p = frame["prob"].to_numpy()
    groups: list[tuple[str, list[str], list[str] | None]] = []
    if "sex" in frame.columns:
        groups.append(("sex", _string_column(frame["sex"]), None))
    if "age" in frame.columns:
        groups.append(("age_band", _age_band_column(frame["age"], edges), _band_labels(edges)))
    if "hospital" in frame.columns:
        groups.append(("hospital", _string_column(frame["hospital"]), None))

    out: list[dict[str, Any]] = []
    for name, column, preferred in groups:
        col = np.asarray(column, dtype=object)
        for value in _slice_order(column, preferred):
            mask = col == value
            n = int(mask.sum())
            entry: dict[str, Any] = {"slice": name, "value": value, "n": n, "small": n < min_slice_size}
            entry.update(binary_metrics(y[mask], p[mask], threshold))
            out.append(entry)
    return out


# --------------------------------------------------------------------------- report


def evaluate_predictions(
    frame: pl.DataFrame,
    cfg: EvaluationConfig,
    *,
    shortcut_prob: np.ndarray | None = None,
) -> dict[str, Any]:
    """The evaluation report of one model on one test set (JSON-serialisable).

    ``frame`` holds one row per test file with ``label`` and ``prob`` (plus
    optional ``sex``/``age``/``hospital``). ``shortcut_prob`` are the model's
    probabilities for the same rows, in the same order, after ward noise was
    mixed into the CONTROL recordings only. A model that learnt "noise means
    patient" then flags the noisy controls, and its accuracy drops.

    Returns ``{"threshold", "confidence", "bootstrap_samples", "metrics",
    "intervals", "slices", "shortcut"}``; ``metrics`` is binary_metrics plus
    ``shortcut_accuracy`` (None without a shortcut check), ``shortcut`` is
    ``{"clean_accuracy", "shortcut_accuracy", "noisy_control_accuracy",
    "clean_control_accuracy", "drop", "n_controls"}`` or None.
    """
    _require_columns(frame, "label", "prob")
    y, p = _as_arrays(frame["label"].to_numpy(), frame["prob"].to_numpy(), prob_name="prob")
    thr = float(cfg.threshold)
    metrics = binary_metrics(y, p, thr)

    shortcut: dict[str, Any] | None = None
    metrics["shortcut_accuracy"] = None
    if shortcut_prob is not None:
        _, ps = _as_arrays(y, shortcut_prob, prob_name="shortcut_prob")
        noisy = binary_metrics(y, ps, thr)
        controls = y == 0
        shortcut = {
            "clean_accuracy": metrics["accuracy"],
            "shortcut_accuracy": noisy["accuracy"],
            # Accuracy on the noisy controls alone is the most direct symptom:
            # patients are unchanged, so any drop comes from the controls.
            "noisy_control_accuracy": noisy["specificity"],
            "clean_control_accuracy": metrics["specificity"],
            "drop": (
                metrics["accuracy"] - noisy["accuracy"]
                if metrics["accuracy"] is not None and noisy["accuracy"] is not None
                else None
            ),
            "n_controls": int(controls.sum()),
        }
        metrics["shortcut_accuracy"] = noisy["accuracy"]

    return {
        "threshold": thr,
        "confidence": float(cfg.confidence),
        "bootstrap_samples": int(cfg.bootstrap_samples),
        "metrics": metrics,
        "intervals": bootstrap_intervals(
            y,
            p,
            threshold=thr,
            n_samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            seed=cfg.seed,
        ),
        "slices": slice_metrics(
            frame, threshold=thr, age_bands=list(cfg.age_bands), min_slice_size=cfg.min_slice_size
        ),
        "shortcut": shortcut,
    }


def summary_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The flat summary printed by ``spira train --json`` (keys exactly SUMMARY_KEYS)."""
    metrics = report.get("metrics") or {}
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        value = metrics.get(key)
        if key == "shortcut_accuracy" and value is None and report.get("shortcut"):
            value = report["shortcut"].get("shortcut_accuracy")
        if key == "n_files":
            out[key] = int(value) if value is not None else 0
        else:
            out[key] = _clean(value)
    return out

"""The evaluation report of one model on one test set, and its flat summary."""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from spira_lib.config import EvaluationConfig
from spira_lib.metrics.bootstrap import bootstrap_intervals
from spira_lib.metrics.curves import roc_band, roc_points, score_histogram
from spira_lib.metrics.point import SUMMARY_KEYS, as_arrays, binary_metrics, clean
from spira_lib.metrics.slices import require_columns, slice_metrics


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
    "intervals", "slices", "shortcut", "curves"}``; ``metrics`` is binary_metrics plus
    ``shortcut_accuracy`` (None without a shortcut check), ``shortcut`` is
    ``{"clean_accuracy", "shortcut_accuracy", "noisy_control_accuracy",
    "clean_control_accuracy", "drop", "n_controls"}`` or None; ``curves``
    holds what the report's pictures are drawn from (aggregates only).
    """
    require_columns(frame, "label", "prob")
    y, p = as_arrays(frame["label"].to_numpy(), frame["prob"].to_numpy(), prob_name="prob")
    thr = float(cfg.threshold)
    metrics = binary_metrics(y, p, thr)

    shortcut = None if shortcut_prob is None else _shortcut_summary(y, shortcut_prob, metrics, thr)
    metrics["shortcut_accuracy"] = None if shortcut is None else shortcut["shortcut_accuracy"]

    boot = dict(n_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed)
    return {
        "threshold": thr,
        "confidence": float(cfg.confidence),
        "bootstrap_samples": int(cfg.bootstrap_samples),
        "metrics": metrics,
        "intervals": bootstrap_intervals(y, p, threshold=thr, **boot),
        "slices": slice_metrics(
            frame, threshold=thr, age_bands=list(cfg.age_bands), min_slice_size=cfg.min_slice_size,
            interval_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed,
        ),
        "shortcut": shortcut,
        "curves": {
            "roc": roc_points(y, p),
            # Pointwise band: 200 resamples draw it smoothly; more only cost time.
            "roc_band": roc_band(y, p, n_samples=min(cfg.bootstrap_samples, 200), confidence=cfg.confidence, seed=cfg.seed),
            "scores": score_histogram(y, p),
            "scores_noisy_controls": None if shortcut_prob is None else score_histogram(y, shortcut_prob),
        },
    }


def _shortcut_summary(y: np.ndarray, shortcut_prob: np.ndarray, clean_metrics: dict[str, Any], thr: float) -> dict[str, Any]:
    """How the same clips score once ward noise is mixed into the controls only."""
    _, ps = as_arrays(y, shortcut_prob, prob_name="shortcut_prob")
    noisy = binary_metrics(y, ps, thr)
    clean_acc, noisy_acc = clean_metrics["accuracy"], noisy["accuracy"]
    return {
        "clean_accuracy": clean_acc,
        "shortcut_accuracy": noisy_acc,
        # Accuracy on the noisy controls alone is the most direct symptom:
        # patients are unchanged, so any drop comes from the controls.
        "noisy_control_accuracy": noisy["specificity"],
        "clean_control_accuracy": clean_metrics["specificity"],
        "drop": clean_acc - noisy_acc if clean_acc is not None and noisy_acc is not None else None,
        "n_controls": int((y == 0).sum()),
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
            out[key] = clean(value)
    return out

"""Rows for Prefect table artifacts: headline metrics with intervals, and metrics per slice."""
from __future__ import annotations

from typing import Any

from spira_lib.reporting.markdown import get, round_value

# Order and display names of the headline metrics.
METRIC_LABELS: dict[str, str] = {
    "roc_auc": "ROC-AUC",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1": "F1",
    "sensitivity": "Sensitivity (patients)",
    "specificity": "Specificity (controls)",
    "precision": "Precision",
    "shortcut_accuracy": "Accuracy, noisy controls",
}

SLICE_COLUMNS: tuple[str, ...] = ("roc_auc", "balanced_accuracy", "accuracy", "sensitivity", "specificity")


def metrics_table(report: dict, champion_report: dict | None = None) -> list[dict[str, Any]]:
    """Rows ``{"metric", "challenger", "ci_low", "ci_high", "champion"}`` for a table artifact."""
    metrics = get(report, "metrics") or {}
    intervals = get(report, "intervals") or {}
    champ = get(champion_report, "metrics") or {}
    rows = []
    for key in METRIC_LABELS:
        interval = intervals.get(key) if isinstance(intervals, dict) else None
        lo, hi = (None, None)
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            lo, hi = interval
        rows.append(
            {
                "metric": key,
                "challenger": round_value(metrics.get(key)),
                "ci_low": round_value(lo),
                "ci_high": round_value(hi),
                "champion": round_value(champ.get(key)) if champion_report is not None else None,
            }
        )
    return rows


def slices_table(report: dict) -> list[dict[str, Any]]:
    """Rows ``{"slice", "value", "n", "small", <SLICE_COLUMNS>...}`` for a table artifact."""
    rows = []
    for s in get(report, "slices") or []:
        if not isinstance(s, dict):
            continue
        row = {"slice": s.get("slice"), "value": s.get("value"), "n": s.get("n"), "small": s.get("small")}
        for key in SLICE_COLUMNS:
            row[key] = round_value(s.get(key))
        rows.append(row)
    return rows

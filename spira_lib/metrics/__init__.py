"""Evaluation metrics for the per-file predictions of a SPIRA model.

``point`` (AUC, confusion-matrix metrics), ``bootstrap`` (intervals, paired
AUC difference), ``slices`` (per sex / age band / hospital) and ``report``
(the whole evaluation report). All values are JSON-safe; NaN never leaves.
"""
from spira_lib.metrics.bootstrap import bootstrap_intervals, paired_auc_difference
from spira_lib.metrics.point import INTERVAL_METRICS, SUMMARY_KEYS, UNKNOWN, binary_metrics, roc_auc
from spira_lib.metrics.report import evaluate_predictions, summary_metrics
from spira_lib.metrics.slices import slice_metrics

__all__ = [
    "INTERVAL_METRICS",
    "SUMMARY_KEYS",
    "UNKNOWN",
    "binary_metrics",
    "bootstrap_intervals",
    "evaluate_predictions",
    "paired_auc_difference",
    "roc_auc",
    "slice_metrics",
    "summary_metrics",
]

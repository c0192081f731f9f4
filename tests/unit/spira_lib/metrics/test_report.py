"""The evaluation report: shortcut numbers and the flat summary."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from spira_lib.config import EvaluationConfig
from spira_lib.metrics import INTERVAL_METRICS, SUMMARY_KEYS, evaluate_predictions, roc_auc, summary_metrics


def test_evaluate_predictions_shortcut_numbers():
    # 4 patients, 4 controls. Clean: all correct except one patient (0.4).
    frame = pl.DataFrame(
        {
            "label": [1, 1, 1, 1, 0, 0, 0, 0],
            "prob": [0.9, 0.8, 0.7, 0.4, 0.1, 0.2, 0.3, 0.1],
            "sex": ["F", "M", "F", "M", "F", "M", "F", "M"],
        }
    )
    # Noise on controls only: patients identical, two controls now look like patients.
    shortcut = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.7, 0.3, 0.2])
    cfg = EvaluationConfig(bootstrap_samples=100)
    report = evaluate_predictions(frame, cfg, shortcut_prob=shortcut)
    s = report["shortcut"]
    assert s["clean_accuracy"] == pytest.approx(7 / 8)
    assert s["shortcut_accuracy"] == pytest.approx(5 / 8)
    assert s["noisy_control_accuracy"] == pytest.approx(2 / 4)
    assert s["drop"] == pytest.approx(2 / 8)
    assert s["n_controls"] == 4
    assert report["metrics"]["shortcut_accuracy"] == pytest.approx(5 / 8)
    assert report["threshold"] == 0.5
    assert set(report["intervals"]) == set(INTERVAL_METRICS)
    assert {sl["value"] for sl in report["slices"]} == {"F", "M"}
    json.dumps(report, allow_nan=False)


def test_evaluate_predictions_without_shortcut_and_length_check():
    frame = pl.DataFrame({"label": [1, 0, 1, 0], "prob": [0.9, 0.1, 0.6, 0.4]})
    report = evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=0))
    assert report["shortcut"] is None
    assert report["metrics"]["shortcut_accuracy"] is None
    assert report["intervals"] == {}
    assert report["slices"] == []
    with pytest.raises(ValueError, match="shortcut_prob"):
        evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=0), shortcut_prob=np.array([0.1, 0.2]))


def test_summary_metrics_keys_exact():
    frame = pl.DataFrame({"label": [1, 0, 1, 0], "prob": [0.9, 0.1, 0.6, 0.4]})
    noisy = np.array([0.9, 0.6, 0.6, 0.4])
    report = evaluate_predictions(frame, EvaluationConfig(bootstrap_samples=10), shortcut_prob=noisy)
    summary = summary_metrics(report)
    assert list(summary) == list(SUMMARY_KEYS)
    assert set(summary) == {
        "roc_auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "n_files", "shortcut_accuracy",
    }
    assert summary["n_files"] == 4 and summary["accuracy"] == 1.0
    assert summary["shortcut_accuracy"] == pytest.approx(0.75)
    assert summary_metrics({}) == {k: (0 if k == "n_files" else None) for k in SUMMARY_KEYS}

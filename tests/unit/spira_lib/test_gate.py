"""Champion/challenger gate: floors, slices, shortcut, paired AUC comparison."""
from __future__ import annotations

import copy
import json

import numpy as np
import polars as pl
import pytest

from spira_lib.config import EvaluationConfig, GateConfig
from spira_lib.gate import Check, Decision, decide
from spira_lib.metrics import evaluate_predictions, paired_auc_difference

CFG = GateConfig()  # auc_margin 0.02, floors 0.7 / 0.6, slice_floor 0.5, max_shortcut_drop 0.1


def _report(
    *,
    auc: float | None = 0.9,
    bal: float | None = 0.85,
    acc: float | None = 0.85,
    shortcut_acc: float | None = 0.82,
    slices: list[dict] | None = None,
    n_files: int = 60,
) -> dict:
    """A hand-written evaluate_predictions-shaped report."""
    return {
        "threshold": 0.5,
        "metrics": {
            "roc_auc": auc,
            "balanced_accuracy": bal,
            "accuracy": acc,
            "shortcut_accuracy": shortcut_acc,
            "n_files": n_files,
        },
        "intervals": {},
        "slices": slices if slices is not None else [
            {"slice": "sex", "value": "F", "n": 30, "balanced_accuracy": 0.8, "accuracy": 0.8},
            {"slice": "sex", "value": "M", "n": 30, "balanced_accuracy": 0.9, "accuracy": 0.9},
        ],
        "shortcut": None if shortcut_acc is None else {
            "clean_accuracy": acc,
            "shortcut_accuracy": shortcut_acc,
            "drop": None if acc is None else acc - shortcut_acc,
        },
    }


def _check(decision: Decision, name: str) -> Check:
    return next(c for c in decision.checks if c.name == name)


def test_first_model_promotes_when_all_checks_pass():
    d = decide(_report(), None, None, CFG, min_slice_size=5)
    assert d.promote is True
    assert all(c.passed for c in d.checks)
    assert {c.name for c in d.checks} == {"min_roc_auc", "min_balanced_accuracy", "slices", "shortcut", "champion"}
    assert len(d.reasons) == len(d.checks)
    assert "No champion" in _check(d, "champion").detail


def test_first_model_fails_floors():
    d = decide(_report(auc=0.65, bal=0.55), None, None, CFG, min_slice_size=5)
    assert d.promote is False
    assert not _check(d, "min_roc_auc").passed
    assert not _check(d, "min_balanced_accuracy").passed
    assert "0.650" in _check(d, "min_roc_auc").detail and "0.700" in _check(d, "min_roc_auc").detail
    # Failing reasons come before passing ones.
    assert d.reasons[0] in {c.detail for c in d.failed}
    assert d.reasons[1] in {c.detail for c in d.failed}
    assert d.reasons[2] not in {c.detail for c in d.failed}


def test_value_exactly_at_floor_passes():
    d = decide(_report(auc=0.7, bal=0.6, acc=0.9, shortcut_acc=0.85), None, None, CFG, min_slice_size=5)
    assert _check(d, "min_roc_auc").passed and _check(d, "min_balanced_accuracy").passed
    assert _check(d, "shortcut").passed  # drop 0.9 - 0.85 is 0.05 up to rounding


def test_worse_challenger_rejected_with_auc_difference_in_reason():
    challenger, champion = _report(auc=0.80), _report(auc=0.90)
    paired = {"diff": -0.10, "lo": -0.16, "hi": -0.04, "n_files": 60}
    d = decide(challenger, champion, paired, CFG, min_slice_size=5)
    assert d.promote is False
    check = _check(d, "champion")
    assert not check.passed
    assert "-0.100" in check.detail  # the diff
    assert "[-0.160, -0.040]" in check.detail  # its interval
    assert "0.800" in check.detail and "0.900" in check.detail  # both AUCs
    assert d.reasons[0] == check.detail


def test_non_inferiority_is_judged_on_the_interval_not_the_point_estimate():
    # The interval's lower end is within the margin: promoted.
    paired = {"diff": 0.01, "lo": -0.018, "hi": 0.04, "n_files": 60, "confidence": 0.95}
    d = decide(_report(auc=0.91), _report(auc=0.9), paired, CFG, min_slice_size=5)
    assert d.promote is True
    assert "lower end is within the allowed margin" in _check(d, "champion").detail
    assert "95% interval [-0.018, +0.040]" in _check(d, "champion").detail
    # The same small point loss, but a wide interval reaching far below the margin: not shown non-inferior.
    paired = {"diff": -0.015, "lo": -0.05, "hi": 0.02, "n_files": 60}
    d = decide(_report(auc=0.885), _report(auc=0.9), paired, CFG, min_slice_size=5)
    assert d.promote is False and [c.name for c in d.failed] == ["champion"]
    assert "may be worse than the champion" in _check(d, "champion").detail
    # No interval at all: non-inferiority cannot be shown.
    d = decide(_report(), _report(), {"diff": 0.0, "lo": None, "hi": None}, CFG, min_slice_size=5)
    assert not _check(d, "champion").passed and "interval" in _check(d, "champion").detail


def test_no_slice_large_enough_is_not_evaluated_not_passed():
    slices = [{"slice": "sex", "value": "F", "n": 3, "balanced_accuracy": 0.1, "accuracy": 0.1}]
    d = decide(_report(slices=slices), None, None, CFG, min_slice_size=5)
    check = _check(d, "slices")
    assert check.status == "not evaluated" and check.detail.startswith("Not evaluated")
    assert d.promote is True  # nothing could be judged, so nothing blocks
    assert "slices not evaluated" in d.headline
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_champion_without_paired_comparison_rejects():
    d = decide(_report(), _report(), None, CFG, min_slice_size=5)
    assert not d.promote
    assert "no paired AUC comparison" in _check(d, "champion").detail


def test_champion_on_different_clips_rejects():
    paired = {"diff": 0.05, "lo": 0.0, "hi": 0.1, "n_files": 60}
    d = decide(_report(n_files=60), _report(n_files=50), paired, CFG, min_slice_size=5)
    assert not _check(d, "champion").passed
    assert "same test clips" in _check(d, "champion").detail


def test_failing_slice_is_named_and_small_slices_ignored():
    slices = [
        {"slice": "sex", "value": "F", "n": 30, "balanced_accuracy": 0.8, "accuracy": 0.8},
        {"slice": "hospital", "value": "HU-USP", "n": 12, "balanced_accuracy": 0.41, "accuracy": 0.5},
        # Too small to judge: ignored even though it is terrible.
        {"slice": "age_band", "value": "0-40", "n": 3, "balanced_accuracy": 0.0, "accuracy": 0.0},
        # Single class: falls back on accuracy, which is fine here.
        {"slice": "hospital", "value": "HC", "n": 10, "balanced_accuracy": None, "accuracy": 0.9},
    ]
    d = decide(_report(slices=slices), None, None, CFG, min_slice_size=5)
    check = _check(d, "slices")
    assert not check.passed and not d.promote
    assert "hospital=HU-USP (n=12)" in check.detail and "0.410" in check.detail
    assert "0-40" not in check.detail and "HC" not in check.detail


def test_single_class_slice_uses_accuracy():
    slices = [{"slice": "hospital", "value": "ward", "n": 8, "balanced_accuracy": None, "accuracy": 0.25}]
    d = decide(_report(slices=slices), None, None, CFG, min_slice_size=5)
    assert "hospital=ward (n=8) accuracy 0.250" in _check(d, "slices").detail


def test_shortcut_drop_rejects():
    d = decide(_report(acc=0.85, shortcut_acc=0.6), None, None, CFG, min_slice_size=5)
    check = _check(d, "shortcut")
    assert not check.passed and not d.promote
    assert "0.250" in check.detail  # the drop


def test_missing_shortcut_rejects():
    d = decide(_report(shortcut_acc=None), None, None, CFG, min_slice_size=5)
    check = _check(d, "shortcut")
    assert not check.passed and not d.promote
    assert "not run" in check.detail


def test_shortcut_accuracy_without_shortcut_section_rejects():
    # Only the shortcut section proves the check ran; a stray metric copy does not.
    report = {**_report(), "shortcut": None}
    assert report["metrics"]["shortcut_accuracy"] is not None
    d = decide(report, None, None, CFG, min_slice_size=5)
    assert not _check(d, "shortcut").passed


def test_missing_keys_fail_without_raising():
    d = decide({}, None, None, CFG, min_slice_size=5)
    assert not d.promote
    assert {c.name for c in d.failed} == {"min_roc_auc", "min_balanced_accuracy", "slices", "shortcut"}
    assert "missing" in _check(d, "min_roc_auc").detail
    d2 = decide(_report(), {"metrics": None}, {"diff": None}, CFG, min_slice_size=5)
    assert not _check(d2, "champion").passed


def test_decision_round_trip_and_json():
    d = decide(_report(shortcut_acc=0.5), None, None, CFG, min_slice_size=5)
    data = json.loads(json.dumps(d.to_dict()))
    back = Decision.from_dict(data)
    assert back == d
    assert back.headline.startswith("reject: 1 of 5")
    with pytest.raises(ValueError, match="promote"):
        Decision.from_dict({"reasons": []})
    with pytest.raises(ValueError, match=r"checks\[0\]"):
        Decision.from_dict({"promote": True, "checks": [{"name": "x"}]})


def test_gate_on_real_reports_end_to_end():
    # Challenger is informative, champion is noise; both scored on the same clips.
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    p_new = np.clip(0.35 * y + 0.65 * rng.random(80), 0, 1)
    p_old = rng.random(80)
    frame = pl.DataFrame({"label": y, "sex": ["F", "M"] * 40})
    cfg = EvaluationConfig(bootstrap_samples=200)
    new = evaluate_predictions(frame.with_columns(prob=pl.Series(p_new)), cfg, shortcut_prob=p_new)
    old = evaluate_predictions(frame.with_columns(prob=pl.Series(p_old)), cfg, shortcut_prob=p_old)
    paired_up = paired_auc_difference(y, p_new, p_old, n_samples=200, confidence=0.95, seed=0)
    paired_down = paired_auc_difference(y, p_old, p_new, n_samples=200, confidence=0.95, seed=0)
    up = decide(new, old, paired_up, CFG, min_slice_size=5)
    down = decide(copy.deepcopy(old), new, paired_down, CFG, min_slice_size=5)
    assert _check(up, "champion").passed
    assert not _check(down, "champion").passed
    assert not down.promote

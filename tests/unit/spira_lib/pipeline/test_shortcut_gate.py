"""The honest shortcut check, end to end: a model that learnt "noise means patient" is rejected for it.

The data repeat SPIRA's confound (ward noise in patients' recordings only); the model is
trained without noise augmentation; the check mixes held-out noise recordings into the
test controls, under the shipped gate thresholds.
"""
from __future__ import annotations

import pytest

from spira_demo import generate_demo_dataset
from spira_lib.pipeline import RunSpec, run_pipeline

pytestmark = pytest.mark.slow


def test_a_noise_shortcut_model_is_rejected_by_the_shortcut_check(tmp_path, fast_overrides):
    summary = generate_demo_dataset(tmp_path / "data", speakers=60, seed=5, noise_placement="patients")
    assert summary.ward_noise_by_class.get(0, 0) == 0 and summary.ward_noise_by_class[1] > 0
    spec = RunSpec.build(tmp_path / "data", tmp_path / "reg", overrides={**fast_overrides, "augment.noisy_copies": 0})
    assert spec.config.gate.max_shortcut_drop == 0.05  # the shipped threshold
    outcome = run_pipeline(spec)
    assert outcome.promoted is False
    failed = {c["name"]: c for c in outcome.decision["checks"] if not c["passed"]}
    assert "shortcut" in failed, outcome.decision
    metrics = spec.workspace().registry.get("spira", version=1).metadata["metrics"]
    assert metrics["shortcut_accuracy"] < metrics["accuracy"] - 0.05
    # The report says which noise the check used: recordings training never heard.
    import json

    reg = spec.workspace().registry
    shortcut = json.loads(reg.load_artifact(reg.get("spira", version=1), "report.json"))["shortcut"]
    assert shortcut["noise_held_out"] is True and shortcut["noise_files"]
    assert set(shortcut["noise_files"]).isdisjoint(shortcut["augmentation_noise_files"])

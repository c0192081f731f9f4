"""The spira-drift artifact, rendered from drift checks built on synthetic profiles (no audio, no model)."""
from __future__ import annotations

import base64
import re

import numpy as np

from spira_lib.monitoring import ProfileTable, ReferenceProfile, drift_report
from spira_lib.monitoring.run import ConceptDrift, DriftCheck
from spira_lib.reporting.drift import drift_markdown


def table(level_db: float, n: int, seed: int) -> ProfileTable:
    rng = np.random.default_rng(seed)
    return ProfileTable.from_profiles({f"c{seed}-{i}": {"rms_dbfs": level_db + rng.normal(0, 2), "speech_ratio": rng.uniform(0.4, 0.8)}
                                       for i in range(n)})


def check(shift_db: float, **kw) -> DriftCheck:
    ref = ReferenceProfile.build(table(-25, 60, 1))
    report = drift_report(ref, table(-25 + shift_db, 30, 2), batch="b1")
    status = "drifted" if report.drifted else "no-drift"
    return DriftCheck(model="spira", version=3, source="score", batch="b1", n_clips=30, status=status, message="m", report=report, **kw)


def images(md: str) -> list[str]:
    return [base64.b64decode(m).decode() for m in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", md)]


def test_a_drifted_batch_shows_what_moved_with_a_picture_of_both_distributions():
    md = drift_markdown(check(-12))
    assert md.startswith("## Drift: b1 vs spira v3") and "**Drift detected**" in md
    assert "| rms_dbfs | dBFS | -24.958 | -36.657 |" in md and "**moved**" in md
    (svg,) = images(md)  # one picture: only rms_dbfs moved
    assert "rms_dbfs: reference vs batch" in svg and "reference (training clips)" in svg and "share of clips" in svg
    assert "How to read this" in md


def test_an_unshifted_batch_says_no_drift_and_draws_nothing():
    md = drift_markdown(check(0))
    assert "No drift" in md and images(md) == [] and "**moved**" not in md


def test_missing_reference_and_concept_drift_are_said_in_words():
    none = DriftCheck(model="spira", version=1, source="score", batch="b", n_clips=5, status="no-reference",
                      message="spira v1 was registered without a drift reference")
    assert "Not tested: spira v1 was registered without a drift reference" in drift_markdown(none)
    concept = ConceptDrift(n_clips=40, n_patients=20, n_controls=20, confidence=0.95, roc_auc=0.61, interval=[0.45, 0.76],
                           registered_roc_auc=0.9, registered_interval=[0.82, 0.96], message="champion v1 ROC-AUC ...")
    md = drift_markdown(check(0, concept=concept))
    assert "0.610 [0.450, 0.760]" in md and "0.900 [0.820, 0.960]" in md and "decayed on fresh data" in md
    assert concept.decayed

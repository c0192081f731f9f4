"""drift_report: one BH family, severity, pictures of moved features, the event payload, JSON."""
from __future__ import annotations

import numpy as np
import pytest

from spira_lib.monitoring.profile import FEATURE_NAMES
from spira_lib.monitoring.reference import ProfileTable, ReferenceProfile
from spira_lib.monitoring.report import DRIFT_EVENT, DriftReport, DriftThresholds, drift_report, picture

SPREAD = {name: 1.0 + i for i, name in enumerate(FEATURE_NAMES)}


def table(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> ProfileTable:
    shift = shift or {}
    profiles = {
        f"c{i}": {k: float(rng.normal(shift.get(k, 0.0) * SPREAD[k], SPREAD[k])) for k in FEATURE_NAMES} for i in range(n)
    }
    return ProfileTable.from_profiles(profiles)


def reference(seed: int = 0, n: int = 500, **kwargs) -> ReferenceProfile:
    return ReferenceProfile.build(table(np.random.default_rng(seed), n), **kwargs)


def test_unshifted_batches_raise_no_alarm_at_the_stated_rate():
    ref = reference()
    reports = [drift_report(ref, table(np.random.default_rng(100 + s), 100), batch=f"b{s}") for s in range(40)]
    alarms = sum(r.drifted for r in reports)
    assert alarms <= 2  # nominal <= 1% of 40
    quiet = [r for r in reports if not r.drifted]
    assert all(r.severity == "none" and r.moved == [] and r.pictures == [] for r in quiet)


def test_a_level_shift_is_major_names_the_feature_and_has_a_picture():
    ref = reference()
    rep = drift_report(ref, table(np.random.default_rng(1), 100, {"rms_dbfs": -1.5}), batch="upload-42")
    assert rep.drifted and rep.severity == "major"
    assert rep.moved[0] == "rms_dbfs"
    (pic,) = [p for p in rep.pictures if p.feature == "rms_dbfs"]
    assert pic.unit == "dBFS" and len(pic.bin_edges) == len(pic.ref_fraction) + 1
    assert sum(pic.ref_fraction) == pytest.approx(1.0) and sum(pic.cur_fraction) == pytest.approx(1.0)
    assert pic.cur_quantiles[2] < pic.ref_quantiles[2]
    payload = rep.event_payload()
    assert payload["event"] == DRIFT_EVENT == "spira.drift.detected"
    assert payload["severity"] == "major" and payload["batch"] == "upload-42" and "rms_dbfs" in payload["features"]
    assert payload["shifts"]["rms_dbfs"]["unit"] == "dBFS"


def test_a_small_but_significant_shift_is_minor():
    ref = reference(n=4000)
    rep = drift_report(ref, table(np.random.default_rng(2), 3000, {"snr_db": 0.3}), batch="big")
    assert rep.moved == ["snr_db"]
    assert rep.severity == "minor"
    strict = drift_report(ref, table(np.random.default_rng(2), 3000, {"snr_db": 0.3}), batch="big",
                          thresholds=DriftThresholds(major_wasserstein_norm=0.2))
    assert strict.severity == "major"


def test_all_tests_share_one_bh_family():
    rng = np.random.default_rng(3)
    ref = reference(categorical={"sex": {"F": 250, "M": 250}}, embeddings=rng.normal(size=(200, 6)))
    rep = drift_report(
        ref, table(rng, 100), batch="b", cur_embeddings=rng.normal(1.0, 1.0, size=(100, 6)),
        cur_categorical={"sex": {"F": 90, "M": 10}, "hospital": {"X": 100}},
    )
    # Every profile feature + embedding + sex (hospital has no reference counts: not tested).
    assert [c.name for c in rep.categorical] == ["sex"]
    ps = [f.p_value for f in rep.features] + [rep.embedding.p_value] + [rep.categorical[0].p_value]
    assert len(ps) == len(FEATURE_NAMES) + 2
    from scipy.stats import false_discovery_control

    q = false_discovery_control(ps)
    assert rep.embedding.p_adjusted == pytest.approx(q[-2]) and rep.categorical[0].p_adjusted == pytest.approx(q[-1])
    assert {"embedding", "sex"} <= set(rep.moved) and rep.severity == "major"


def test_report_is_json_round_trippable():
    rng = np.random.default_rng(4)
    ref = reference(embeddings=rng.normal(size=(50, 4)))
    rep = drift_report(ref, table(rng, 60, {"duration_s": 2.0}), batch="b", cur_embeddings=rng.normal(size=(60, 4)), n_permutations=100)
    back = DriftReport.model_validate_json(rep.model_dump_json())
    assert back == rep


def test_picture_of_a_constant_feature_does_not_divide_by_zero():
    pic = picture("channels", np.ones(50), np.full(20, 2.0))
    assert pic.bin_edges[0] <= 1.0 < 2.0 <= pic.bin_edges[-1] + 1e-9
    assert sum(pic.ref_fraction) == pytest.approx(1.0)

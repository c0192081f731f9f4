"""The drift step on scored batches: a champion's stored reference vs the clips it just scored (in memory, random model)."""
from __future__ import annotations

import json

from spira_lib.monitoring.run import REFERENCE_ARTIFACT, DriftCheck, load_reference
from spira_lib.scoring import run_scoring
from tests.unit.spira_lib.monitoring._drift_helpers import N_REF, champion_with_reference, fill_inbox, gain


def test_the_reference_keeps_profiles_categories_and_the_models_embeddings():
    spec, frame = champion_with_reference()
    ws = spec.workspace()
    mv = ws.registry.champion("spira")
    ref, why = load_reference(ws, mv)
    assert why == "" and ref.n_clips == N_REF
    assert ref.categorical["label"] == {"0": N_REF // 2, "1": N_REF // 2} and set(ref.categorical["sex"]) == {"F", "M"}
    assert ref.embeddings is not None and ref.embedding_model == mv.artifacts["model.pt"]["sha256"]
    assert b"train/seed" not in ws.registry.load_artifact(mv, REFERENCE_ARTIFACT)  # statistics, not file names


def test_a_batch_recorded_12_db_quieter_drifts_on_the_level_features():
    spec, _ = champion_with_reference()
    fill_inbox(spec, 12, gain(-12))
    check = run_scoring(spec).drift
    assert check.status == "drifted" and check.drifted and check.report.severity == "major"
    assert {"rms_dbfs", "active_level_dbfs", "peak_dbfs"} <= set(check.report.moved)
    rms = next(f for f in check.report.features if f.name == "rms_dbfs")
    assert rms.p_adjusted < 1e-6 and rms.cur_median - rms.ref_median < -10
    assert {p.feature for p in check.report.pictures} == {f.name for f in check.report.features if f.moved}
    payload = check.event_payload()
    assert payload["severity"] == "major" and payload["batch_size"] == 12 and payload["version"] == 1
    assert "rms_dbfs" in payload["features"] and payload["source"] == "score"
    assert "joao" not in json.dumps(payload) and "joao" not in check.model_dump_json()  # no patient names


def test_a_batch_from_the_same_recording_chain_does_not_drift():
    spec, _ = champion_with_reference()
    fill_inbox(spec, 12)
    check = run_scoring(spec).drift
    assert check.status == "no-drift" and not check.report.moved and check.report.severity == "none"
    assert check.report.embedding is not None and check.report.embedding.moved is False
    assert check.message.startswith("no drift")


def test_a_champion_registered_before_drift_monitoring_says_so_and_scoring_goes_on():
    spec, _ = champion_with_reference(reference=False)
    fill_inbox(spec, 10, gain(-12))
    out = run_scoring(spec)
    assert out.champion.n_scored == 10
    assert out.drift.status == "no-reference" and out.drift.report is None and not out.drift.drifted
    assert "registered without a drift reference" in out.drift.message


def test_too_few_clips_are_reported_in_words_not_tested():
    spec, _ = champion_with_reference(overrides={"drift.min_clips": 20})
    fill_inbox(spec, 6, gain(-12))
    check = run_scoring(spec).drift
    assert check.status == "too-few" and check.report is None
    assert "6 profiled, drift.min_clips = 20" in check.message


def test_drift_monitoring_can_be_switched_off():
    spec, _ = champion_with_reference(overrides={"drift.enabled": False})
    fill_inbox(spec, 10, gain(-12))
    assert run_scoring(spec).drift.status == "disabled"


def test_a_rerun_that_scores_nothing_new_tests_nothing():
    spec, _ = champion_with_reference()
    fill_inbox(spec, 10)
    run_scoring(spec)
    assert run_scoring(spec).drift is None


def test_the_check_round_trips_as_json():
    spec, _ = champion_with_reference()
    fill_inbox(spec, 10, gain(-12))
    check = run_scoring(spec).drift
    assert DriftCheck.model_validate_json(check.model_dump_json()) == check

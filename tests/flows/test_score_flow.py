"""spira-score under prefect_test_harness: the champion scores, the challenger shadows, the batch is checked for drift,
artifacts use pseudonyms."""
from __future__ import annotations

import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.testing.utilities import prefect_test_harness

from flows.score import score_flow
from tests.unit.spira_lib.monitoring._drift_helpers import BASE as DRIFT_OVERRIDES
from tests.unit.spira_lib.monitoring._drift_helpers import champion_with_reference, fill_inbox, gain
from tests.unit.spira_lib.scoring._helpers import setup

pytestmark = pytest.mark.slow
OVERRIDES = {"audio.min_duration_s": 1.0, "model.window_s": 1.0}


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_scoring_flow_scores_shadows_and_reports(tmp_path):
    spec = setup(5, challenger=True)
    spec.workspace().data.put("batch/joao-da-silva-broken.wav", b"RIFFxxxxWAVEjunk")
    state = score_flow(inbox_uri=spec.data_uri, registry_uri=spec.registry_uri, overrides=OVERRIDES, return_state=True)
    assert state.is_completed(), state
    outcome = state.result()
    assert outcome.champion.n_scored == 5 and len(outcome.champion.rejected) == 1
    assert outcome.shadow is not None and outcome.shadow.n_clips == 5
    assert state.message.startswith("scored 5 new recording(s) with spira v1 (1 rejected); shadow v2 agreement")
    with get_client(sync_client=True) as c:
        run = c.read_flow_run(state.state_details.flow_run_id)
        arts = {a.key: a for a in c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
    assert {"scored", "shadow"} <= set(run.tags)
    assert {"spira-scored-batch", "spira-shadow"} <= set(arts)
    text = arts["spira-scored-batch"].data + arts["spira-shadow"].data
    assert "joao" not in text and "clip0" not in text and "p-" in text  # recordings appear only as pseudonyms
    again = score_flow(inbox_uri=spec.data_uri, registry_uri=spec.registry_uri, overrides=OVERRIDES)
    assert again.champion.n_scored == 0 and again.champion.n_known == 5


def test_a_run_without_an_inbox_fails_saying_what_to_pass():
    state = score_flow(registry_uri="unused", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="SPIRA_INBOX_URI"):
        state.result()


def _drift_events(flow_run_id, timeout_s: float) -> list:
    """spira.drift.* events of the flow run (the server stores events in batches, so wait a little for them)."""
    flt = EventFilter(event=EventNameFilter(prefix=["spira.drift."]), related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as c:
            events = c.read_events(filter=flt, limit=50).events
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def _drift_run(shift) -> tuple:
    spec, _ = champion_with_reference()
    fill_inbox(spec, 12, shift)
    state = score_flow(inbox_uri=spec.data_uri, registry_uri=spec.registry_uri, overrides=DRIFT_OVERRIDES, return_state=True)
    assert state.is_completed(), state
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as c:
        arts = {a.key: a for a in c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))}
        tags = set(c.read_flow_run(run_id).tags)
    return state, arts, tags, run_id


def test_a_batch_recorded_12_db_quieter_publishes_drift_and_emits_the_event():
    state, arts, tags, run_id = _drift_run(gain(-12))
    assert "major drift" in state.message and "drift" in tags
    md = arts["spira-drift"].data
    assert "**Drift detected**" in md and "data:image/svg+xml;base64," in md and "| rms_dbfs |" in md
    assert "joao" not in md
    (event,) = _drift_events(run_id, timeout_s=20)
    assert event.event == "spira.drift.detected" and event.resource.id == "spira.model.spira.v1"
    assert event.resource["spira.drift.source"] == "score" and event.resource["spira.drift.severity"] == "major"
    assert event.payload["severity"] == "major" and "rms_dbfs" in event.payload["features"]
    assert event.payload["batch_size"] == 12 and event.payload["batch"] == state.result().champion.batch_id
    assert "joao" not in str(event.payload)


def test_a_batch_from_the_same_recording_chain_reports_no_drift_and_emits_nothing():
    state, arts, tags, run_id = _drift_run(lambda b: b)
    assert "drift" not in state.message and "drift" not in tags
    assert arts["spira-drift"].data.count("No drift") == 1 and "data:image" not in arts["spira-drift"].data
    assert _drift_events(run_id, timeout_s=3) == []

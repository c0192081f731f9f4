"""spira-score under prefect_test_harness: the champion scores, the challenger shadows, artifacts use pseudonyms."""
from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.testing.utilities import prefect_test_harness

from flows.score import score_flow
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

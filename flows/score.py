"""spira-score: the champion scores new recordings in an inbox; a challenger scores them in shadow.

After scoring, the newly scored clips are compared with the champion's drift
reference (``spira-drift`` artifact; ``spira.drift.detected`` when they moved).

Triggered by uploads under the inbox prefix (the same bridge and burst rule as
spira-retrain) or on demand. The order of the steps is the core's
(``spira_lib.scoring.run.score``); ``TaskScoring`` runs each as a task.
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.common import check_trigger, mark_run
from spira_lib.pipeline import RunSpec
from spira_lib.scoring import ScoreOutcome, score
from tasks import drift as d
from tasks import scoring as t


class TaskScoring:
    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def models(self):
        return t.resolve_models(self.spec)

    def champion_batch(self, champion):
        return t.score_with_champion(self.spec, champion)

    def drift(self, champion, batch):
        return d.check_batch_drift(self.spec, champion, batch)

    def shadow(self, champion, challenger, batch):
        return t.shadow_score(self.spec, champion, challenger, batch)

    def promote_if_ready(self, report):
        return t.promote_if_ready(self.spec, report)


def score_message(outcome: ScoreOutcome) -> str:
    b = outcome.champion
    text = f"scored {b.n_scored} new recording(s) with {b.model} v{b.version} ({len(b.rejected)} rejected)"
    if outcome.drift is not None and outcome.drift.drifted:
        text += f"; {outcome.drift.report.severity} drift" if outcome.drift.report else "; drift"
    if outcome.shadow is not None:
        text += f"; shadow v{outcome.shadow.challenger} agreement {outcome.shadow.tally['agreement']:.2f}"
    if outcome.promoted_challenger is not None:
        text += f"; promoted v{outcome.promoted_challenger}"
    return text


@flow(name="spira-score", log_prints=True)
def score_flow(
    inbox_uri: Optional[str] = None,
    registry_uri: str = "demo/registry",
    model_name: str = "spira",
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
    trigger: Optional[str] = None,
    event_id: Optional[str] = None,
) -> State:
    """Score the inbox's recordings that the champion has not scored yet (Parquet next to the registry).

    ``inbox_uri`` is optional only so that a deployment made without
    ``$SPIRA_INBOX_URI`` still deploys (for on-demand runs with the inbox as a
    parameter); a run without one stops with a message saying what to pass.
    """
    if not inbox_uri:
        raise ValueError("spira-score needs inbox_uri: pass it to the run (e.g. --param inbox_uri=s3://bucket/inbox) "
                         "or set SPIRA_INBOX_URI when you deploy")
    check_trigger(trigger, inbox_uri)
    spec = RunSpec.build(inbox_uri, registry_uri, config_path=config_path, overrides=overrides, model_name=model_name)
    outcome = score(TaskScoring(spec), get_run_logger().info)
    mark_run(["scored"] + (["shadow"] if outcome.shadow else []) + (["drift"] if outcome.drift and outcome.drift.drifted else []))
    return Completed(message=score_message(outcome), data=outcome)

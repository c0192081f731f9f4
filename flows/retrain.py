"""spira-retrain: the continuous-training flow.

Composition only: the step order and the skip rule are the core's
(``spira_lib.pipeline.sequence.retrain``); this flow supplies ``TaskSteps``,
which runs each step as a task from ``tasks/``.
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger, unmapped
from prefect.events import emit_event
from prefect.states import Completed, State

from flows.common import check_trigger, mark_run, rename_run
from flows.runners import make_task_runner
from spira_lib.pipeline import RunOutcome, RunSpec, retrain
from spira_lib.pipeline.contract import (
    Compared, Evaluated, FeaturesReady, Promoted, Registered, SnapshotRef, SplitRef, Trained, TrainedVersion, Validated,
)
from spira_lib.pipeline.data_steps import feature_chunk_count, merge_features
from spira_lib.ports import PublishedModel
from spira_lib.watch import MODEL_PROMOTED_EVENT, MODEL_REJECTED_EVENT, model_resource_id
from spira_lib.monitoring.run import DriftCheck
from tasks import drift as d
from tasks import retrain as t


class TaskSteps:
    """The retrain steps as Prefect tasks; ``force`` refreshes the cached ones."""

    def __init__(self, spec: RunSpec, *, force: bool = False) -> None:
        self.spec, self.force = spec, force

    def _fresh(self, task):
        return task.with_options(refresh_cache=True) if self.force else task

    def snapshot(self) -> SnapshotRef:
        snap = t.snapshot_dataset(self.spec)
        rename_run(f"retrain-{snap.digest[:10]}")
        return snap

    def validate(self, snapshot: SnapshotRef) -> Validated:
        return t.validate_dataset(self.spec, snapshot)

    def validation_failed(self, validated: Validated) -> None:
        t.publish_failure_report(self.spec, validated)

    def split(self, validated: Validated) -> SplitRef:
        return t.split_dataset(self.spec, validated)

    def find_trained(self, split: SplitRef) -> TrainedVersion | None:
        return t.find_trained_version(self.spec, split)

    def skipped(self, split: SplitRef, existing: TrainedVersion) -> None:
        t.publish_skip_report(self.spec, split, existing)

    def finish_decision(self, existing: TrainedVersion) -> TrainedVersion:
        return t.finish_decision(self.spec, existing)

    def drift(self, split: SplitRef) -> DriftCheck:
        return d.check_new_data_drift(self.spec, split)

    def features(self, split: SplitRef) -> FeaturesReady:
        """Fan the feature stage out over the flow's task runner (threads, or Dask when configured)."""
        count = feature_chunk_count(split, self.spec.config.runtime.feature_chunk_clips)
        futures = self._fresh(t.extract_features).map(unmapped(self.spec), unmapped(split), range(count), unmapped(count))
        return merge_features([f.result() for f in futures])

    def train(self, split: SplitRef, features: FeaturesReady) -> Trained:
        return self._fresh(t.train_model)(self.spec, split, features)

    def evaluate(self, trained: Trained) -> Evaluated:
        return self._fresh(t.evaluate_model)(self.spec, trained)

    def compare(self, evaluated: Evaluated) -> Compared:
        return t.compare_with_champion(self.spec, evaluated)

    def register(self, compared: Compared) -> Registered:
        return t.register_model(self.spec, compared, self.force)

    def promote(self, registered: Registered) -> Promoted:
        return t.promote_or_reject(self.spec, registered)

    def hand_off(self) -> PublishedModel | None:
        return t.hand_off_to_serving(self.spec)

    def report(self, promoted: Promoted) -> None:
        t.publish_report(self.spec, promoted)


@flow(name="spira-retrain", log_prints=True, task_runner=make_task_runner())
def retrain_flow(
    data_uri: str = "demo/data",
    registry_uri: str = "demo/registry",
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
    model_name: str = "spira",
    force: bool = False,
    trigger: Optional[str] = None,
    event_id: Optional[str] = None,
) -> State:
    """Snapshot -> validate -> split -> drift -> features -> train -> evaluate -> compare -> register -> promote -> report.

    ``trigger``/``event_id`` come from the S3 event that started the run (for the
    record); the run always snapshots the whole dataset itself, since a burst of
    uploads reaches it as one (first) event.
    """
    log = get_run_logger()
    check_trigger(trigger, data_uri)
    spec = RunSpec.build(data_uri, registry_uri, config_path=config_path, overrides=overrides, model_name=model_name)
    if trigger:
        # The object's name may name a patient: the log shows where it was, and its pseudonym.
        shown = f"{data_uri.rstrip('/')}/{spec.workspace().pseudonyms(spec.config)(trigger)}"
        log.info("triggered by an upload under %s (object %s, event %s)", data_uri, shown, event_id)
    return finish(retrain(TaskSteps(spec, force=force), model_name=model_name, force=force, say=log.info))


def outcome_message(outcome: RunOutcome) -> str:
    """One line for the run's state: what happened to which version, and which check said no."""
    name = f"{outcome.model} v{outcome.version}"
    if outcome.skipped and outcome.promoted is None:
        return f"nothing to train: {name} was already trained on this data"
    if outcome.skipped:  # an earlier run registered it and stopped before the gate's decision
        return "nothing to train; recorded the interrupted run's decision: " + _decided_message(outcome, name)
    return _decided_message(outcome, name)


def _decided_message(outcome: RunOutcome, name: str) -> str:
    if outcome.promoted:
        return f"promoted {name}"
    if outcome.held:
        return f"held {name} as challenger: waits for shadow scoring"
    failed = [c.get("name") for c in (outcome.decision or {}).get("checks", []) if c.get("passed") is False]
    return f"rejected {name}: " + (", ".join(f"{n} check" for n in failed) or "not promoted")


def finish(outcome: RunOutcome) -> State:
    """End the run so its outcome shows at a glance: a state message, a tag, and an event automations can use."""
    decided = outcome.promoted is not None  # trained and decided now, or an interrupted run's decision recorded
    verdict = "promoted" if outcome.promoted else "held" if outcome.held else "rejected" if decided else "skipped"
    mark_run([verdict], f"{verdict}-v{outcome.version}")
    if decided:
        emit_event(
            event=MODEL_PROMOTED_EVENT if outcome.promoted else MODEL_REJECTED_EVENT,
            resource={
                "prefect.resource.id": model_resource_id(outcome.model, outcome.version),
                "prefect.resource.name": f"{outcome.model} v{outcome.version}",
                "spira.model": outcome.model,
                "spira.version": str(outcome.version),
            },
            payload={"message": outcome_message(outcome), "metrics": outcome.metrics, "uri": outcome.uri},
        )
    return Completed(message=outcome_message(outcome), data=outcome)

"""The order of a retrain run and its skip rule, written once.

``retrain(steps)`` is the whole run: snapshot -> validate -> split -> (already
trained? stop) -> drift of the new clips vs the champion -> features -> train
-> evaluate -> compare -> register -> promote -> report. *How* each step executes is the ``Steps`` object's
business: ``LocalSteps`` calls the core directly (``spira train``), the Prefect
flow passes an object that runs each step as a task. Both return the same
``RunOutcome``.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from spira_lib.monitoring.run import DriftCheck
from spira_lib.pipeline import data_steps as D
from spira_lib.pipeline import drift_steps as F
from spira_lib.pipeline import model_steps as M
from spira_lib.pipeline.contract import (
    Compared, Evaluated, FeaturesReady, Promoted, Registered, RunOutcome, RunSpec, SnapshotRef, SplitRef, Trained,
    TrainedVersion, Validated,
)
from spira_lib.pipeline.hand_off import hand_off_champion
from spira_lib.pipeline.workspace import PipelineError
from spira_lib.ports import PublishedModel
from spira_lib.training import EpochStats

Say = Callable[[str], None]


class Steps(Protocol):
    """One way of executing the steps of a run (directly, or as orchestrated tasks)."""

    def snapshot(self) -> SnapshotRef: ...
    def validate(self, snapshot: SnapshotRef) -> Validated: ...
    def validation_failed(self, validated: Validated) -> None: ...
    def split(self, validated: Validated) -> SplitRef: ...
    def find_trained(self, split: SplitRef) -> TrainedVersion | None: ...
    def skipped(self, split: SplitRef, existing: TrainedVersion) -> None: ...
    def finish_decision(self, existing: TrainedVersion) -> TrainedVersion: ...
    def drift(self, split: SplitRef) -> DriftCheck: ...
    def features(self, split: SplitRef) -> FeaturesReady: ...
    def train(self, split: SplitRef, features: FeaturesReady) -> Trained: ...
    def evaluate(self, trained: Trained) -> Evaluated: ...
    def compare(self, evaluated: Evaluated) -> Compared: ...
    def register(self, compared: Compared) -> Registered: ...
    def promote(self, registered: Registered) -> Promoted: ...
    def hand_off(self) -> PublishedModel | None: ...
    def report(self, promoted: Promoted) -> None: ...


def retrain(steps: Steps, *, model_name: str, force: bool = False, say: Say = lambda _m: None) -> RunOutcome:
    """Run the steps in order; raise PipelineError when validation leaves too little data."""
    t0 = time.perf_counter()
    snap = steps.snapshot()
    say(snap.describe())
    validated = steps.validate(snap)
    say(validated.describe())
    if not validated.ok:
        steps.validation_failed(validated)
        raise PipelineError(f"not enough valid data to train: {validated.message}")
    split = steps.split(validated)
    say(split.describe())
    existing = None if force else steps.find_trained(split)
    if existing is not None:
        return _already_trained(steps, split, existing, model_name, say, t0)
    say(steps.drift(split).describe())  # before training: has the new data moved away from the champion's?
    promoted = _train_and_decide(steps, split, say)
    published = steps.hand_off() if promoted.promoted else None
    if published is not None:
        say(f"handed off to serving: {published.uri} (version {published.version} at {published.location})")
    steps.report(promoted)
    registered, compared = promoted.registered, promoted.registered.compared
    say(f"{model_name} {promoted.describe()} ({registered.uri})")
    return RunOutcome(
        model=model_name, version=registered.version, skipped=False, promoted=promoted.promoted,
        metrics=compared.evaluated.metrics, decision=compared.decision, uri=registered.uri,
        seconds=round(time.perf_counter() - t0, 2), held=promoted.held, served=None if published is None else published.uri,
    )


def _already_trained(steps: Steps, split: SplitRef, existing: TrainedVersion, model_name: str, say: Say, t0: float) -> RunOutcome:
    """Nothing to train. A version whose run died before its gate decision gets that decision now."""
    say(f"split {split.split_digest[:12]} of snapshot {split.snapshot_digest[:12]} was already trained with this "
        f"config and code: {model_name} v{existing.version}; nothing to train")
    published, finished = None, not existing.decided
    if finished:
        say(f"{model_name} v{existing.version} was registered by a run that stopped before its gate decision was "
            "recorded; recording the decision stored with it")
        existing = steps.finish_decision(existing)
        published = steps.hand_off() if existing.promoted else None
    steps.skipped(split, existing)
    return RunOutcome(model=model_name, version=existing.version, skipped=True, promoted=existing.promoted,
                      metrics=existing.metrics, decision=existing.decision if finished else None, uri=existing.uri,
                      seconds=round(time.perf_counter() - t0, 2), held=existing.held,
                      served=None if published is None else published.uri)


def _train_and_decide(steps: Steps, split: SplitRef, say: Say) -> Promoted:
    feats = steps.features(split)
    say(feats.describe())
    trained = steps.train(split, feats)
    say(trained.describe())
    evaluated = steps.evaluate(trained)
    say(evaluated.describe())
    compared = steps.compare(evaluated)
    say(compared.describe())
    registered = steps.register(compared)
    say(registered.describe())
    return steps.promote(registered)


class LocalSteps:
    """Every step called directly in this process (``spira train``, tests, benchmarks)."""

    def __init__(self, spec: RunSpec, *, force: bool = False, on_epoch: Callable[[EpochStats], None] | None = None) -> None:
        self.spec, self.force, self.on_epoch = spec, force, on_epoch

    def snapshot(self) -> SnapshotRef:
        return D.snapshot_step(self.spec)

    def validate(self, snapshot: SnapshotRef) -> Validated:
        return D.validate_step(self.spec, snapshot)

    def validation_failed(self, validated: Validated) -> None:
        pass  # the raised PipelineError carries the message

    def split(self, validated: Validated) -> SplitRef:
        return D.split_step(self.spec, validated)

    def find_trained(self, split: SplitRef) -> TrainedVersion | None:
        return M.find_trained(self.spec, split)

    def skipped(self, split: SplitRef, existing: TrainedVersion) -> None:
        pass

    def finish_decision(self, existing: TrainedVersion) -> TrainedVersion:
        return M.finish_decision(self.spec, existing)

    def drift(self, split: SplitRef) -> DriftCheck:
        return F.new_data_drift_step(self.spec, split)

    def features(self, split: SplitRef) -> FeaturesReady:
        return D.features_step(self.spec, split)

    def train(self, split: SplitRef, features: FeaturesReady) -> Trained:
        return M.train_step(self.spec, split, features, on_epoch=self.on_epoch)

    def evaluate(self, trained: Trained) -> Evaluated:
        return M.evaluate_step(self.spec, trained)

    def compare(self, evaluated: Evaluated) -> Compared:
        return M.compare_step(self.spec, evaluated)

    def register(self, compared: Compared) -> Registered:
        return M.register_step(self.spec, compared, force=self.force)

    def promote(self, registered: Registered) -> Promoted:
        return M.promote_step(self.spec, registered)

    def hand_off(self) -> PublishedModel | None:
        return hand_off_champion(self.spec.workspace(), self.spec.model_name, self.spec.config.evaluation.threshold)

    def report(self, promoted: Promoted) -> None:
        pass


def run_pipeline(
    spec: RunSpec, *, force: bool = False, say: Say = lambda _m: None, on_epoch: Callable[[EpochStats], None] | None = None
) -> RunOutcome:
    """The whole retrain run without orchestration."""
    return retrain(LocalSteps(spec, force=force, on_epoch=on_epoch), model_name=spec.model_name, force=force, say=say)

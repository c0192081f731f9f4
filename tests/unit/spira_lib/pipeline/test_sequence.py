"""The step order and the skip rule, against a fake Steps that records what ran (no storage, no model)."""
from __future__ import annotations

import pytest

from spira_lib.monitoring.run import DriftCheck
from spira_lib.pipeline import PipelineError, retrain
from spira_lib.pipeline.contract import (
    Compared, Evaluated, FeaturesReady, Promoted, Registered, SnapshotRef, SplitRef, Trained, TrainedVersion, Validated,
)

SNAP = SnapshotRef(digest="s" * 64, manifest_key="m", n_rows=4, csvs=["a.csv"])
SPLIT = SplitRef(snapshot_digest="s" * 64, split_digest="p" * 64, split_key="k", quarantine_key="q",
                 summary={"counts": {"split": {"train": 2, "eval": 1, "test": 1}}})
FEATS = FeaturesReady(extractor_key="e", aug_key="a", noise_files=1)
TRAINED = Trained(split=SPLIT, training_key="t", checkpoint_key="c", training_json_key="j", epochs_run=3, best_epoch=2,
                  seconds=1.0, device="cpu")
EVALUATED = Evaluated(trained=TRAINED, report_key="r", predictions_key="p", metrics={"roc_auc": 0.9})


class FakeSteps:
    def __init__(self, *, ok=True, existing=None, promote=True):
        self.calls: list[str] = []
        self.ok, self.existing, self.promote_it = ok, existing, promote

    def _log(self, name, value):
        self.calls.append(name)
        return value

    def snapshot(self):
        return self._log("snapshot", SNAP)

    def validate(self, snapshot):
        assert snapshot is SNAP
        return self._log("validate", Validated(snapshot_digest=SNAP.digest, ok=self.ok, message="too few clips",
                                               n_rows=4, n_good=4, n_quarantined=0, quarantine_key="q", good_key="g"))

    def validation_failed(self, validated):
        self._log("validation_failed", None)

    def split(self, validated):
        return self._log("split", SPLIT)

    def find_trained(self, split):
        return self._log("find_trained", self.existing)

    def skipped(self, split, existing):
        self._log("skipped", None)

    def drift(self, split):
        assert split is SPLIT
        return self._log("drift", DriftCheck(model="spira", version=None, source="retrain", batch="b", n_clips=0,
                                             status="no-champion", message="no champion yet"))

    def features(self, split):
        return self._log("features", FEATS)

    def train(self, split, features):
        assert (split, features) == (SPLIT, FEATS)
        return self._log("train", TRAINED)

    def evaluate(self, trained):
        return self._log("evaluate", EVALUATED)

    def compare(self, evaluated):
        decision = {"promote": self.promote_it, "reasons": ["why"], "checks": []}
        return self._log("compare", Compared(evaluated=evaluated, comparison_key="c", champion=None, decision=decision))

    def register(self, compared):
        return self._log("register", Registered(compared=compared, version=7, uri="u", sha256="h", created=True))

    def promote(self, registered):
        return self._log("promote", Promoted(registered=registered, promoted=registered.compared.promote))

    def finish_decision(self, existing):
        promoted = bool(existing.decision.get("promote"))
        return self._log("finish_decision", existing.model_copy(update={"decided": True, "promoted": promoted}))

    def hand_off(self):
        return self._log("hand_off", None)

    def report(self, promoted):
        self._log("report", None)


FULL = ["snapshot", "validate", "split", "find_trained", "drift", "features", "train", "evaluate", "compare", "register", "promote",
        "hand_off", "report"]


def test_a_run_executes_every_step_in_order_and_returns_the_outcome():
    steps, said = FakeSteps(), []
    outcome = retrain(steps, model_name="spira", say=said.append)
    assert steps.calls == FULL
    assert (outcome.version, outcome.promoted, outcome.skipped, outcome.metrics) == (7, True, False, {"roc_auc": 0.9})
    assert outcome.verdict == "promoted to champion"
    assert any(m.startswith("snapshot ssssssssssss") for m in said) and said[-1].startswith("spira v7 is champion")
    assert "drift (retrain, spira): no champion yet" in said  # the drift step speaks before training


def test_already_trained_data_stops_before_features():
    steps = FakeSteps(existing=TrainedVersion(version=3, uri="u3", metrics={"roc_auc": 0.8}))
    outcome = retrain(steps, model_name="spira")
    assert steps.calls == ["snapshot", "validate", "split", "find_trained", "skipped"]
    assert outcome.skipped and outcome.version == 3 and outcome.promoted is None


def test_force_does_not_look_for_an_earlier_training():
    steps = FakeSteps(existing=TrainedVersion(version=3, uri="u3", metrics={}))
    retrain(steps, model_name="spira", force=True)
    assert steps.calls == [c for c in FULL if c != "find_trained"]


def test_too_little_valid_data_reports_and_raises():
    steps = FakeSteps(ok=False)
    with pytest.raises(PipelineError, match="not enough valid data to train: too few clips"):
        retrain(steps, model_name="spira")
    assert steps.calls == ["snapshot", "validate", "validation_failed"]


def test_a_rejected_model_is_registered_but_not_promoted_nor_handed_off():
    steps = FakeSteps(promote=False)
    outcome = retrain(steps, model_name="spira")
    assert outcome.promoted is False and outcome.verdict == "registered, not promoted"
    assert "hand_off" not in steps.calls and "report" in steps.calls


@pytest.mark.parametrize("promote", [True, False])
def test_a_version_registered_by_an_interrupted_run_gets_its_decision_recorded(promote):
    """Killed between register and promote: the re-run trains nothing but records the stored decision."""
    undecided = TrainedVersion(version=3, uri="u3", metrics={"roc_auc": 0.8}, decided=False,
                               decision={"promote": promote, "reasons": ["why"], "checks": []})
    steps, said = FakeSteps(existing=undecided), []
    outcome = retrain(steps, model_name="spira", say=said.append)
    handed = ["hand_off"] if promote else []
    assert steps.calls == ["snapshot", "validate", "split", "find_trained", "finish_decision", *handed, "skipped"]
    assert outcome.skipped and outcome.version == 3 and outcome.promoted is promote
    assert outcome.decision == undecided.decision
    assert outcome.verdict == ("promoted to champion" if promote else "registered, not promoted")
    assert any("stopped before its gate decision" in m for m in said)

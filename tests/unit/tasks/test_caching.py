"""The task cache policy: keyed by what a step depends on, computed without writing anything."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from spira_lib.bootstrap import forget_workspaces
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.contract import FeaturesReady, SnapshotRef
from tasks.caching import SpiraCachePolicy, retry_on_storage_errors, source_hash
from spira_lib.ports import StoreError


def _task(name: str, fn=None):
    return SimpleNamespace(task=SimpleNamespace(name=name, fn=fn or _step_a))


def _step_a(spec, snapshot):  # two "tasks" with different source
    return snapshot


def _step_b(spec, snapshot):
    return None


@pytest.fixture
def spec(tmp_path) -> RunSpec:
    forget_workspaces()
    return RunSpec.build(tmp_path / "data", tmp_path / "reg")


SNAP = SnapshotRef(digest="d" * 64, manifest_key="snapshots/x/manifest.parquet", n_rows=3, csvs=["m.csv"])


def key(spec, task=None, **inputs):
    return SpiraCachePolicy().compute_key(task or _task("validate"), {"spec": spec, **inputs}, {})


def test_no_workspace_id_means_no_cache_and_nothing_is_written(spec, tmp_path):
    assert key(spec, snapshot=SNAP) is None
    assert not (tmp_path / "reg").exists()


def test_key_follows_inputs_task_source_and_workspace(spec, tmp_path):
    spec.workspace().ensure_id()
    base = key(spec, snapshot=SNAP)
    assert base and base == key(spec, snapshot=SNAP)
    assert key(spec, snapshot=SNAP.model_copy(update={"digest": "e" * 64})) != base
    assert key(spec, _task("validate", _step_b), snapshot=SNAP) != base  # the task's own source
    assert key(spec, _task("split"), snapshot=SNAP) != base
    other = RunSpec.build(spec.data_uri, spec.registry_uri, overrides={"training.epochs": 2})
    assert key(other, snapshot=SNAP) != base
    # A moved dataset with the same content keeps its cache; force never changes it.
    moved = spec.model_copy(update={"data_uri": str(tmp_path / "elsewhere")})
    assert key(moved, snapshot=SNAP) == base == key(spec, snapshot=SNAP, force=True)
    # A recreated registry (new workspace id) never reuses the old keys.
    (tmp_path / "reg" / "workspace.json").unlink()
    spec.workspace().ensure_id()
    assert key(spec, snapshot=SNAP) != base


def test_feature_timings_do_not_change_the_training_key(spec):
    spec.workspace().ensure_id()
    a = FeaturesReady(extractor_key="e", aug_key="a", noise_files=2, seconds=1.0, computed=10)
    b = a.model_copy(update={"seconds": 9.0, "computed": 0, "reused": 10})
    assert key(spec, features=a) == key(spec, features=b)
    assert key(spec, features=a.model_copy(update={"aug_key": "b"})) != key(spec, features=a)


def test_source_hash_is_per_function():
    assert source_hash(_step_a) != source_hash(_step_b)


def test_only_storage_errors_are_retried():
    def state(exc):
        def result():
            raise exc
        return SimpleNamespace(result=result)

    assert retry_on_storage_errors(None, None, state(StoreError("503 SlowDown")))
    assert retry_on_storage_errors(None, None, state(TimeoutError()))
    assert not retry_on_storage_errors(None, None, state(ValueError("bad config")))

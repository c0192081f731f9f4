"""The feature stage fans out over a task runner; Dask gives byte-identical features to threads."""
from __future__ import annotations


import numpy as np
import pytest

from prefect import flow
from prefect.testing.utilities import prefect_test_harness

from flows.retrain import TaskSteps
from flows.runners import make_task_runner
from spira_lib.config import load_config
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.data_steps import feature_chunk_count, snapshot_step, split_step, validate_step

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _prepare(spec):
    return split_step(spec, validate_step(spec, snapshot_step(spec)))


def _features(reg) -> dict[str, bytes]:
    return {p.relative_to(reg).as_posix(): p.read_bytes() for p in sorted((reg / "features").rglob("*.npy"))}


def test_runner_is_chosen_by_configuration(monkeypatch):
    assert type(make_task_runner("thread")).__name__ == "ThreadPoolTaskRunner"
    monkeypatch.setenv("SPIRA_TASK_RUNNER", "dask")
    assert type(make_task_runner()).__name__ == "DaskTaskRunner"
    with pytest.raises(ValueError, match="SPIRA_TASK_RUNNER"):
        make_task_runner("ray")


def test_dask_fan_out_gives_identical_features(tmp_path, demo_dataset, fast_overrides):
    overrides = {**fast_overrides, "runtime.feature_chunk_clips": 8, "runtime.feature_workers": 1}
    results = {}
    for kind in ("thread", "dask"):
        reg = tmp_path / kind
        spec = RunSpec.build(demo_dataset, reg, overrides=overrides)
        split = _prepare(spec)
        assert feature_chunk_count(split, 8) == 5  # 40 clips -> 5 tasks

        @flow(name=f"features-{kind}", task_runner=make_task_runner(kind))
        def run():
            return TaskSteps(spec).features(split)

        results[kind] = (run(), _features(reg))
    (thread_stats, thread_files), (dask_stats, dask_files) = results["thread"], results["dask"]
    assert thread_stats.chunks == dask_stats.chunks == 5
    assert thread_stats.computed == dask_stats.computed > 40
    assert thread_files.keys() == dask_files.keys()
    assert all(thread_files[k] == dask_files[k] for k in thread_files)
    one = next(iter(thread_files))
    assert np.load(tmp_path / "thread" / one).shape[1] == load_config().features.n_features

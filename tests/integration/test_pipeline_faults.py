"""The whole core pipeline with storage failing under it.

* Port level (``FaultyStore`` around the local folders): a share of every
  storage operation fails the way an exhausted adapter fails. Each run either
  completes or stops with a ``StoreError`` naming the object; re-running
  converges on exactly one new version with a consistent ledger.
* Endpoint level (``S3Faults`` in front of moto): throttling, 500s, resets,
  timeouts and lost replies on every S3 request of a run on S3. The adapter's
  retries absorb them; the first run completes.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import spira_lib.bootstrap as bootstrap
from spira_lib.adapters.s3 import S3Store, make_s3_client
from spira_lib.pipeline import RunSpec, run_pipeline
from spira_lib.ports import StoreError
from spira_lib.registry import ModelRegistry
from tests.faults import CountingStore, FaultyStore, S3Faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_OVERRIDES = {"training.epochs": 1, "training.windows_per_clip": 1}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    from spira_demo import generate_demo_dataset

    out = tmp_path_factory.mktemp("faults") / "data"
    generate_demo_dataset(out, speakers=16, seed=5)
    return out


@pytest.fixture
def fresh_workspaces():
    bootstrap.forget_workspaces()
    yield
    bootstrap.forget_workspaces()


def _spec(data, registry, fast_overrides, seed: int = 0) -> RunSpec:
    return RunSpec.build(data, registry, overrides={**fast_overrides, **RUN_OVERRIDES, "training.seed": seed})


def test_pipeline_converges_under_port_faults(small_dataset, tmp_path, fast_overrides, monkeypatch,
                                              fresh_workspaces, record_property) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    registry = tmp_path / "registry"
    wrapped: list[FaultyStore] = []
    real_open = bootstrap.open_store

    def faulty_open(uri):
        store = FaultyStore(real_open(uri), rate=0.01, lost_reply_rate=0.01, seed=len(wrapped) + 7)
        wrapped.append(store)
        return store

    monkeypatch.setattr(bootstrap, "open_store", faulty_open)
    spec = _spec(data, registry, fast_overrides)
    failures, outcome = [], None
    for _ in range(8):
        try:
            outcome = run_pipeline(spec)
            break
        except StoreError as exc:  # the only acceptable way to fail: a storage error naming the object
            assert "[injected" in str(exc) and "cannot " in str(exc)
            failures.append(str(exc)[:160])
    assert outcome is not None, f"did not converge in 8 runs: {failures}"
    monkeypatch.setattr(bootstrap, "open_store", real_open)
    injected = sum(s.stats.total_injected for s in wrapped)

    reg = ModelRegistry(real_open(registry))
    assert [mv.version for mv in reg.list_versions("spira")] == [outcome.version] == [1]
    ledger = reg.ledger("spira")
    assert [e["seq"] for e in ledger] == list(range(1, len(ledger) + 1))
    assert [e["action"] for e in ledger].count("register") == 1
    # A failed register may leave an invisible folder until its claim's lease runs out; then sweep removes it.
    leftover = reg.fsck("spira")
    assert all("has no version.json yet" in p for p in leftover), leftover
    later = ModelRegistry(real_open(registry), clock=lambda: datetime.now(timezone.utc) + timedelta(hours=1))
    later.sweep("spira")
    assert later.fsck("spira") == []
    # A second run on the same data with storage healthy trains nothing.
    bootstrap.forget_workspaces()
    assert run_pipeline(spec).skipped
    per_op: dict[str, int] = {}
    for store in wrapped:
        for (op, _), n in store.stats.injected.items():
            per_op[op] = per_op.get(op, 0) + n
    decided = [e["action"] for e in ledger if e["action"] in ("promote", "reject") and e["version"] == 1]
    summary = {"runs": len(failures) + 1, "failed_runs": len(failures), "faults_injected": injected, "per_op": per_op,
               "leftover_folders": len(leftover), "decision_recorded": bool(decided), "failures": failures}
    record_property("port_faults", json.dumps(summary))
    print("\nport faults:", json.dumps(summary, indent=1))
    if not decided:
        # Known gap in the pipeline, not the registry: a run that failed after `register` and before
        # `promote` is re-run, `find_trained` finds the version and the run stops as "already trained",
        # so the gate's decision is never recorded (see test_kill_points.py).
        pytest.xfail("re-run after a failure between register and promote skips the promote step")


def test_pipeline_on_s3_survives_endpoint_faults(small_dataset, aws_env, unique_name, fast_overrides, monkeypatch,
                                                 fresh_workspaces, record_property) -> None:
    bucket = f"spira-pipe-{unique_name}"
    client = make_s3_client()
    client.create_bucket(Bucket=bucket)
    for path in sorted(small_dataset.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"data/{path.relative_to(small_dataset).as_posix()}", Body=path.read_bytes())

    faults = S3Faults(0.1, seed=11, lost_reply_rate=0.05)
    real_open = bootstrap.open_store

    def faulty_open(uri):
        store = real_open(uri)
        if isinstance(store, S3Store):
            return CountingStore(S3Store(store.bucket, store.prefix, client=faults.install(make_s3_client())), faults)
        return store

    monkeypatch.setattr(bootstrap, "open_store", faulty_open)
    outcome = run_pipeline(_spec(f"s3://{bucket}/data", f"s3://{bucket}/registry", fast_overrides))
    faults.enabled = False
    assert outcome.version == 1 and not outcome.skipped
    reg = ModelRegistry(S3Store(bucket, "registry"))
    assert [mv.version for mv in reg.list_versions("spira")] == [1]
    assert reg.fsck("spira") == []
    table = faults.stats.by_operation()
    assert faults.stats.total_injected > 10
    assert all(row["survived"] == row["faulted_ops"] for row in table.values())
    record_property("pipeline_s3_faults", json.dumps(table))
    print("\npipeline on S3 under faults:", json.dumps(table))

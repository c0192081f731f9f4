"""The whole event path with real processes on 127.0.0.1.

    upload to S3 (moto) -> bucket notification -> SQS -> deployments.s3_bridge
    -> Prefect event -> automation (upload-burst trigger) -> deployments.serve
    -> spira-retrain flow run -> S3 registry

Checks the promises made to users: a burst of uploads gives ONE retraining
run that sees all of it and promotes v1; uploading the same data again trains
nothing new. Also deploys prefect.yaml for real with `prefect deploy --all`.
Timings are printed (run with -s to see them in context).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.conftest import ROOT, Service, service_env, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTLE_S = 8  # the burst window / delayed start used by the served trigger
PREFIX = "incoming"
MODEL = "spira"


# ------------------------------------------------------------------ helpers


def _prefect_cli(args: list[str], env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess:
    prefect_bin = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect_bin)] if prefect_bin.exists() else [sys.executable, "-m", "prefect"]
    return subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[e2e] {text}", flush=True)


def _wait(what: str, check, timeout_s: float, services: list[Service] = (), every_s: float = 1.0):
    """Poll ``check()`` until it returns a truthy value; fail with the services' logs otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        for svc in services:
            svc.check_running()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name} log:\n{s.log_tail()}" for s in services)
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs}")
        time.sleep(every_s)


def _seconds(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else round((b - a).total_seconds(), 1)


# ------------------------------------------------------------------ prefect deploy --all


def test_prefect_deploy_all_against_a_real_server(e2e_prefect: str, tmp_path: Path, capsys) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    bucket = f"spira-deploy-{uuid.uuid4().hex[:8]}"
    env = service_env(e2e_prefect, "http://127.0.0.1:9", tmp_path, extra={
        "SPIRA_DATA_URI": f"s3://{bucket}/incoming",
        "SPIRA_REGISTRY_URI": f"s3://{bucket}/registry",
        "SPIRA_IMAGE": "registry.example.org/spira-ct:0.1.0",
    })
    t0 = time.monotonic()

    for pool, kind in (("spira-local", "process"), ("spira-gpu", "docker")):
        res = _prefect_cli(["work-pool", "create", pool, "--type", kind], env)
        assert res.returncode == 0, res.stdout + res.stderr

    # A forgotten variable stops the deploy instead of deploying a trigger on "/*".
    missing = {k: v for k, v in env.items() if k != "SPIRA_REGISTRY_URI"}
    res = _prefect_cli(["--no-prompt", "deploy", "--name", "local"], missing)
    assert res.returncode != 0
    assert "needs these environment variables at deploy time: SPIRA_REGISTRY_URI" in " ".join((res.stdout + res.stderr).split())
    res = _prefect_cli(["--no-prompt", "deploy", "--all"], env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    _say(capsys, f"prefect deploy (failing + 2 pools + --all) took {time.monotonic() - t0:.1f}s")

    with temporary_settings(updates={PREFECT_API_URL: e2e_prefect}), get_client(sync_client=True) as client:
        found: dict[str, Any] = {}
        for flow in ("spira-retrain", "spira-evaluate-champion", "spira-rollback"):
            for target in ("gpu", "local"):
                found[f"{flow}/{target}"] = client.read_deployment_by_name(f"{flow}/{target}")
        gpu = found["spira-retrain/gpu"]
        assert gpu.work_pool_name == "spira-gpu" and found["spira-retrain/local"].work_pool_name == "spira-local"
        assert gpu.parameters["data_uri"] == f"s3://{bucket}/incoming"
        assert gpu.parameters["registry_uri"] == f"s3://{bucket}/registry"
        assert gpu.job_variables["image"] == "registry.example.org/spira-ct:0.1.0"
        assert gpu.job_variables["container_create_kwargs"]["device_requests"][0]["capabilities"] == [["gpu"]]
        assert gpu.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/spira"}}]
        assert gpu.global_concurrency_limit is not None and gpu.global_concurrency_limit.limit == 1
        assert gpu.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert [s.active for s in gpu.schedules] == [False]

        autos = {}
        for key in ("spira-retrain/gpu", "spira-retrain/local"):
            (autos[key],) = client.read_resource_related_automations(f"prefect.deployment.{found[key].id}")
        trig = autos["spira-retrain/gpu"].trigger
        assert autos["spira-retrain/gpu"].enabled and not autos["spira-retrain/local"].enabled
        assert trig.match.root == {"prefect.resource.id": f"s3://{bucket}/incoming/*"}
        assert trig.for_each == {"s3.bucket"} and trig.threshold == 1 and trig.within.total_seconds() == 600
        action = autos["spira-retrain/gpu"].actions[0]
        assert action.deployment_id == gpu.id and action.schedule_after.total_seconds() == 600
        assert action.parameters == {"trigger": "{{ event.resource.id }}", "event_id": "{{ event.id | string }}"}
        for key in ("spira-evaluate-champion/gpu", "spira-rollback/local"):
            assert not client.read_resource_related_automations(f"prefect.deployment.{found[key].id}")


# ------------------------------------------------------------------ the event path


@dataclass
class Stack:
    api_url: str
    bucket: str
    data_uri: str
    registry_uri: str
    deployment_id: uuid.UUID
    s3: Any
    services: list[Service]
    dataset: Path
    timings: dict[str, float | None]


def _wire_bucket(s3: Any, sqs: Any, bucket: str, queue: str) -> str:
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return queue_url


@pytest.fixture(scope="module")
def stack(e2e_moto: str, e2e_prefect: str, in_process_clients: None, fast_overrides: dict,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import boto3
    from prefect.client.orchestration import get_client

    from spira_lib.adapters.s3 import make_s3_client
    from spira_demo import generate_demo_dataset

    uid = uuid.uuid4().hex[:8]
    bucket, name = f"spira-e2e-{uid}", f"e2e-{uid}"
    work = tmp_path_factory.mktemp("e2e-stack")
    s3, sqs = make_s3_client(), boto3.client("sqs")
    queue_url = _wire_bucket(s3, sqs, bucket, f"spira-e2e-{uid}")
    data_uri, registry_uri = f"s3://{bucket}/{PREFIX}", f"s3://{bucket}/registry"
    dataset = work / "dataset"
    generate_demo_dataset(dataset, speakers=24, seed=5)

    env = service_env(e2e_prefect, e2e_moto, work)
    services: list[Service] = []
    try:
        services.append(start_service("bridge", [
            "-m", "deployments.s3_bridge", "--queue-url", queue_url, "--bucket", bucket, "--prefix", PREFIX,
            "--wait-time", "1", "--prefect-api-url", e2e_prefect,
        ], env, work / "logs"))
        sets = [a for k, v in fast_overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        t0 = time.monotonic()
        services.append(start_service("serve", [
            "-m", "deployments.serve", "--data-uri", data_uri, "--registry-uri", registry_uri,
            "--name", name, "--settle", str(SETTLE_S), *sets,
        ], env, work / "logs"))

        def automation_ready():
            with get_client(sync_client=True) as client:
                try:
                    dep = client.read_deployment_by_name(f"spira-retrain/{name}")
                except Exception:  # noqa: BLE001 - not created yet
                    return None
                autos = client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
                return dep.id if autos and all(a.enabled for a in autos) else None

        deployment_id = _wait("the served deployment and its automation", automation_ready, 120, services)
        # The triggers service loads new automations asynchronously; an event it has
        # not yet seen the automation for would simply not match.
        time.sleep(3)
        timings = {"serve_ready_s": round(time.monotonic() - t0, 1)}
        yield Stack(e2e_prefect, bucket, data_uri, registry_uri, deployment_id, s3, services, dataset, timings)
    finally:
        survivors = {svc.name: svc.stop() for svc in reversed(services)}
        leaked = {k: v for k, v in survivors.items() if v}
        assert not leaked, f"processes left running after teardown: {leaked}"


def _upload_all(st: Stack) -> datetime:
    """Upload the dataset under the watched prefix, CSVs last (as a real upload tool would); returns the start time."""
    files = sorted(p for p in st.dataset.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.suffix == ".csv")
    started = datetime.now(timezone.utc)
    for path in files:
        st.s3.put_object(Bucket=st.bucket, Key=f"{PREFIX}/{path.relative_to(st.dataset).as_posix()}", Body=path.read_bytes())
    return started


def _runs(st: Stack) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[st.deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def _artifact_text(run_id: uuid.UUID, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=[key])))
    return "\n".join(str(a.data) for a in arts)


def _registry(st: Stack):
    from spira_lib.bootstrap import open_store
    from spira_lib.registry import ModelRegistry

    return ModelRegistry(open_store(st.registry_uri))


def _finished_runs(st: Stack, n: int):
    def check():
        runs = _runs(st)
        return runs if len(runs) >= n and all(r.state and r.state.is_final() for r in runs) else None

    return check


@pytest.fixture(scope="module")
def first_burst(stack: Stack) -> dict[str, Any]:
    t_upload = _upload_all(stack)
    _wait("the burst's flow run to finish", _finished_runs(stack, 1), 420, stack.services)
    # Every event of the burst was evaluated long before the run ended; give a
    # (wrongly) second-firing trigger a last chance to show itself anyway.
    time.sleep(2)
    return {"t_upload": t_upload, "runs": _runs(stack)}


def test_upload_burst_gives_one_run_that_promotes_v1(stack: Stack, first_burst: dict[str, Any], capsys) -> None:
    runs = first_burst["runs"]
    assert len(runs) == 1, f"expected one run for the burst, got {[(r.name, r.state_name) for r in runs]}"
    (run,) = runs
    assert run.state.is_completed(), f"{run.name}: {run.state}\n{stack.services[1].log_tail()}"
    assert run.parameters["trigger"].startswith(f"s3://{stack.bucket}/{PREFIX}/")
    assert str(uuid.UUID(run.parameters["event_id"])) == run.parameters["event_id"]
    assert run.parameters["data_uri"] == stack.data_uri
    # The run was scheduled a settle window after the burst's first event and did not start earlier.
    t0 = first_burst["t_upload"]
    assert (run.expected_start_time - t0).total_seconds() >= SETTLE_S
    # (The runner may start a run up to a second or so early: it prefetches scheduled runs.)
    assert (run.start_time - t0).total_seconds() >= SETTLE_S - 2

    reg = _registry(stack)
    assert [v.version for v in reg.list_versions(MODEL)] == [1]
    assert reg.champion(MODEL).version == 1
    promote = [e for e in reg.ledger(MODEL) if e["action"] == "promote"]
    assert [e["version"] for e in promote] == [1]
    # The run saw the whole burst, both CSVs included: every clip is in the trained snapshot.
    from spira_lib.dataset import manifest_from_bytes

    n_clips = sum(1 for p in stack.dataset.rglob("*") if p.suffix in (".wav", ".flac") and "noises" not in p.parts)
    trained_on = manifest_from_bytes(reg.load_artifact(reg.get(MODEL, version=1), "split.parquet"))
    assert trained_on.height == n_clips == 24
    assert _artifact_text(run.id, "spira-validation-report"), "no validation report artifact"

    promoted_at = datetime.fromisoformat(promote[0]["at"])
    stack.timings.update({
        "upload_to_run_created_s": _seconds(t0, run.created),
        "upload_to_scheduled_start_s": _seconds(t0, run.expected_start_time),
        "upload_to_run_start_s": _seconds(t0, run.start_time),
        "upload_to_promoted_s": _seconds(t0, promoted_at),
        "upload_to_run_end_s": _seconds(t0, run.end_time),
        "run_duration_s": round(run.total_run_time.total_seconds(), 1),
        "clips": n_clips,
    })
    _say(capsys, f"first burst timings: {json.dumps(stack.timings)}")


def test_same_data_again_registers_nothing_new(stack: Stack, first_burst: dict[str, Any], capsys) -> None:
    assert len(first_burst["runs"]) == 1
    t_upload = _upload_all(stack)
    runs = _wait("the re-upload's flow run to finish", _finished_runs(stack, 2), 300, stack.services)
    time.sleep(2)
    runs = _runs(stack)
    assert len(runs) == 2, f"expected one more run, got {[(r.name, r.state_name) for r in runs]}"
    second = runs[-1]
    assert second.state.is_completed(), f"{second.name}: {second.state}\n{stack.services[1].log_tail()}"
    assert "Nothing to train" in _artifact_text(second.id, "spira-validation-report")

    reg = _registry(stack)
    assert [v.version for v in reg.list_versions(MODEL)] == [1]
    assert reg.champion(MODEL).version == 1
    assert [e["version"] for e in reg.ledger(MODEL) if e["action"] == "promote"] == [1]
    timings = {
        "reupload_to_run_start_s": _seconds(t_upload, second.start_time),
        "reupload_to_run_end_s": _seconds(t_upload, second.end_time),
        "skip_run_duration_s": round(second.total_run_time.total_seconds(), 1),
    }
    _say(capsys, f"re-upload timings: {json.dumps(timings)}")

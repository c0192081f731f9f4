"""The README's production path, end to end: prefect.yaml deployed for real and run by a real worker.

    spira doctor (finds the missing notification) -> bucket notification -> prefect work-pool create
    -> prefect deploy --name local -> prefect automation resume <local trigger> -> bridge + prefect worker
    -> spira doctor (all ok) -> upload burst -> ONE spira-retrain run executed by the worker -> v1 in the
    S3 registry -> `prefect deployment run spira-evaluate-champion/local` with model_ref=spira:1 and,
    meanwhile, the same files again -> a run that registers nothing

Every process is started and stopped here, on 127.0.0.1 (moto stands in for S3
and SQS), with the commands and variables the README gives, so the test fails
where the README would. Test-only choices, all through the README's own knobs:
a short window (SPIRA_SETTLE_SECONDS=8), the fast test config (SPIRA_CONFIG),
and a worker that polls every second (PREFECT_WORKER_QUERY_SECONDS=1).
Timings are printed (run with -s to see them in context).
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.e2e.conftest import (
    PREFIX,
    Service,
    create_bucket_and_queue,
    deployment_runs,
    finished_runs,
    notify_queue,
    prefect_cli,
    say,
    seconds_between,
    service_env,
    start_bridge,
    start_service,
    upload_dataset,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTLE_S = 8
POOL = "spira-local"
LOCAL_TRIGGER = "spira-retrain-on-upload-local"


@dataclass
class WorkerStack:
    api_url: str
    bucket: str
    data_uri: str
    registry_uri: str
    config_path: str
    env: dict[str, str]
    retrain_id: uuid.UUID
    s3: Any
    services: list[Service]
    dataset: Path
    timings: dict[str, Any]


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        section, field = key.split(".", 1)
        out.setdefault(section, {})[field] = value
    return out


def spira_doctor(env: dict[str, str], queue_url: str) -> tuple[int, dict[str, Any]]:
    """What `spira doctor --json --queue-url URL` reports in ``env``: (its exit status, the report).

    Run in this process (the command's own output and exit status are covered by
    tests/unit/spira_cli/test_doctor.py); a `spira` process costs seconds of imports here.
    """
    from dataclasses import asdict

    from spira_cli import doctor

    checks = doctor.run_checks("local", env, queue_url)
    return int(any(c.status == doctor.FAIL for c in checks)), {"checks": [asdict(c) for c in checks]}


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def _ok(res: subprocess.CompletedProcess) -> str:
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def worker_stack(e2e_moto: str, e2e_prefect: str, in_process_clients: None, fast_overrides: dict, e2e_dataset: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerStack]:
    import boto3
    from prefect.client.orchestration import get_client

    from spira_cli.doctor import PrefectProbe
    from spira_lib.adapters.s3 import make_s3_client

    uid = uuid.uuid4().hex[:8]
    bucket = f"spira-wk-{uid}"
    work = tmp_path_factory.mktemp("e2e-worker")
    config_path = work / "fast.yaml"
    config_path.write_text(yaml.safe_dump(_nested(fast_overrides)))
    data_uri, registry_uri = f"s3://{bucket}/{PREFIX}", f"s3://{bucket}/registry"
    # The README's variables for moto, and nothing else: the endpoints by their SPIRA_* names.
    env = service_env(e2e_prefect, e2e_moto, work, extra={
        "SPIRA_DATA_URI": data_uri, "SPIRA_REGISTRY_URI": registry_uri,
        "SPIRA_S3_ENDPOINT_URL": e2e_moto, "SPIRA_SQS_ENDPOINT_URL": e2e_moto,
        "SPIRA_SETTLE_SECONDS": str(SETTLE_S), "SPIRA_CONFIG": str(config_path),
    })
    env.pop("AWS_ENDPOINT_URL")
    timings: dict[str, Any] = {}
    s3, sqs = make_s3_client(), boto3.client("sqs")
    queue_url = create_bucket_and_queue(s3, sqs, bucket, f"spira-wk-{uid}")
    t0 = time.monotonic()

    # 1. The doctor finds the missing notification and prints the command that adds it.
    rc, report = spira_doctor(env, queue_url)
    assert rc == 1, report
    notification = _checks(report)[f"notification on {bucket}"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert notification["status"] == "FAIL" and arn in notification["fix"]
    assert notification["fix"].startswith(f"aws --endpoint-url {e2e_moto} s3api put-bucket-notification-configuration")
    assert _checks(report)["server"]["status"] == "ok"
    notify_queue(s3, sqs, bucket, queue_url)

    # 2. README "On one machine without Docker". The pool may exist already (the session's server is shared).
    res = prefect_cli(["work-pool", "create", POOL, "--type", "process"], env)
    assert res.returncode == 0 or "already exists" in res.stdout + res.stderr, res.stdout + res.stderr
    _ok(prefect_cli(["--no-prompt", "deploy", "--name", "local"], env, timeout_s=300))
    resumed = _ok(prefect_cli(["automation", "resume", LOCAL_TRIGGER], env))
    assert "Resumed automation" in resumed
    timings["pool_deploy_resume_s"] = round(time.monotonic() - t0, 1)

    services: list[Service] = []
    try:
        services.append(start_bridge(queue_url, bucket, e2e_prefect, env, work / "logs"))
        services.append(start_service("worker", ["-m", "prefect", "worker", "start", "--pool", POOL],
                                      {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, work / "logs"))
        probe = PrefectProbe(e2e_prefect)
        wait_for("the worker to come online", lambda: probe.online_workers(POOL), 120, services)

        # 3. Now the doctor has nothing left to report.
        rc, report = spira_doctor(env, queue_url)
        bad = [c for c in report["checks"] if c["status"] not in ("ok", "info")]
        assert rc == 0 and not bad, bad
        assert _checks(report)["upload trigger"]["detail"].endswith(f"window {SETTLE_S} s; enabled")
        timings["ready_s"] = round(time.monotonic() - t0, 1)

        with get_client(sync_client=True) as client:
            retrain = client.read_deployment_by_name("spira-retrain/local")
        assert retrain.parameters["config_path"] == str(config_path)
        yield WorkerStack(e2e_prefect, bucket, data_uri, registry_uri, str(config_path), env, retrain.id, s3,
                          services, e2e_dataset, timings)
    finally:
        survivors = {svc.name: svc.stop() for svc in reversed(services)}
        leaked = {k: v for k, v in survivors.items() if v}
        assert not leaked, f"processes left running after teardown: {leaked}"


def _versions(st: WorkerStack) -> list[int]:
    from spira_lib.bootstrap import open_registry

    return [v.version for v in open_registry(st.registry_uri).list_versions("spira")]


@pytest.fixture(scope="module")
def first_burst(worker_stack: WorkerStack) -> dict[str, Any]:
    st = worker_stack
    t_upload = upload_dataset(st.s3, st.bucket, st.dataset)
    wait_for("the burst's run on the worker to finish", finished_runs(st.retrain_id, 1), 420, st.services)
    time.sleep(2)  # a (wrongly) second run would show by now: every event was evaluated long ago
    return {"t_upload": t_upload, "runs": deployment_runs(st.retrain_id)}


def test_upload_burst_gives_one_run_executed_by_the_worker(worker_stack: WorkerStack, first_burst: dict[str, Any], capsys) -> None:
    st = worker_stack
    runs = first_burst["runs"]
    assert len(runs) == 1, f"expected one run for the burst, got {[(r.name, r.state_name) for r in runs]}"
    (run,) = runs
    assert run.state.is_completed(), f"{run.name}: {run.state}\n{st.services[1].log_tail()}"
    # Executed by the process worker of the pool: it records the process it started.
    assert run.work_pool_name == POOL and run.infrastructure_pid, (run.work_pool_name, run.infrastructure_pid)
    assert str(run.id) in st.services[1].log_tail(200_000), "the worker's log does not mention the run"
    assert run.parameters["trigger"].startswith(f"{st.data_uri}/")
    assert run.parameters["config_path"] == st.config_path
    t0 = first_burst["t_upload"]
    assert (run.expected_start_time - t0).total_seconds() >= SETTLE_S
    assert _versions(st) == [1], "the run registered no version (or more than one) in the S3 registry"
    st.timings.update({
        "upload_to_run_created_s": seconds_between(t0, run.created),
        "upload_to_run_start_s": seconds_between(t0, run.start_time),
        "upload_to_run_end_s": seconds_between(t0, run.end_time),
        "run_duration_s": round(run.total_run_time.total_seconds(), 1),
    })
    say(capsys, f"worker path timings: {json.dumps(st.timings)}")


@pytest.fixture(scope="module")
def second_round(worker_stack: WorkerStack, first_burst: dict[str, Any]) -> dict[str, Any]:
    """An on-demand evaluation of spira:1 (the README's `local` example) and, meanwhile, the same files again."""
    from prefect.client.orchestration import get_client

    st = worker_stack
    assert len(first_burst["runs"]) == 1 and _versions(st) == [1]
    t0 = time.monotonic()
    # No champion is needed: the version is named (spira@champion fails while nothing is promoted).
    out = _ok(prefect_cli(["deployment", "run", "spira-evaluate-champion/local",
                           "--param", f"data_uri={st.data_uri}", "--param", "model_ref=spira:1"], st.env))
    with get_client(sync_client=True) as client:
        evaluate_id = client.read_deployment_by_name("spira-evaluate-champion/local").id
    t_upload = upload_dataset(st.s3, st.bucket, st.dataset)
    wait_for("the on-demand evaluation to finish", finished_runs(evaluate_id, 1), 300, st.services)
    evaluated_s = time.monotonic() - t0
    wait_for("the re-upload's run to finish", finished_runs(st.retrain_id, 2), 300, st.services)
    time.sleep(2)
    return {"cli": out, "t_upload": t_upload, "evaluated_s": evaluated_s,
            "evaluations": deployment_runs(evaluate_id), "runs": deployment_runs(st.retrain_id)}


def test_same_data_again_registers_nothing_new_on_the_worker(worker_stack: WorkerStack, second_round: dict[str, Any], capsys) -> None:
    st = worker_stack
    runs = second_round["runs"]
    assert len(runs) == 2, f"expected one more run, got {[(r.name, r.state_name) for r in runs]}"
    assert runs[-1].state.is_completed() and runs[-1].work_pool_name == POOL, runs[-1].state
    assert _versions(st) == [1]
    say(capsys, f"worker re-upload: run ended {seconds_between(second_round['t_upload'], runs[-1].end_time)} s "
                "after the upload, no new version")


def test_evaluate_a_given_version_on_demand(worker_stack: WorkerStack, second_round: dict[str, Any], capsys) -> None:
    (run,) = second_round["evaluations"]
    assert run.state.is_completed(), f"{run.state}\n{second_round['cli'][-3000:]}\n{worker_stack.services[1].log_tail()}"
    assert run.work_pool_name == POOL and run.parameters["model_ref"] == "spira:1"
    assert run.parameters["data_uri"] == worker_stack.data_uri
    assert run.name.startswith("evaluate-spira-v1-"), run.name
    say(capsys, f"evaluate spira:1 on demand through the worker: {second_round['evaluated_s']:.1f} s from the command")

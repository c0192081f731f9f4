"""The whole event path with real processes on 127.0.0.1.

    upload to S3 (moto) -> bucket notification -> SQS -> deployments.s3_bridge
    -> Prefect event -> automation (upload-burst trigger) -> deployments.serve
    -> spira-retrain flow run -> S3 registry

Checks the promises made to users: a burst of uploads gives ONE retraining
run that sees all of it and promotes v1; uploading the same data again trains
nothing new. The same bridge also forwards the inbox folder (`--prefix` twice),
where `spira serve --inbox` scores each burst of recordings ONCE with the
champion, a challenger in shadow, and scores nothing new when the same files
come again. Also deploys prefect.yaml for real with `prefect deploy --all`.
Timings are printed (run with -s to see them in context).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import DEMO_SPEAKERS

from tests.e2e.conftest import (
    PREFIX,
    Service,
    artifact_text,
    create_bucket_and_queue,
    deployment_runs,
    fast_config_sets,
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

SETTLE_S = 8  # the burst window / delayed start used by the served triggers
MODEL = "spira"
INBOX = "inbox"  # the folder of unlabelled recordings spira-score watches, next to PREFIX in the same bucket


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
        res = prefect_cli(["work-pool", "create", pool, "--type", kind], env)
        assert res.returncode == 0, res.stdout + res.stderr

    # A forgotten variable stops the deploy instead of deploying a trigger on "/*".
    missing = {k: v for k, v in env.items() if k != "SPIRA_REGISTRY_URI"}
    res = prefect_cli(["--no-prompt", "deploy", "--name", "local"], missing)
    assert res.returncode != 0
    assert "needs these environment variables at deploy time: SPIRA_REGISTRY_URI" in " ".join((res.stdout + res.stderr).split())
    res = prefect_cli(["--no-prompt", "deploy", "--all"], env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    say(capsys, f"prefect deploy (failing + 2 pools + --all) took {time.monotonic() - t0:.1f}s")

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
        assert gpu.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/spira"}},
                                  {"deployments.aws_credentials.pull_step": {}}]
        assert gpu.global_concurrency_limit is not None and gpu.global_concurrency_limit.limit == 1
        assert gpu.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert [s.active for s in gpu.schedules] == [False]

        autos = {}
        for key in ("spira-retrain/gpu", "spira-retrain/local"):
            related = client.read_resource_related_automations(f"prefect.deployment.{found[key].id}")
            (autos[key],) = [a for a in related if "spira.drift.detected" not in a.trigger.expect]
            # The retrain-on-drift automation is deployed too, switched off.
            (drift,) = [a for a in related if "spira.drift.detected" in a.trigger.expect]
            assert not drift.enabled and drift.name.startswith("spira-retrain-on-drift")
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
    score_deployment_id: uuid.UUID
    inbox_uri: str
    s3: Any
    services: list[Service]
    dataset: Path
    timings: dict[str, float | None]


@pytest.fixture(scope="module")
def stack(e2e_moto: str, e2e_prefect: str, in_process_clients: None, fast_overrides: dict, e2e_dataset: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import boto3
    from prefect.client.orchestration import get_client

    from spira_lib.adapters.s3 import make_s3_client

    uid = uuid.uuid4().hex[:8]
    bucket, name = f"spira-e2e-{uid}", f"e2e-{uid}"
    work = tmp_path_factory.mktemp("e2e-stack")
    s3, sqs = make_s3_client(), boto3.client("sqs")
    queue_url = create_bucket_and_queue(s3, sqs, bucket, f"spira-e2e-{uid}")
    notify_queue(s3, sqs, bucket, queue_url)
    data_uri, registry_uri = f"s3://{bucket}/{PREFIX}", f"s3://{bucket}/registry"
    inbox_uri = f"s3://{bucket}/{INBOX}"

    env = service_env(e2e_prefect, e2e_moto, work)
    services: list[Service] = []
    try:
        # One queue, two folders: the labelled data and the inbox.
        services.append(start_bridge(queue_url, bucket, e2e_prefect, env, work / "logs", prefixes=(PREFIX, INBOX)))
        sets = fast_config_sets(fast_overrides)
        t0 = time.monotonic()
        services.append(start_service("serve", [
            "-m", "deployments.serve", "--data-uri", data_uri, "--registry-uri", registry_uri,
            "--name", name, "--settle", str(SETTLE_S), "--inbox", inbox_uri, *sets,
        ], env, work / "logs"))

        def automations_ready():
            ids = []
            with get_client(sync_client=True) as client:
                for flow in ("spira-retrain", "spira-score"):
                    try:
                        dep = client.read_deployment_by_name(f"{flow}/{name}")
                    except Exception:  # noqa: BLE001 - not created yet
                        return None
                    autos = client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
                    if not autos or not all(a.enabled for a in autos):
                        return None
                    ids.append(dep.id)
            return ids

        deployment_id, score_deployment_id = wait_for("the served deployments and their automations",
                                                      automations_ready, 120, services)
        # The triggers service loads new automations asynchronously; an event it has
        # not yet seen the automation for would simply not match.
        time.sleep(3)
        timings = {"serve_ready_s": round(time.monotonic() - t0, 1)}
        yield Stack(e2e_prefect, bucket, data_uri, registry_uri, deployment_id, score_deployment_id, inbox_uri,
                    s3, services, e2e_dataset, timings)
    finally:
        survivors = {svc.name: svc.stop() for svc in reversed(services)}
        leaked = {k: v for k, v in survivors.items() if v}
        assert not leaked, f"processes left running after teardown: {leaked}"


def _upload_all(st: Stack) -> datetime:
    return upload_dataset(st.s3, st.bucket, st.dataset)


def _runs(st: Stack) -> list[Any]:
    return deployment_runs(st.deployment_id)


def _registry(st: Stack):
    from spira_lib.bootstrap import open_registry

    return open_registry(st.registry_uri)


@pytest.fixture(scope="module")
def first_burst(stack: Stack) -> dict[str, Any]:
    t_upload = _upload_all(stack)
    wait_for("the burst's flow run to finish", finished_runs(stack.deployment_id, 1), 420, stack.services)
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
    assert trained_on.height == n_clips == DEMO_SPEAKERS
    assert artifact_text(run.id, "spira-validation-report"), "no validation report artifact"

    promoted_at = datetime.fromisoformat(promote[0]["at"])
    stack.timings.update({
        "upload_to_run_created_s": seconds_between(t0, run.created),
        "upload_to_scheduled_start_s": seconds_between(t0, run.expected_start_time),
        "upload_to_run_start_s": seconds_between(t0, run.start_time),
        "upload_to_promoted_s": seconds_between(t0, promoted_at),
        "upload_to_run_end_s": seconds_between(t0, run.end_time),
        "run_duration_s": round(run.total_run_time.total_seconds(), 1),
        "clips": n_clips,
    })
    say(capsys, f"first burst timings: {json.dumps(stack.timings)}")


def test_same_data_again_registers_nothing_new(stack: Stack, first_burst: dict[str, Any], capsys) -> None:
    assert len(first_burst["runs"]) == 1
    t_upload = _upload_all(stack)
    runs = wait_for("the re-upload's flow run to finish", finished_runs(stack.deployment_id, 2), 300, stack.services)
    time.sleep(2)
    runs = _runs(stack)
    assert len(runs) == 2, f"expected one more run, got {[(r.name, r.state_name) for r in runs]}"
    second = runs[-1]
    assert second.state.is_completed(), f"{second.name}: {second.state}\n{stack.services[1].log_tail()}"
    assert "Nothing to train" in artifact_text(second.id, "spira-validation-report")

    reg = _registry(stack)
    assert [v.version for v in reg.list_versions(MODEL)] == [1]
    assert reg.champion(MODEL).version == 1
    assert [e["version"] for e in reg.ledger(MODEL) if e["action"] == "promote"] == [1]
    timings = {
        "reupload_to_run_start_s": seconds_between(t_upload, second.start_time),
        "reupload_to_run_end_s": seconds_between(t_upload, second.end_time),
        "skip_run_duration_s": round(second.total_run_time.total_seconds(), 1),
    }
    say(capsys, f"re-upload timings: {json.dumps(timings)}")


# ------------------------------------------------------------------ the inbox: spira-score with a challenger in shadow


@pytest.fixture(scope="module")
def inbox_recordings(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """Six new recordings (another seed: voices the models never heard) as (key in the bucket, bytes)."""
    from spira_demo import generate_demo_dataset

    out = tmp_path_factory.mktemp("e2e-inbox") / "recordings"
    generate_demo_dataset(out, speakers=6, seed=23, noise_files=0, separation="clear")
    return [(f"{INBOX}/ward-3/{p.name}", p.read_bytes()) for p in sorted(out.rglob("*.wav"))]


def _register_challenger(st: Stack) -> int:
    """A v2 beside the champion v1, the way the retrain leaves a version its gate did not promote: registered,
    its rejection in the ledger, the ``challenger`` alias on it. Its artifacts are v1's (a second training would
    cost this test more than everything else), so it must agree with the champion on every recording."""
    from spira_lib.registry import CHALLENGER_ALIAS

    reg = _registry(st)
    v1 = reg.champion(MODEL)
    assert v1 is not None and v1.version == 1
    artifacts = {name: reg.load_artifact(v1, name) for name in v1.artifacts}
    metadata = {**v1.metadata, "training_key": f"e2e-copy-of-v1:{v1.metadata.get('training_key')}"}
    v2 = reg.register(MODEL, artifacts, metadata, reason="e2e: a challenger to shadow the champion", actor="e2e")
    reg.record_rejection(MODEL, v2.version, reason="e2e: not promoted, shadows the champion", actor="e2e")
    reg.set_alias(MODEL, CHALLENGER_ALIAS, v2.version)
    return v2.version


def _upload_inbox(st: Stack, recordings: list[tuple[str, bytes]]) -> datetime:
    started = datetime.now(timezone.utc)
    for key, body in recordings:
        st.s3.put_object(Bucket=st.bucket, Key=key, Body=body)
    return started


def _prediction_files(st: Stack, version: int) -> list[str]:
    prefix = f"registry/predictions/{MODEL}/v{version:04d}/"
    listed = st.s3.list_objects_v2(Bucket=st.bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed if o["Key"].endswith(".parquet"))


def _read_parquet(st: Stack, key: str):
    import io

    import polars as pl

    return pl.read_parquet(io.BytesIO(st.s3.get_object(Bucket=st.bucket, Key=key)["Body"].read()))


def test_inbox_burst_gives_one_scoring_run_with_predictions_and_a_shadow_report(
        stack: Stack, first_burst: dict[str, Any], inbox_recordings: list[tuple[str, bytes]], capsys) -> None:
    from spira_lib.hashing import sha256_hex

    t0 = time.monotonic()
    challenger = _register_challenger(stack)
    retrain_runs = len(_runs(stack))
    t_upload = _upload_inbox(stack, inbox_recordings)
    wait_for("the inbox burst's scoring run to finish", finished_runs(stack.score_deployment_id, 1), 300, stack.services)
    time.sleep(2)  # a (wrongly) second-firing trigger gets its chance to show itself
    runs = deployment_runs(stack.score_deployment_id)
    assert len(runs) == 1, f"expected one scoring run for the burst, got {[(r.name, r.state_name) for r in runs]}"
    (run,) = runs
    n = len(inbox_recordings)
    assert run.state.is_completed(), f"{run.name}: {run.state}\n{stack.services[1].log_tail()}"
    assert run.parameters["trigger"].startswith(f"{stack.inbox_uri}/")
    assert run.state.message.startswith(f"scored {n} new recording(s) with {MODEL} v1 (0 rejected); "
                                        f"shadow v{challenger} agreement 1.00"), run.state.message
    assert {"scored", "shadow"} <= set(run.tags)
    assert len(_runs(stack)) == retrain_runs  # the inbox is not training data: no retrain

    # Predictions in Parquet under the registry: one file per model and batch, one row per recording.
    (champion_file,) = _prediction_files(stack, 1)
    (shadow_file,) = _prediction_files(stack, challenger)
    preds = _read_parquet(stack, champion_file)
    assert preds.height == n
    assert sorted(preds["file"].to_list()) == sorted(k.removeprefix(f"{INBOX}/") for k, _ in inbox_recordings)
    assert sorted(preds["sha256"].to_list()) == sorted(sha256_hex(b) for _, b in inbox_recordings)
    assert set(preds["role"].to_list()) == {"champion"} and set(preds["version"].to_list()) == {1}
    shadow = _read_parquet(stack, shadow_file)
    assert shadow.height == n and set(shadow["role"].to_list()) == {"shadow"}

    report = artifact_text(run.id, "spira-shadow")
    assert f"## Shadow: {MODEL} v{challenger} (challenger) vs v1 (champion)" in report
    assert "No decision would flip on this batch." in report
    assert artifact_text(run.id, "spira-scored-batch"), "no scored-batch artifact"

    # The same files again: one more run, which scores nothing new and writes no predictions.
    t_again = _upload_inbox(stack, inbox_recordings)
    wait_for("the re-upload's scoring run to finish", finished_runs(stack.score_deployment_id, 2), 300, stack.services)
    time.sleep(2)
    runs = deployment_runs(stack.score_deployment_id)
    assert len(runs) == 2, f"expected one more scoring run, got {[(r.name, r.state_name) for r in runs]}"
    again = runs[-1]
    assert again.state.is_completed(), f"{again.name}: {again.state}\n{stack.services[1].log_tail()}"
    assert again.state.message.startswith(f"scored 0 new recording(s) with {MODEL} v1"), again.state.message
    assert _prediction_files(stack, 1) == [champion_file] and _prediction_files(stack, challenger) == [shadow_file]
    assert len(_runs(stack)) == retrain_runs

    timings = {
        "inbox_upload_to_run_start_s": seconds_between(t_upload, run.start_time),
        "inbox_upload_to_run_end_s": seconds_between(t_upload, run.end_time),
        "score_run_duration_s": round(run.total_run_time.total_seconds(), 1),
        "inbox_reupload_to_run_end_s": seconds_between(t_again, again.end_time),
        "rescore_run_duration_s": round(again.total_run_time.total_seconds(), 1),
        "recordings": n,
        "test_s": round(time.monotonic() - t0, 1),
    }
    say(capsys, f"inbox timings: {json.dumps(timings)}")

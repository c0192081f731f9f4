"""Real processes for the end-to-end event path: moto_server, `prefect server`, and helpers
to run long-lived services (the S3 bridge, `deployments.serve`, a Prefect worker) as
subprocesses, wire a bucket to a queue, upload a dataset and read runs back.
Shared by test_event_path.py (`spira serve`) and test_worker_path.py (prefect.yaml + worker).

Every process runs in its own session; stopping one kills its process group
and then any descendant that escaped into a session of its own (Prefect's
runner starts flow runs that way), so a failing test leaks nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest

from tests.servers import AWS_VARS_TO_CLEAR, moto_aws_env

ROOT = Path(__file__).resolve().parents[2]



def _children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first)."""
    tree = _children_of()
    out: list[int] = []
    todo = list(tree.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Service:
    """A long-running subprocess with its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    known: set[int] = field(default_factory=set)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return text[-limit:] or "<empty log>"

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with code {self.proc.returncode}; log:\n{self.log_tail()}")
        # Remember descendants while they exist: once the leader is gone they are reparented.
        self.known.update(descendants(self.proc.pid))

    def stop(self, grace_s: float = 15.0) -> list[int]:
        """SIGTERM the group, wait, then SIGKILL the group and every known descendant; returns survivors."""
        self.known.update(descendants(self.proc.pid))
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.known:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self.known):
            time.sleep(0.1)
        return sorted(p for p in self.known if _alive(p))


def start_service(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> Service:
    """Start ``python args...`` from the repository root in its own session."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name, proc, log_path)


def service_env(api_url: str, moto_url: str, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for processes that talk to both test servers; never a developer's real AWS profile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AWS_", "SPIRA_"))
    }
    env.update(moto_aws_env(moto_url, home))
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            # Scheduled runs are picked up within a second instead of ten.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def e2e_moto(moto_endpoint: str) -> str:
    """The session's moto_server (S3 + SQS); tests isolate themselves by bucket/queue names."""
    return moto_endpoint


@pytest.fixture(scope="module")
def e2e_prefect(prefect_api_url: str) -> str:
    """The session's real `prefect server start`; tests filter runs by their own deployment."""
    return prefect_api_url


@pytest.fixture(scope="module")
def in_process_clients(e2e_moto: str, e2e_prefect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point boto3 and Prefect's client in this process at the test servers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("e2e-aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in AWS_VARS_TO_CLEAR:
            mp.delenv(name, raising=False)
        for name, value in moto_aws_env(e2e_moto, home).items():
            mp.setenv(name, value)
        mp.setenv("PREFECT_API_URL", e2e_prefect)
        with temporary_settings(updates={PREFECT_API_URL: e2e_prefect}):
            yield


# ------------------------------------------------------------------ shared helpers of the e2e tests

PREFIX = "incoming"  # the watched folder in each test's bucket


def prefect_cli(args: list[str], env: Mapping[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess:
    """Run the `prefect` command from the repository root, as the README does."""
    prefect_bin = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect_bin)] if prefect_bin.exists() else [sys.executable, "-m", "prefect"]
    return subprocess.run(cmd + args, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout_s)


def say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[e2e] {text}", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, services: Sequence[Service] = (), every_s: float = 1.0):
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


def seconds_between(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else round((b - a).total_seconds(), 1)


def create_bucket_and_queue(s3: Any, sqs: Any, bucket: str, queue: str) -> str:
    """The bucket and the queue (returns its URL), not yet connected."""
    s3.create_bucket(Bucket=bucket)
    return sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]


def notify_queue(s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
    """The bucket's s3:ObjectCreated:* notification to the queue (moto needs no queue policy)."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )


def upload_dataset(s3: Any, bucket: str, dataset: Path, prefix: str = PREFIX) -> datetime:
    """Upload the dataset under the watched prefix, CSVs last (as a real upload tool would); returns the start time."""
    files = sorted(p for p in dataset.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.suffix == ".csv")
    started = datetime.now(timezone.utc)
    for path in files:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(dataset).as_posix()}", Body=path.read_bytes())
    return started


def deployment_runs(deployment_id: uuid.UUID) -> list[Any]:
    """The deployment's flow runs, oldest expected start first (needs in_process_clients)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def finished_runs(deployment_id: uuid.UUID, n: int) -> Callable[[], list[Any] | None]:
    """A check for wait_for: at least ``n`` runs, all in a final state."""

    def check():
        runs = deployment_runs(deployment_id)
        return runs if len(runs) >= n and all(r.state and r.state.is_final() for r in runs) else None

    return check


def artifact_text(run_id: uuid.UUID, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=[key])))
    return "\n".join(str(a.data) for a in arts)


def start_bridge(queue_url: str, bucket: str, api_url: str, env: Mapping[str, str], log_dir: Path,
                 prefixes: Sequence[str] = (PREFIX,)) -> Service:
    """`python -m deployments.s3_bridge` for the test's queue and bucket (short long-polls), one --prefix per folder."""
    return start_service("bridge", [
        "-m", "deployments.s3_bridge", "--queue-url", queue_url, "--bucket", bucket,
        *(a for prefix in prefixes for a in ("--prefix", prefix)),
        "--wait-time", "1", "--prefect-api-url", api_url,
    ], env, log_dir)


def fast_config_sets(overrides: Mapping[str, Any]) -> list[str]:
    """``--set k=v`` arguments for the fast test overrides."""
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]


@pytest.fixture(scope="session")
def e2e_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset every e2e test uploads (the shared demo set's recipe: 40 clips, 2 CSVs, 6 noise files); read-only.

    Clearly separated classes, so the first run's v1 earns its promotion under the shipped gate."""
    from spira_demo import generate_demo_dataset
    from tests.conftest import DEMO_SPEAKERS

    dataset = tmp_path_factory.mktemp("e2e-data") / "dataset"
    generate_demo_dataset(dataset, speakers=DEMO_SPEAKERS, seed=11, separation="clear")
    return dataset

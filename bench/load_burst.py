"""Load: a burst of uploads through S3 -> SQS -> the bridge -> a real Prefect server gives ONE retrain run.

    python -m bench.load_burst                  # 5,000 objects (a few minutes here; ends by itself)
    python -m bench.load_burst --objects 500    # smaller

Real processes on 127.0.0.1: ``moto_server`` (S3 + SQS, with a bucket
notification to a queue), ``prefect server start``, and the bridge as its own
process (``python -m deployments.s3_bridge --exit-when-idle``, HEAD check on,
as in production). The ``spira-retrain`` deployment's automation is the
production upload-burst trigger (``deployments.triggers.retrain_trigger``)
with a window longer than the burst; no worker runs, so the run it creates
stays scheduled and is only counted.

Measured: upload rate, the bridge's events per second (first to last
acknowledged emit), the Prefect server's latency (p50/p95/max of ``GET
/health`` and of a ``POST /flow_runs/filter`` read) before and during the
burst, and the number of flow runs created (must be exactly 1).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
NAME = "load_burst"
SETTLE_S = 1800  # the trigger's window: longer than any burst here, so a burst is one run


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


class Probe:
    """Polls the server's health and a read endpoint every ``interval_s``, recording latencies."""

    def __init__(self, api_url: str, interval_s: float = 0.25) -> None:
        self.api_url, self.interval_s = api_url, interval_s
        self.health: list[float] = []
        self.reads: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self._stop.is_set():
                for samples, call in ((self.health, lambda: client.get(f"{self.api_url}/health")),
                                      (self.reads, lambda: client.post(f"{self.api_url}/flow_runs/filter",
                                                                       json={"limit": 1}))):
                    t0 = time.perf_counter()
                    try:
                        call().raise_for_status()
                        samples.append(time.perf_counter() - t0)
                    except Exception:  # noqa: BLE001 - an error is a data point too
                        self.errors += 1
                self._stop.wait(self.interval_s)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def figures(self) -> dict[str, Any]:
        return {"health": _percentiles(self.health), "flow_runs_filter": _percentiles(self.reads), "errors": self.errors}


def _aws_env(moto_url: str, home: Path) -> dict[str, str]:
    from tests.servers import AWS_VARS_TO_CLEAR, moto_aws_env

    env = {k: v for k, v in os.environ.items() if k not in AWS_VARS_TO_CLEAR}
    env.update(moto_aws_env(moto_url, home))
    return env


TEST_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _wire(moto_url: str, tag: str) -> tuple[str, str, Any, Any]:
    from spira_lib.adapters.s3 import aws_session, make_s3_client

    s3 = make_s3_client(moto_url, credentials=TEST_KEYS)
    sqs = aws_session(TEST_KEYS).client("sqs", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"spira-burst-{tag}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"spira-burst-{tag}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return bucket, queue_url, s3, sqs


def _deploy(api_url: str, bucket: str, tag: str) -> Any:
    """A spira-retrain deployment (no worker) with the production upload-burst automation."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.triggers import retrain_trigger

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("spira-retrain")
        dep_id = client.create_deployment(flow_id=flow_id, name=f"burst-{tag}", entrypoint="flows/retrain.py:retrain_flow",
                                          parameters={"data_uri": f"s3://{bucket}/incoming"})
        trigger = retrain_trigger(bucket, "incoming", SETTLE_S)
        trigger.set_deployment_id(dep_id)
        client.create_automation(trigger.as_automation())
    return dep_id


def _stored_events(api_url: str, bucket: str, expected: int, wait_s: float = 120.0) -> int:
    """Distinct events the server stored for ``bucket``'s objects (duplicates by id are dropped on arrival)."""
    import httpx

    from spira_lib.watch import OBJECT_CREATED_EVENT

    body = {"filter": {"event": {"name": [OBJECT_CREATED_EVENT]}, "resource": {"id_prefix": [f"s3://{bucket}/"]}}}
    deadline, count = time.monotonic() + wait_s, 0
    with httpx.Client(trust_env=False, timeout=60) as client:
        while True:  # the event persister writes in batches: wait until the count settles at the total
            resp = client.post(f"{api_url}/events/count-by/event", json=body)
            resp.raise_for_status()
            count = sum(int(row["count"]) for row in resp.json())
            if count >= expected or time.monotonic() > deadline:
                return count
            time.sleep(1.0)


def _count_runs(api_url: str, dep_id: Any) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return len(client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))))


def _backlog(sqs: Any, queue_url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _upload(s3: Any, sqs: Any, bucket: str, queue_url: str, n: int, workers: int, max_backlog: int) -> float:
    """Upload ``n`` objects in chunks; pause while more than ``max_backlog`` notifications wait.

    The S3 test server's SQS scans its whole queue on every receive, so an
    unbounded backlog slows it (and every figure) down without end; a real
    queue does not. Pausing keeps the burst one burst (well inside the window).
    """
    body = b"RIFF" + bytes(256)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, 100):
            while max_backlog and _backlog(sqs, queue_url) > max_backlog:
                time.sleep(0.5)
            keys = [f"incoming/burst/clip-{i:05d}.wav" for i in range(start, min(n, start + 100))]
            list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=body), keys))
    return time.perf_counter() - t0


def burst(moto_url: str, api_url: str, objects: int, *, workers: int = 4, pollers: int = 2, max_backlog: int = 300,
          home: Path | None = None, say: Callable[[str], None] = print, timeout_s: float = 3000.0) -> dict[str, Any]:
    """Run one burst against running servers; returns the figures (``runs`` must be 1)."""
    home = Path(home or tempfile.mkdtemp(prefix="spira-burst-"))
    tag = uuid.uuid4().hex[:8]
    bucket, queue_url, s3, sqs = _wire(moto_url, tag)
    dep_id = _deploy(api_url, bucket, tag)
    time.sleep(3)  # the triggers service loads new automations asynchronously
    with Probe(api_url) as idle:
        time.sleep(5)
    env = {**_aws_env(moto_url, home), "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "deployments.s3_bridge", "--queue-url", queue_url, "--bucket", bucket,
           "--prefix", "incoming", "--wait-time", "2", "--exit-when-idle", "3", "--summary", "--pollers", str(pollers),
           "--prefect-api-url", api_url, "--log-level", "WARNING"]
    say(f"[{NAME}] uploading {objects} objects while the bridge forwards them")
    with Probe(api_url) as busy:
        bridge = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            upload_s = _upload(s3, sqs, bucket, queue_url, objects, workers, max_backlog)
            out, err = bridge.communicate(timeout=timeout_s)
        finally:
            if bridge.poll() is None:
                bridge.kill()
                bridge.wait()
    if bridge.returncode != 0:
        raise RuntimeError(f"the bridge exited with {bridge.returncode}: {err[-2000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    stored = _stored_events(api_url, bucket, objects)
    time.sleep(5)  # let the triggers service evaluate the last events
    runs = _count_runs(api_url, dep_id)
    return {"objects": objects, "pollers": pollers, "max_backlog": max_backlog, "upload_s": round(upload_s, 1), "upload_per_s": round(objects / upload_s, 1),
            "bridge": summary, "events_per_s": summary["events_per_s"], "stored_events": stored, "runs": runs,
            "server_idle": idle.figures(), "server_during_burst": busy.figures()}


def run(ctx: Any) -> list[Any]:
    """``bench.run_all`` entry point: the 5,000-object burst (500 with --quick)."""
    from bench.common import Result
    from tests.servers import moto_server, prefect_server

    n = 500 if getattr(ctx, "quick", False) else 5000
    with tempfile.TemporaryDirectory(prefix="spira-burst-") as tmp, moto_server(Path(tmp) / "moto") as moto_url, \
            prefect_server(Path(tmp) / "prefect") as api_url:
        fig = burst(moto_url, api_url, n, home=Path(tmp), say=getattr(ctx, "say", print))
    during = fig["server_during_burst"]
    return [Result(
        name="load_burst.runs", value=float(fig["runs"]), unit="runs",
        compares=f"{n} uploads -> S3 notifications -> SQS -> bridge -> Prefect events -> upload-burst automation",
        target="exactly 1 run", passed=fig["runs"] == 1 and fig["stored_events"] == n,
        notes=(f"bridge {fig['events_per_s']} events/s; server during the burst: /health p50 "
               f"{during['health']['p50_ms']} ms, p95 {during['health']['p95_ms']} ms; flow_runs/filter p50 "
               f"{during['flow_runs_filter']['p50_ms']} ms, p95 {during['flow_runs_filter']['p95_ms']} ms"),
        extra=fig)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load_burst", description=__doc__.split("\n")[0])
    p.add_argument("--objects", type=int, default=5000)
    p.add_argument("--workers", type=int, default=4, help="upload threads")
    p.add_argument("--pollers", type=int, default=2, help="the bridge's poll loops")
    p.add_argument("--max-backlog", type=int, default=300,
                   help="pause uploading while more notifications than this wait in the queue (0: never)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    ns = p.parse_args(argv)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="spira-burst-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from tests.servers import moto_server, prefect_server

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spira-burst-") as tmp:
        print(f"[{NAME}] starting moto_server and prefect server", flush=True)
        with moto_server(Path(tmp) / "moto") as moto_url, prefect_server(Path(tmp) / "prefect") as api_url:
            fig = burst(moto_url, api_url, ns.objects, workers=ns.workers, pollers=ns.pollers, max_backlog=ns.max_backlog, home=Path(tmp),
                        say=lambda m: print(m, flush=True))
    fig["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(fig, indent=2))
    if ns.out:
        ns.out.write_text(json.dumps(fig, indent=2) + "\n")
    # Redelivered messages are emitted again (at least once); the server keeps one event per object.
    ok = fig["runs"] == 1 and fig["stored_events"] == ns.objects and fig["bridge"]["stats"]["emitted"] >= ns.objects
    print(f"[{NAME}] {'OK' if ok else 'FAILED'}: {fig['runs']} run(s) for {ns.objects} objects; "
          f"bridge {fig['events_per_s']} events/s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

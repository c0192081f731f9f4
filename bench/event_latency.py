"""Benchmark 5: event -> flow run latency on a local Prefect server.

Reuses the end-to-end test setup: ``tests.servers.prefect_server`` (a real
``prefect server start`` on 127.0.0.1) and ``deployments.serve`` as a
subprocess with a 1 s settle window. ONE ``spira.s3.object.created`` event is
emitted directly with Prefect's events client (no S3, no bridge), then the
flow run is watched: emit -> run created (automation fired) -> running
(the runner picked it up after the settle window).

The run itself then fails at once (its S3 endpoint is a closed local port);
only the orchestration latency is measured.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

from bench.common import Context, Result, check

NAME = "event_latency"
SETTLE_S = 1.0
TARGET_LAG_S = 5.0  # run start after its scheduled time (runner poll = 1 s)


def _seconds(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else (b - a).total_seconds()


def run(ctx: Context) -> list[Result]:
    from prefect.client.orchestration import get_client
    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.triggers import EVENT_NAME
    from tests.e2e.conftest import service_env, start_service
    from tests.servers import prefect_server

    bucket, name = "bench-latency", f"bench-{uuid.uuid4().hex[:8]}"
    timings: dict[str, float | None] = {}
    with ctx.tempdir("bench-events") as tmp:
        t0 = time.monotonic()
        ctx.say("[event_latency] starting prefect server")
        with prefect_server(tmp) as api_url:
            timings["server_start_s"] = time.monotonic() - t0
            # A closed port as the S3 endpoint: nothing can reach real AWS, and the run fails fast.
            env = service_env(api_url, "http://127.0.0.1:9", tmp)
            t1 = time.monotonic()
            svc = start_service("serve", [
                "-m", "deployments.serve", "--data-uri", f"s3://{bucket}/incoming",
                "--registry-uri", f"s3://{bucket}/registry", "--name", name, "--settle", str(SETTLE_S),
            ], env, tmp / "logs")
            try:
                with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                    dep_id = _wait_for_automation(client, name, svc)
                    timings["serve_ready_s"] = time.monotonic() - t1
                    # The triggers service loads new automations asynchronously (see tests/e2e).
                    time.sleep(3)
                    event = Event(
                        event=EVENT_NAME,
                        resource={"prefect.resource.id": f"s3://{bucket}/incoming/clip-0001.wav",
                                  "s3.bucket": bucket, "s3.key": "incoming/clip-0001.wav"},
                        payload={"bucket": bucket, "key": "incoming/clip-0001.wav"},
                    )

                    async def emit() -> None:
                        async with get_events_client() as events:
                            await events.emit(event)

                    ctx.say("[event_latency] emitting one event")
                    t_emit = datetime.now(timezone.utc)
                    asyncio.run(emit())
                    timings["emit_call_s"] = _seconds(t_emit, datetime.now(timezone.utc))
                    run_ = _wait_for_run(client, dep_id, svc, want_running=False)
                    timings["seen_created_s"] = _seconds(t_emit, datetime.now(timezone.utc))
                    run_ = _wait_for_run(client, dep_id, svc, want_running=True)
                    timings["emit_to_created_s"] = _seconds(t_emit, run_.created)
                    timings["emit_to_scheduled_start_s"] = _seconds(t_emit, run_.expected_start_time)
                    timings["emit_to_running_s"] = _seconds(t_emit, run_.start_time)
                    timings["start_lag_after_schedule_s"] = _seconds(run_.expected_start_time, run_.start_time)
                    timings["run_event_id_matches"] = float(run_.parameters.get("event_id") == str(event.id))
            finally:
                survivors = svc.stop()
                if survivors:
                    ctx.say(f"[event_latency] WARNING: processes left running: {survivors}")

    lag = timings.get("start_lag_after_schedule_s")
    created = timings.get("emit_to_created_s")
    running = timings.get("emit_to_running_s")
    return [
        Result(
            name="event_latency.emit_to_running",
            value=running,
            unit="s",
            compares=f"emit -> flow run RUNNING (settle window {SETTLE_S:g} s included)",
            target=f"start lag after schedule <= {TARGET_LAG_S:g} s",
            passed=check(lag, maximum=TARGET_LAG_S),
            notes=(
                f"emit -> run created {created:.2f} s (event to automation to run-deployment), scheduled start "
                f"{timings.get('emit_to_scheduled_start_s', 0):.2f} s, running {running:.2f} s; start lag after the "
                f"scheduled time {lag:.2f} s (runner poll 1 s + subprocess start). Setup: prefect server "
                f"{timings['server_start_s']:.1f} s, serve ready {timings['serve_ready_s']:.1f} s."
                if running is not None and created is not None and lag is not None else f"incomplete: {timings}"
            ),
            extra=timings,
        ),
        Result(
            name="event_latency.emit_to_created",
            value=created,
            unit="s",
            compares="emit -> flow run created by the automation (server timestamps)",
            notes="the event path inside the server: events service -> triggers -> run-deployment action",
        ),
    ]


def _wait_for_automation(client, name: str, svc, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        svc.check_running()
        try:
            dep = client.read_deployment_by_name(f"spira-retrain/{name}")
        except Exception:  # noqa: BLE001 - not registered yet
            dep = None
        if dep is not None:
            autos = client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
            if autos and all(a.enabled for a in autos):
                return dep.id
        time.sleep(0.5)
    raise TimeoutError(f"the served deployment spira-retrain/{name} and its automation did not appear within {timeout_s:.0f}s:\n{svc.log_tail()}")


def _wait_for_run(client, dep_id, svc, *, want_running: bool, timeout_s: float = 120.0):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        svc.check_running()
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])))
        if runs:
            run_ = runs[0]
            if not want_running or run_.start_time is not None or (run_.state and run_.state.is_final()):
                return run_
        time.sleep(0.1)
    what = "to start running" if want_running else "to be created"
    raise TimeoutError(f"no flow run {what} within {timeout_s:.0f}s of the event:\n{svc.log_tail()}")

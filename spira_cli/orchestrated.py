"""The CLI commands that run Prefect flows (Prefect is imported only here, and only when called).

Without ``PREFECT_API_URL`` these commands run on Prefect's embedded
(ephemeral) server. Two defaults make that work on a small offline machine;
a value already in the environment (or the Prefect profile) wins:

* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180``: the first start
  creates the server's database, which took longer than Prefect's 20 s on a
  busy 2-core machine; the server is started up front, saying so.
* ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: the server's telemetry heartbeat
  logs ``ERROR ... Failed to send telemetry`` where there is no internet.
  Set it to ``true`` to send telemetry.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, MutableMapping, Optional

from spira_lib.pipeline import RunOutcome

EMBEDDED_STARTUP_TIMEOUT_S = 180

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EMBEDDED_STARTUP_TIMEOUT_S),
}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prefect_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put the project's Prefect defaults into ``environ`` where unset; returns those it set.

    Call it before Prefect is imported, so this process's settings see them too;
    the embedded server's process inherits them either way.
    """
    added = {k: v for k, v in PREFECT_DEFAULTS.items() if k not in environ}
    environ.update(added)
    return added


def start_embedded_server(say: Callable[[str], None] = _say) -> Optional[str]:
    """Start Prefect's embedded server now when no ``PREFECT_API_URL`` is set; returns its API URL.

    Prefect would start it silently at the first API call, with a 20 s limit;
    here it starts up front with the configured limit, and the user is told
    what is happening and how long it took. The flow then reuses this server
    (Prefect keeps one per process). Exits with a clear message when it does
    not come up.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    limit = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    say(f"starting Prefect's embedded server (database in {PREFECT_HOME.value()}; the first start sets it up "
        f"and may take a minute on a busy machine; limit {limit} s) ...")
    t0 = time.perf_counter()
    server = SubprocessASGIServer()
    try:
        server.start(timeout=limit)
    except RuntimeError as exc:
        say(f"error: Prefect's embedded server did not answer within {limit} s ({str(exc)[:300]}).\n"
            f"  Give it longer: export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={limit * 2}\n"
            "  or run a server yourself: prefect server start, then export PREFECT_API_URL=http://127.0.0.1:4200/api")
        raise SystemExit(1) from None
    say(f"embedded Prefect server ready at {server.api_url} after {time.perf_counter() - t0:.1f} s")
    return server.api_url


def run_retrain(
    data_uri: str, registry_uri: str, *, config_path: Optional[str] = None, overrides: Optional[dict[str, Any]] = None,
    model_name: str = "spira", force: bool = False,
) -> RunOutcome:
    prefect_defaults()
    start_embedded_server()
    from flows.retrain import retrain_flow

    return retrain_flow(
        data_uri=data_uri, registry_uri=registry_uri, config_path=config_path, overrides=overrides, model_name=model_name, force=force
    )


def print_gate_refusal(outcome: RunOutcome) -> None:
    """Why the gate did not promote, one failing check per line."""
    decision = outcome.decision or {}
    if decision and not decision.get("promote"):
        failing = [c["detail"] for c in decision.get("checks", []) if not c.get("passed")]
        print("the promotion gate said no:" + "".join(f"\n  - {reason}" for reason in failing or decision.get("reasons", [])[:3]))


def run_demo_flow(data_dir: Path, registry_dir: Path) -> RunOutcome:
    """`make demo`: the spira-retrain flow on the demo dataset with Prefect's embedded server."""
    mode = os.environ.get("PREFECT_API_URL") or "embedded (ephemeral) Prefect server"
    print(f"running flow spira-retrain on {data_dir} -> {registry_dir} with {mode}", flush=True)
    t0 = time.perf_counter()
    outcome = run_retrain(str(data_dir.resolve()), str(registry_dir.resolve()))
    seconds = time.perf_counter() - t0
    print()
    print(json.dumps(outcome.model_dump(include={"model", "version", "promoted", "skipped", "metrics"}), indent=2, default=str))
    print(f"\nmodel {outcome.model} v{outcome.version}: {outcome.verdict}; flow wall time {seconds:.1f} s")
    print_gate_refusal(outcome)
    print(f"registry: {registry_dir.resolve()}  (try: .venv/bin/spira registry list --registry {registry_dir})")
    print("see the run graph and artifacts: .venv/bin/prefect server start, then open http://127.0.0.1:4200")
    return outcome

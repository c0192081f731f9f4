"""The CLI commands that run Prefect flows (Prefect is imported only here, and only when called)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from spira_lib.pipeline import RunOutcome


def run_retrain(
    data_uri: str, registry_uri: str, *, config_path: Optional[str] = None, overrides: Optional[dict[str, Any]] = None,
    model_name: str = "spira", force: bool = False,
) -> RunOutcome:
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

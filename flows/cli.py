"""Entry points that run the flows from the `spira` CLI (Prefect imported only here)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional


def run_retrain(
    data_uri: str,
    registry_uri: str,
    *,
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
    model_name: str = "spira",
    force: bool = False,
) -> dict:
    from flows.retrain import retrain_flow

    return retrain_flow(
        data_uri=data_uri, registry_uri=registry_uri, config_path=config_path, overrides=overrides, model_name=model_name, force=force
    )


def run_demo_flow(data_dir: Path, registry_dir: Path) -> dict:
    """`make demo`: the spira-retrain flow on the demo dataset with Prefect's embedded server."""
    mode = os.environ.get("PREFECT_API_URL") or "embedded (ephemeral) Prefect server"
    print(f"running flow spira-retrain on {data_dir} -> {registry_dir} with {mode}", flush=True)
    t0 = time.perf_counter()
    result = run_retrain(str(data_dir.resolve()), str(registry_dir.resolve()))
    seconds = time.perf_counter() - t0
    print()
    print(json.dumps({k: result.get(k) for k in ("model", "version", "promoted", "skipped", "metrics")}, indent=2, default=str))
    verdict = "already trained (nothing to do)" if result.get("skipped") else ("promoted to champion" if result.get("promoted") else "registered, not promoted")
    print(f"\nmodel {result['model']} v{result['version']}: {verdict}; flow wall time {seconds:.1f} s")
    decision = result.get("decision") or {}
    if decision and not decision.get("promote"):
        failing = [c["detail"] for c in decision.get("checks", []) if not c.get("passed")]
        print("the promotion gate said no:" + "".join(f"\n  - {reason}" for reason in failing or decision.get("reasons", [])[:3]))
    print(f"registry: {registry_dir.resolve()}  (try: .venv/bin/spira registry list --registry {registry_dir})")
    print("see the run graph and artifacts: .venv/bin/prefect server start, then open http://127.0.0.1:4200")
    return result

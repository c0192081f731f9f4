"""What every task needs: the workspace from URIs + config, and a cache key made of digests."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from spira_lib.bootstrap import open_store, open_workspace
from spira_lib.config import SpiraConfig, stable_hash
from spira_lib.pipeline import Workspace, code_version, workspace_id

# Artifact keys shown in the Prefect UI (stable, so the UI keeps their history).
VALIDATION_REPORT_KEY = "spira-validation-report"
METRICS_KEY = "spira-metrics"
SLICES_KEY = "spira-slices"
MODEL_KEY = "spira-model"
MODEL_CARD_KEY = "spira-model-card"
QUARANTINE_KEY = "spira-quarantine"


def config_from(cfg: dict) -> SpiraConfig:
    """Tasks receive the config as a plain dict (cheap, stable to hash); rebuild the model."""
    return SpiraConfig.model_validate(cfg)


def workspace(data_uri: str, registry_uri: str, cfg: SpiraConfig) -> Workspace:
    return open_workspace(data_uri, registry_uri, cfg)


@functools.lru_cache(maxsize=1)
def _tasks_source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def digest_cache_key(context: Any, parameters: dict) -> str:
    """Cache key for Prefect tasks: the task, its (small, digest-valued) inputs, the code and the workspace.

    Inputs are URIs, config dicts and the dicts earlier steps returned (keys and
    digests), never tensors or DataFrames, so the key is identical across
    processes. The workspace id makes a recreated registry a cache miss, so a
    cached result never points at objects that no longer exist.
    """
    params = {k: v for k, v in parameters.items() if k != "force"}
    ws = workspace_id(open_store(parameters["registry_uri"])) if "registry_uri" in parameters else ""
    return stable_hash(
        {"task": context.task.name, "params": params, "workspace": ws, "core": code_version(), "tasks": _tasks_source_hash()}
    )

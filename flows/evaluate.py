"""spira-evaluate-champion: score a registered model (the champion by default) on any labelled dataset."""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow

from flows.common import rename_run
from spira_lib.pipeline import RunSpec
from tasks.registry_ops import evaluate_registered_model, publish_evaluation


@flow(name="spira-evaluate-champion", log_prints=True)
def evaluate_champion_flow(
    data_uri: str,
    registry_uri: str = "demo/registry",
    model_ref: str = "spira@champion",
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
) -> dict:
    """Re-score ``model_ref`` (``spira``, ``spira@champion``, ``spira:3``) on ``data_uri``, e.g. a fresh hold-out."""
    spec = RunSpec.build(data_uri, registry_uri, config_path=config_path, overrides=overrides)
    result = evaluate_registered_model(spec, model_ref)
    rename_run(f"evaluate-{result.model}-v{result.version}-{result.snapshot_digest[:8]}")
    publish_evaluation(result)
    return result.model_dump(include={"model", "version", "data", "snapshot_digest", "n_quarantined", "metrics"})

"""Scoring a registered model on any labelled dataset (e.g. a fresh hold-out from a partner hospital)."""
from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from spira_lib.metrics import summary_metrics
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.contract import RunSpec
from spira_lib.pipeline.data_steps import snapshot_step, validate_step
from spira_lib.pipeline.model_steps import report_for, score_checkpoint
from spira_lib.pipeline.workspace import PipelineError


class Evaluation(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    data: str
    snapshot_digest: str
    n_quarantined: int
    quarantine: list[dict[str, Any]]
    metrics: dict[str, Any]
    report: dict[str, Any]


def evaluate_dataset(spec: RunSpec, model_ref: str) -> Evaluation:
    """Score ``model_ref`` (``name``, ``name@alias``, ``name:N``) on every valid clip of the spec's dataset."""
    ws, cfg = spec.workspace(), spec.config
    mv = ws.registry.resolve(model_ref)
    blob = ws.registry.load_artifact(mv, "model.pt")
    snap = snapshot_step(spec)
    checked = validate_step(spec, snap)
    good = L.get_frame(ws.store, checked.good_key)
    if good.height == 0:
        raise PipelineError(f"no valid clips to evaluate in {ws.data.uri}: {checked.message}")
    rows = good.with_columns(pl.lit("test").alias("split"))
    probs, shortcut = score_checkpoint(ws, blob, rows, cfg)
    report = report_for(rows, probs, shortcut, cfg, ws)
    return Evaluation(
        model=mv.name, version=mv.version, data=ws.data.uri, snapshot_digest=snap.digest,
        n_quarantined=checked.n_quarantined, quarantine=L.get_json(ws.store, checked.quarantine_key, []),
        metrics=summary_metrics(report), report=report,
    )

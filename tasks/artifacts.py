"""Artifact keys shown in the Prefect UI (stable, so the UI keeps each one's history) and small publishers."""
from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact

VALIDATION_REPORT = "spira-validation-report"
METRICS = "spira-metrics"
SLICES = "spira-slices"
MODEL = "spira-model"
MODEL_CARD = "spira-model-card"
QUARANTINE = "spira-quarantine"
CHAMPION_METRICS = "spira-champion-metrics"
CHAMPION_SLICES = "spira-champion-slices"
ROLLBACK = "spira-rollback"
SCORED_BATCH = "spira-scored-batch"
SHADOW = "spira-shadow"
DRIFT = "spira-drift"


def publish_quarantine(rows: list[dict[str, Any]], snapshot_digest: str) -> None:
    create_table_artifact(
        key=QUARANTINE,
        table=[{k: r.get(k) for k in ("file", "reason", "kind", "csv", "row")} for r in rows],
        description=f"Quarantined rows of snapshot {snapshot_digest[:12]}",
    )

"""spira-rollback: move `champion` back to the previous champion (recorded in the ledger)."""
from __future__ import annotations

from prefect import flow

from tasks.registry_ops import rollback_champion


@flow(name="spira-rollback", log_prints=True)
def rollback_flow(registry_uri: str = "demo/registry", model_name: str = "spira", reason: str = "rollback requested") -> dict:
    return rollback_champion(registry_uri, model_name, reason)

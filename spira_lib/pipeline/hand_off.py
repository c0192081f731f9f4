"""Handing the champion to the serving side (SPIRA's MLflow registry) whenever it changes.

Called after a promotion by the gate, a promotion on shadow evidence, a manual
promotion and a rollback, so the served model always follows the registry's
champion. Off (returns None) when no publisher is configured.
"""
from __future__ import annotations

from spira_lib.pipeline.workspace import Workspace
from spira_lib.ports import PublishedModel


def hand_off_champion(ws: Workspace, name: str, threshold: float = 0.5) -> PublishedModel | None:
    """Publish ``name``'s current champion; idempotent (the same checkpoint is never registered twice)."""
    if ws.publisher is None:
        return None
    champion = ws.registry.champion(name)
    if champion is None:
        return None
    blob = ws.registry.load_artifact(champion, "model.pt")
    return ws.publisher.publish(name, champion.version, blob, dict(champion.metadata), threshold=threshold)

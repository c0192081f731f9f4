"""Short reports of how a run ended when it did not train (skip, failure), and of registry moves."""
from __future__ import annotations

from typing import Any, Iterable

from spira_lib.reporting.markdown import md_table

MAX_FAILURE_ROWS = 100


def skip_report(model_name: str, snapshot_digest: str, split_digest: str, version: int, uri: str) -> str:
    """An already-trained snapshot: say so instead of training again."""
    return (
        "## Nothing to train\n\n"
        f"This data (snapshot `{snapshot_digest}`, split `{split_digest}`) was already trained with this "
        f"configuration and code: **{model_name} v{version}** ({uri}). No new version was registered.\n"
    )


def failure_report(message: str, quarantine: Iterable[dict[str, Any]]) -> str:
    """Not enough valid data: the quarantine is the report."""
    rows = [[r.get("file"), r.get("reason")] for r in list(quarantine)[:MAX_FAILURE_ROWS]]
    return f"## Validation failed\n\n{message}\n\n" + md_table(["File", "Reason"], rows) + "\n"


def lineage_report(model: dict[str, Any], snapshot_digest: str | None, split_digest: str | None) -> str:
    """Where a registered version lives and what it was made from, every digest labelled."""
    rows = [[k, f"`{v}`" if v is not None else None] for k, v in model.items()]
    rows += [["snapshot digest (dataset content)", f"`{snapshot_digest}`"], ["split digest (data + split)", f"`{split_digest}`"]]
    title = f"## {model.get('name')} v{model.get('version')}"
    return f"{title}\n\n" + md_table(["Field", "Value"], rows) + "\n"


def rollback_report(model_name: str, before: int | None, after: int, reason: str) -> str:
    return f"## Rollback of {model_name}\n\nchampion: v{before if before is not None else '-'} → **v{after}**\n\nreason: {reason}\n"

"""What every flow shares: renaming a run once its subject is known, and refusing foreign triggers."""
from __future__ import annotations

from typing import Optional

from prefect import get_run_logger
from prefect.runtime import flow_run

from spira_lib.watch import is_inside


def rename_run(name: str) -> None:
    """Run names tell the story (e.g. the data digest), which is only known after the first step."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run_id=run_id, name=name)
    except Exception as exc:  # a cosmetic step must never fail a training run
        get_run_logger().debug("could not rename the flow run: %s", exc)


def check_trigger(trigger: Optional[str], data_uri: str) -> None:
    """An event-derived object URI must lie under the dataset this deployment watches."""
    if trigger and not is_inside(trigger, data_uri):
        base = data_uri.rstrip("/") + "/"
        raise ValueError(f"trigger object {trigger!r} is outside the watched dataset {base!r}; refusing to run")


def mark_run(tags: list[str], name_suffix: str = "") -> None:
    """Tag the running flow run and append ``name_suffix`` to its name, so the runs list shows the outcome.

    (``prefect.tags`` inside a flow does not retag a running flow run.) Cosmetic: never fails a run.
    """
    run_id = flow_run.get_id()
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(run_id)
            name = f"{current.name}-{name_suffix}" if name_suffix and not current.name.endswith(name_suffix) else None
            client.update_flow_run(flow_run_id=run_id, tags=sorted(set(current.tags or []) | set(tags)), name=name)
    except Exception as exc:
        get_run_logger().debug("could not mark the flow run: %s", exc)

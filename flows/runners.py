"""Which task runner the flows fan out on, chosen by configuration (environment).

The default is a thread pool in the flow's process. ``SPIRA_TASK_RUNNER=dask``
switches to prefect-dask's DaskTaskRunner: a temporary local cluster, or an
existing one at ``SPIRA_DASK_ADDRESS`` (e.g. ``tcp://scheduler:8786``). Results
are identical either way: each feature chunk is a pure function of its clips
and the config.
"""
from __future__ import annotations

import os


def make_task_runner(kind: str | None = None):
    kind = (kind or os.environ.get("SPIRA_TASK_RUNNER", "thread")).strip().lower()
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=int(os.environ.get("SPIRA_TASK_WORKERS", "2")))
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("SPIRA_TASK_RUNNER=dask needs prefect-dask (pip install prefect-dask)") from exc
        address = os.environ.get("SPIRA_DASK_ADDRESS")
        if address:
            return DaskTaskRunner(address=address)
        workers = int(os.environ.get("SPIRA_DASK_WORKERS", "2"))
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"SPIRA_TASK_RUNNER must be 'thread' or 'dask', got {kind!r}")

"""How task results are cached and retried.

``SpiraCachePolicy`` keys a task run by the task's name, its own source, the
model-shaping code version, the workspace id and its inputs, where a RunSpec or
a step result counts by its ``cache_identity()`` (digests and keys, never
timings). Computing a key never writes: a workspace without an id (nothing
stored yet) simply gets no cache.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional

from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from spira_lib.hashing import stable_hash
from spira_lib.pipeline.contract import RunSpec, StepResult
from spira_lib.pipeline.workspace import code_version
from spira_lib.ports import StoreError

# Inputs that change how a step runs, never what it produces.
IGNORED_INPUTS = frozenset({"force"})


@functools.lru_cache(maxsize=None)
def source_hash(fn: Callable[..., Any]) -> str:
    """Hash of one function's own source: editing another task does not invalidate this one."""
    try:
        return stable_hash(inspect.getsource(fn))[:16]
    except (OSError, TypeError):
        return "no-source"


def identity(value: Any) -> Any:
    if isinstance(value, (RunSpec, StepResult)):
        return value.cache_identity()
    return value


@dataclass
class SpiraCachePolicy(CachePolicy):
    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        spec = inputs.get("spec")
        if not isinstance(spec, RunSpec):
            return None
        workspace_id = spec.workspace().read_id()
        if workspace_id is None:
            return None
        return stable_hash({
            "task": task_ctx.task.name,
            "source": source_hash(task_ctx.task.fn),
            "code": code_version(),
            "workspace": workspace_id,
            "inputs": {k: identity(v) for k, v in sorted(inputs.items()) if k not in IGNORED_INPUTS},
        })


def retry_on_storage_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only when storage failed in a way a second try can fix."""
    try:
        state.result()
    except (StoreError, ConnectionError, TimeoutError):
        return True
    except Exception:  # noqa: BLE001 - bad data, bad config, registry refusals: retrying cannot help
        return False
    return False


# Pure function of its inputs: cached for 30 days, persisted so another process can reuse it.
CACHED = dict(cache_policy=SpiraCachePolicy(), persist_result=True, cache_expiration=timedelta(days=30))
# Depends on mutable state (the dataset listing, the champion, the registry): never cached.
UNCACHED = dict(cache_policy=NO_CACHE, persist_result=False)
# Storage I/O may fail for a moment (S3 throttling, a reset connection).
RETRIED = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_storage_errors)

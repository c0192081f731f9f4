"""The one definition of *when* spira-retrain runs on its own: the upload-burst trigger.

An upload of new recordings is a burst: hundreds of clips and a CSV within a
few minutes, each producing one ``spira.s3.object.created`` event (see
``deployments/s3_bridge.py``). The trigger below turns a burst into ONE run
that sees all of it:

* ``for_each: [s3.bucket]`` puts every object of a bucket in the same
  automation bucket (per resource id would give each object its own window,
  hence one run per clip);
* ``posture: Reactive, threshold: 1`` fires on the first event, and Prefect
  then ignores the rest of that bucket's events for ``within`` seconds;
* the deployment trigger's ``schedule_after`` (equal to ``within``) delays the
  run's start by the same window, so the burst has settled when the run
  snapshots the dataset itself;
* the deployment's concurrency limit (1, ENQUEUE) means a burst that outlasts
  the window starts a second run only after the first finished.

``prefect.yaml`` carries the same trigger as YAML, its window read from
``$SPIRA_SETTLE_SECONDS`` at deploy time by ``settle_window`` below
(``tests/unit/deployments/test_prefect_yaml.py`` checks that both agree);
``deployments/serve.py`` uses this module directly.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Iterable, Mapping

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.events import ResourceSpecification

from spira_lib.watch import OBJECT_CREATED_EVENT, is_under, split_s3_uri, watched_resource

EVENT_NAME = OBJECT_CREATED_EVENT

# A burst is assumed to be over this long after its first object (200 clips
# and a CSV "within a few minutes"); a longer burst gives one more, queued run.
DEFAULT_SETTLE_SECONDS = 600

# The variable `prefect deploy` reads the window from (see settle_window below).
SETTLE_ENV = "SPIRA_SETTLE_SECONDS"
# The variable naming the config file the deployed runs use (see run_config below).
CONFIG_ENV = "SPIRA_CONFIG"

TRIGGER_NAME = "spira-retrain-on-upload"
# The `local` target's trigger (deployed disabled; `prefect automation resume <this name>` enables it).
LOCAL_TRIGGER_NAME = "spira-retrain-on-upload-local"

# Flow parameters rendered from the firing (first) event of a burst. The
# ``| string`` filter is required: the raw id is a UUID, which Prefect cannot
# serialise into the run's parameters and the run would never be created.
EVENT_PARAMETERS: dict[str, str] = {
    "trigger": "{{ event.resource.id }}",
    "event_id": "{{ event.id | string }}",
}

CONCURRENCY_LIMIT = 1
COLLISION_STRATEGY = ConcurrencyLimitStrategy.ENQUEUE


def retrain_trigger(
    bucket: str,
    prefix: str = "",
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    *,
    name: str = TRIGGER_NAME,
    enabled: bool = True,
    event_name: str = EVENT_NAME,
    extra_parameters: dict[str, Any] | None = None,
) -> DeploymentEventTrigger:
    """The burst trigger for uploads under ``s3://bucket/prefix/``.

    ``settle_seconds`` is both the window in which further events are absorbed
    and the delay before the run starts; it must be > 0, since a zero window
    would fire once per object.
    """
    if isinstance(settle_seconds, bool) or not isinstance(settle_seconds, (int, float)) or settle_seconds <= 0:
        raise ValueError(f"settle_seconds must be a positive number of seconds, got {settle_seconds!r}")
    window = timedelta(seconds=settle_seconds)
    parameters = {**(extra_parameters or {}), **EVENT_PARAMETERS}
    return DeploymentEventTrigger(
        name=name,
        description=(
            f"Retrain once per upload burst under s3://{bucket}/{prefix.strip('/')}: the first "
            f"{event_name} event schedules a run {settle_seconds:g} s later; events in between are absorbed."
        ),
        enabled=enabled,
        expect={event_name},
        match=ResourceSpecification({"prefect.resource.id": watched_resource(bucket, prefix)}),
        for_each={"s3.bucket"},
        posture="Reactive",
        threshold=1,
        within=window,
        schedule_after=window,
        parameters=parameters,
    )


def retrain_concurrency() -> ConcurrencyLimitConfig:
    """At most one retrain at a time per deployment; later runs wait their turn."""
    return ConcurrencyLimitConfig(limit=CONCURRENCY_LIMIT, collision_strategy=COLLISION_STRATEGY)


def trigger_as_yaml(trigger: DeploymentEventTrigger) -> dict[str, Any]:
    """The trigger in ``prefect.yaml``'s shape (what one would paste under ``triggers:``)."""
    return {
        "type": "event",
        "name": trigger.name,
        "enabled": trigger.enabled,
        "expect": sorted(trigger.expect),
        "match": dict(trigger.match.root),
        "for_each": sorted(trigger.for_each),
        "posture": trigger.posture.value if hasattr(trigger.posture, "value") else str(trigger.posture),
        "threshold": trigger.threshold,
        "within": int(trigger.within.total_seconds()),
        "schedule_after": int(trigger.schedule_after.total_seconds()),
        "parameters": dict(trigger.parameters or {}),
    }


def require_env(names: Iterable[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A ``prefect deploy`` build step: fail when a variable prefect.yaml templates is unset.

    Prefect replaces an unset ``{{ $VAR }}`` with an empty string and deploys
    anyway (a trigger on ``/*``, a run on dataset ``""``); this step stops the
    deploy instead, naming the variables. Returns their values as step outputs.
    ``env`` (default ``os.environ``) lets ``spira doctor`` apply the same rules.
    """
    environ = os.environ if env is None else env
    names = list(names)
    missing = [n for n in names if not environ.get(n, "").strip()]
    if missing:
        raise ValueError(
            "prefect.yaml needs these environment variables at deploy time: "
            + ", ".join(missing)
            + " (e.g. export SPIRA_DATA_URI=s3://bucket/incoming SPIRA_REGISTRY_URI=s3://bucket/registry)"
        )
    values = {n: environ[n].strip() for n in names}
    for n, v in values.items():
        if n.endswith("_URI") and v.endswith("/"):
            raise ValueError(f"environment variable {n}={v!r} must not end with '/' (the trigger adds '/*')")
    data, registry = values.get("SPIRA_DATA_URI"), values.get("SPIRA_REGISTRY_URI")
    if data and registry and is_under(registry, data):
        raise ValueError(
            f"SPIRA_REGISTRY_URI={registry!r} lies inside the watched SPIRA_DATA_URI={data!r}: "
            "every model the flow writes would be announced as a new upload"
        )
    return values


def settle_window(
    variable: str = SETTLE_ENV, default: int = DEFAULT_SETTLE_SECONDS, env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """A ``prefect deploy`` build step: the upload-burst window, in whole seconds.

    Read from ``$SPIRA_SETTLE_SECONDS`` at deploy time (``default`` when unset or
    blank), so a trial deploy can use a short window without editing the tracked
    ``prefect.yaml``. ``prefect.yaml`` uses the output as ``{{ spira-window.seconds }}``
    for both ``within`` and ``schedule_after``. A value that is not a positive
    whole number stops the deploy (a zero window would start one run per object).
    """
    raw = (os.environ if env is None else env).get(variable, "").strip()
    if not raw:
        return {"seconds": int(default)}
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ValueError(
            f"environment variable {variable}={raw!r} must be a positive whole number of seconds "
            f"(the upload-burst window; unset it for the default {default})"
        )
    return {"seconds": seconds}


INBOX_ENV = "SPIRA_INBOX_URI"
# A pattern no object can match: the scoring trigger's resource when no inbox is configured (it is disabled then).
NO_INBOX = "s3://spira-inbox-not-configured/*"


def inbox_location(variable: str = INBOX_ENV, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``prefect deploy`` build step: where unlabelled recordings arrive for scoring (optional).

    Returns ``uri`` (or None), the trigger's resource ``pattern`` and whether the
    upload trigger of spira-score is ``enabled``. The inbox may not overlap the
    watched dataset or the registry: an upload would then start the wrong flow,
    or every prediction the flow writes would count as an upload.
    """
    environ = os.environ if env is None else env
    raw = environ.get(variable, "").strip()
    if not raw:
        return {"uri": None, "pattern": NO_INBOX, "enabled": False}
    if raw.endswith("/"):
        raise ValueError(f"environment variable {variable}={raw!r} must not end with '/' (the trigger adds '/*')")
    bucket, prefix = split_s3_uri(raw)
    for other in ("SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"):
        value = environ.get(other, "").strip()
        if value and (is_under(value, raw) or is_under(raw, value)):
            raise ValueError(f"{variable}={raw!r} overlaps {other}={value!r}: keep the inbox in a folder of its own")
    return {"uri": raw, "pattern": watched_resource(bucket, prefix), "enabled": True}


def run_config(variable: str = CONFIG_ENV, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """A ``prefect deploy`` build step: the config file the deployed runs use, or None (the defaults).

    Read from ``$SPIRA_CONFIG`` at deploy time (e.g. ``configs/fast.yaml`` for a
    trial); ``prefect.yaml`` passes it as the runs' ``config_path`` parameter
    (``{{ spira-config.path }}``). The file is loaded now, so a missing file or
    a bad field stops the deploy rather than the first run. The path is handed
    over as given: a path relative to the repository root works for both
    targets (the ``local`` worker runs from this folder, the image holds the
    repository at ``/opt/spira``).
    """
    raw = (os.environ if env is None else env).get(variable, "").strip()
    if not raw:
        return {"path": None}
    from spira_lib.config import ConfigError, load_config

    try:
        load_config(raw)
    except ConfigError as exc:
        raise ValueError(f"environment variable {variable}={raw!r}: {exc}") from None
    return {"path": raw}


__all__ = [
    "EVENT_NAME",
    "EVENT_PARAMETERS",
    "DEFAULT_SETTLE_SECONDS",
    "TRIGGER_NAME",
    "LOCAL_TRIGGER_NAME",
    "SETTLE_ENV",
    "CONFIG_ENV",
    "CONCURRENCY_LIMIT",
    "COLLISION_STRATEGY",
    "retrain_trigger",
    "retrain_concurrency",
    "trigger_as_yaml",
    "require_env",
    "settle_window",
    "run_config",
    "inbox_location",
]

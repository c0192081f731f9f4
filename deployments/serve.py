"""Serve spira-retrain (event-triggered) and the two on-demand flows from this process.

A laptop/test alternative to ``prefect deploy`` + a worker: the flows run as
subprocesses of this process, with the same upload-burst trigger and the same
concurrency limit as the deployments in ``prefect.yaml``::

    PREFECT_API_URL=http://127.0.0.1:4200/api \\
    python -m deployments.serve --data-uri s3://spira-raw/incoming --registry-uri s3://spira-raw/registry

Events come from ``python -m deployments.s3_bridge``; on-demand runs from
``prefect deployment run 'spira-retrain/served' --param force=true``.
A real Prefect server is required: Prefect's ephemeral mode keeps no
automations alive, so no event could ever start a run.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from deployments.triggers import DEFAULT_SETTLE_SECONDS, retrain_concurrency, retrain_trigger
from spira_lib.watch import is_under, split_s3_uri

log = logging.getLogger("spira.serve")

DEFAULT_NAME = "served"


def build_deployments(
    data_uri: str,
    registry_uri: str,
    *,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    model_name: str = "spira",
    name: str = DEFAULT_NAME,
    watch: str | None = None,
    trigger: bool = True,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    cron: str | None = None,
    inbox: str | None = None,
) -> list[Any]:
    """RunnerDeployments for spira-retrain, spira-evaluate-champion and spira-rollback (and spira-score
    when an ``inbox`` of unlabelled recordings is given: triggered by its uploads when on S3).

    ``watch`` (default: ``data_uri`` when it is on S3) is where uploads trigger
    a retrain; it must lie inside ``data_uri``, because the flow refuses events
    for objects outside its dataset. ``trigger=False`` serves on demand only.
    """
    from flows.evaluate import evaluate_champion_flow
    from flows.retrain import retrain_flow
    from flows.rollback import rollback_flow

    data_uri = data_uri.rstrip("/")
    triggers = []
    if trigger:
        if watch is None and data_uri.startswith("s3://"):
            watch = data_uri
        if watch is None:
            raise ValueError(
                f"data_uri {data_uri!r} is not on S3, so there is nothing to watch: "
                "pass --watch s3://bucket/prefix or --no-trigger"
            )
        if not is_under(watch, data_uri):
            raise ValueError(
                f"--watch {watch!r} is outside --data-uri {data_uri!r}: every event-triggered run "
                "would be refused by the flow's trigger check"
            )
        if is_under(registry_uri, watch):
            raise ValueError(
                f"--registry-uri {registry_uri!r} lies inside the watched {watch!r}: every model "
                "the flow writes would trigger another retrain"
            )
        bucket, prefix = split_s3_uri(watch)
        triggers.append(retrain_trigger(bucket, prefix, settle_seconds))

    params: dict[str, Any] = {"data_uri": data_uri, "registry_uri": registry_uri, "model_name": model_name}
    if config_path:
        params["config_path"] = config_path
    if overrides:
        params["overrides"] = dict(overrides)

    retrain = retrain_flow.to_deployment(
        name=name,
        parameters=params,
        triggers=triggers,
        concurrency_limit=retrain_concurrency(),
        cron=cron,
        description="Retrain, validate, register and promote SpiraConv; runs once per upload burst.",
        tags=["spira", "continuous-training"],
    )
    # The evaluation dataset is deliberately not defaulted: scoring the
    # champion on its own training data would be a meaningless number.
    eval_params = {k: v for k, v in params.items() if k in ("registry_uri", "config_path", "overrides")}
    eval_params["model_ref"] = f"{model_name}@champion"
    evaluate = evaluate_champion_flow.to_deployment(
        name=name, parameters=eval_params, tags=["spira"],
        description="Score a registered model (the champion by default) on a labelled dataset (pass data_uri).",
    )
    rollback = rollback_flow.to_deployment(
        name=name, parameters={"registry_uri": registry_uri, "model_name": model_name}, tags=["spira"],
        description="Move the champion alias back to the previous champion.",
    )
    scoring = [] if inbox is None else [_score_deployment(inbox, params, name, trigger, settle_seconds, data_uri)]
    return [retrain, evaluate, rollback, *scoring]


def _score_deployment(inbox: str, params: dict[str, Any], name: str, trigger: bool, settle_seconds: float, data_uri: str) -> Any:
    from flows.score import score_flow

    inbox = inbox.rstrip("/")
    if is_under(inbox, data_uri) or is_under(data_uri, inbox) or is_under(params["registry_uri"], inbox):
        raise ValueError(f"--inbox {inbox!r} overlaps the dataset or the registry: keep it in a folder of its own")
    triggers = []
    if trigger and inbox.startswith("s3://"):
        bucket, prefix = split_s3_uri(inbox)
        triggers.append(retrain_trigger(bucket, prefix, settle_seconds, name="spira-score-on-upload"))
    score_params = {k: v for k, v in params.items() if k != "data_uri"} | {"inbox_uri": inbox}
    return score_flow.to_deployment(
        name=name, parameters=score_params, triggers=triggers, concurrency_limit=retrain_concurrency(), tags=["spira", "monitoring"],
        description="Score new recordings in the inbox with the champion (and a challenger in shadow).",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spira serve",
        description="Serve spira-retrain (triggered by S3 upload bursts) and the on-demand evaluate/rollback flows.",
    )
    p.add_argument("--data-uri", required=True, help="dataset the runs snapshot: s3://bucket/prefix or a folder")
    p.add_argument("--registry-uri", required=True, help="model registry: s3://bucket/prefix or a folder")
    p.add_argument("--config", dest="config_path", default=None, help="config YAML (default: built-in defaults)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config override passed to every run (repeatable)")
    p.add_argument("--model-name", default="spira", help="registry model name (default spira)")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"deployment name for all three flows (default {DEFAULT_NAME})")
    p.add_argument("--watch", default=None, help="s3://bucket/prefix whose uploads trigger a retrain (default: --data-uri)")
    p.add_argument("--no-trigger", dest="trigger", action="store_false", help="serve on demand only, no event trigger")
    p.add_argument("--inbox", default=None, help="also serve spira-score for unlabelled recordings here (s3://bucket/prefix or a folder)")
    p.add_argument("--settle", dest="settle_seconds", type=float, default=float(DEFAULT_SETTLE_SECONDS),
                   help=f"seconds a burst may last before the run starts (default {DEFAULT_SETTLE_SECONDS})")
    p.add_argument("--cron", default=None, help="also retrain on this cron schedule (UTC), e.g. '0 3 * * 0'")
    p.add_argument("--limit", type=int, default=None, help="most flow runs this process executes at once")
    p.add_argument("--keep-active-on-shutdown", dest="pause_on_shutdown", action="store_false",
                   help="do not pause the deployments when this process stops")
    return p


def _overrides(sets: Sequence[str]) -> dict[str, Any]:
    from spira_lib.config import parse_override

    return dict(parse_override(s) for s in sets)


def main(argv: Sequence[str] | None = None) -> int:
    """``spira serve`` / ``python -m deployments.serve``; blocks until interrupted, returns the exit status."""
    parser = _parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per API request would drown the runner's own messages.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print(
            "spira serve: PREFECT_API_URL is not set. Serving needs a running Prefect server "
            "(e.g. `prefect server start`, then export PREFECT_API_URL=http://127.0.0.1:4200/api): "
            "without one Prefect starts a throwaway in-process server that receives no events.",
            file=sys.stderr,
        )
        return 2

    from spira_lib.config import ConfigError, load_config

    try:
        overrides = _overrides(ns.sets)
        # Fail now, not at the first upload hours later.
        load_config(ns.config_path, overrides)
        deployments = build_deployments(
            ns.data_uri,
            ns.registry_uri,
            config_path=ns.config_path,
            overrides=overrides,
            model_name=ns.model_name,
            name=ns.name,
            watch=ns.watch,
            trigger=ns.trigger,
            settle_seconds=ns.settle_seconds,
            cron=ns.cron,
            inbox=ns.inbox,
        )
    except (ConfigError, ValueError) as exc:
        print(f"spira serve: {exc}", file=sys.stderr)
        return 2

    from prefect import serve

    watch = deployments[0].triggers[0].match.root["prefect.resource.id"] if deployments[0].triggers else None
    log.info("serving %s; retrain trigger: %s", ", ".join(f"{d.flow_name}/{d.name}" for d in deployments),
             f"{watch} (settle {ns.settle_seconds:g} s)" if watch else "none (on demand only)")
    serve(*deployments, limit=ns.limit, pause_on_shutdown=ns.pause_on_shutdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

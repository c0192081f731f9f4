"""spira-retrain: the continuous-training flow, plus evaluate-champion and rollback.

Composition only: every step is a task in ``tasks/`` that calls spira_lib.
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from spira_lib.bootstrap import open_store
from flows.runners import make_task_runner
from spira_lib.config import load_config
from spira_lib.pipeline import feature_chunk_count, merge_feature_stats
from spira_lib.registry import ModelRegistry
from tasks import retrain as t
from tasks.common import config_from, workspace


def _rename_run(name: str) -> None:
    """Run names tell the story (the data digest), which is only known after the snapshot."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run_id=run_id, name=name)
    except Exception as exc:  # a cosmetic step must never fail a training run
        get_run_logger().debug("could not rename the flow run: %s", exc)


def extract_all_features(data_uri: str, registry_uri: str, cfg: dict, split: dict, *, refresh: bool = False) -> dict:
    """Fan the feature stage out over the flow's task runner (threads, or Dask when configured)."""
    count = feature_chunk_count(split, config_from(cfg).runtime.feature_chunk_clips)
    task = t.extract_features.with_options(refresh_cache=True) if refresh else t.extract_features
    futures = task.map(unmapped(data_uri), unmapped(registry_uri), unmapped(cfg), unmapped(split), range(count), unmapped(count))
    return merge_feature_stats([f.result() for f in futures])


def check_trigger(trigger: Optional[str], data_uri: str) -> None:
    """An event-derived object URI must lie under the dataset this deployment watches."""
    if not trigger:
        return
    base = data_uri.rstrip("/") + "/"
    if not trigger.startswith(base):
        raise ValueError(f"trigger object {trigger!r} is outside the watched dataset {base!r}; refusing to run")


@flow(name="spira-retrain", log_prints=True, task_runner=make_task_runner())
def retrain_flow(
    data_uri: str = "demo/data",
    registry_uri: str = "demo/registry",
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
    model_name: str = "spira",
    force: bool = False,
    trigger: Optional[str] = None,
    event_id: Optional[str] = None,
) -> dict:
    """Snapshot -> validate -> split -> features -> train -> evaluate -> compare -> register -> promote -> report.

    ``trigger``/``event_id`` come from the S3 event that started the run (for the
    record); the run always snapshots the whole dataset itself, since a burst of
    uploads reaches it as one (last) event.
    """
    log = get_run_logger()
    check_trigger(trigger, data_uri)
    cfg_model = load_config(config_path, overrides or {})
    cfg = cfg_model.model_dump(mode="json")
    if trigger:
        log.info("triggered by %s (event %s)", trigger, event_id)

    snap = t.snapshot_dataset(data_uri, registry_uri, cfg)
    _rename_run(f"retrain-{snap['digest'][:10]}")
    validated = t.validate_dataset(data_uri, registry_uri, cfg, snap)
    if not validated["ok"]:
        t.publish_failure_report(data_uri, registry_uri, cfg, validated)
        raise RuntimeError(f"not enough valid data to train: {validated['message']}")
    split = t.split_dataset(data_uri, registry_uri, cfg, validated)

    existing = None if force else t.find_trained_version(data_uri, registry_uri, cfg, split, model_name)
    if existing is not None:
        log.info("snapshot %s already trained as %s v%d: nothing to do", split["split_digest"][:12], model_name, existing["version"])
        t.publish_skip_report(model_name, split, existing)
        return {"model": model_name, "version": existing["version"], "skipped": True, "promoted": None, "metrics": existing["metrics"]}

    opts = {"refresh_cache": True} if force else {}
    feats = extract_all_features(data_uri, registry_uri, cfg, split, refresh=force)
    log.info("features: %d computed, %d reused over %d chunk(s)", feats["computed"], feats["reused"], feats["chunks"])
    features = {"extractor_key": feats["extractor_key"], "aug_key": feats["aug_key"]}
    trained = t.train_model.with_options(**opts)(data_uri, registry_uri, cfg, split, features)
    evaluated = t.evaluate_model.with_options(**opts)(data_uri, registry_uri, cfg, split, trained)
    compared = t.compare_with_champion(data_uri, registry_uri, cfg, model_name, split, evaluated)
    registered = t.register_model(data_uri, registry_uri, cfg, model_name, split, trained, evaluated, compared, force)
    promoted = t.promote_or_reject(data_uri, registry_uri, cfg, model_name, registered, compared)
    t.publish_report(data_uri, registry_uri, cfg, model_name, validated, split, evaluated, compared, registered, promoted)
    return {
        "model": model_name,
        "version": registered["version"],
        "skipped": False,
        "promoted": promoted["promoted"],
        "metrics": evaluated["metrics"],
        "decision": compared["decision"],
        "uri": registered["uri"],
    }


@flow(name="spira-evaluate-champion", log_prints=True)
def evaluate_champion_flow(
    data_uri: str,
    registry_uri: str = "demo/registry",
    model_ref: str = "spira@champion",
    config_path: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
) -> dict:
    """Re-score a registered model (by default the champion) on any labelled dataset, e.g. a fresh hold-out."""
    from spira_lib.pipeline import evaluate_dataset
    from spira_lib.reporting import metrics_table, slices_table
    from prefect.artifacts import create_table_artifact

    cfg = load_config(config_path, overrides or {})
    ws = workspace(data_uri, registry_uri, cfg)
    result = evaluate_dataset(ws, model_ref, cfg)
    _rename_run(f"evaluate-{result['model']}-v{result['version']}-{result['snapshot_digest'][:8]}")
    create_table_artifact(key="spira-champion-metrics", table=metrics_table(result["report"]), description=f"{model_ref} on {data_uri}")
    create_table_artifact(key="spira-champion-slices", table=slices_table(result["report"]), description=f"{model_ref} slices on {data_uri}")
    get_run_logger().info("%s v%d on %s: %s", result["model"], result["version"], data_uri, result["metrics"])
    return {k: result[k] for k in ("model", "version", "data", "snapshot_digest", "n_quarantined", "metrics")}


@flow(name="spira-rollback", log_prints=True)
def rollback_flow(registry_uri: str = "demo/registry", model_name: str = "spira", reason: str = "rollback requested") -> dict:
    """Move `champion` back to the previous champion; recorded in the ledger."""
    reg = ModelRegistry(open_store(registry_uri))
    before = reg.champion(model_name)
    mv = reg.rollback(model_name, reason=reason, actor="prefect")
    create_markdown_artifact(
        key="spira-rollback",
        markdown=f"## Rollback of {model_name}\n\nchampion: v{before.version if before else '-'} → **v{mv.version}**\n\nreason: {reason}\n",
    )
    get_run_logger().info("%s champion rolled back from v%s to v%d", model_name, before.version if before else "-", mv.version)
    return {"model": model_name, "from": before.version if before else None, "to": mv.version}


__all__ = ["retrain_flow", "evaluate_champion_flow", "rollback_flow", "check_trigger", "config_from"]

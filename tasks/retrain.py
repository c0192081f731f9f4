"""The tasks of the spira-retrain flow, one spira_lib step each.

Caching: tasks whose output is a pure function of their inputs (validate,
split, features, train, evaluate) use ``digest_cache_key`` with persisted
results, so an unchanged snapshot reruns from cache. Tasks that depend on
mutable state (the dataset listing, the current champion, the registry) are
never cached.
"""
from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from spira_lib import pipeline
from spira_lib.reporting import metrics_table, slices_table, validation_report_markdown
from tasks.common import (
    MODEL_CARD_KEY,
    MODEL_KEY,
    METRICS_KEY,
    QUARANTINE_KEY,
    SLICES_KEY,
    VALIDATION_REPORT_KEY,
    config_from,
    digest_cache_key,
    workspace,
)

CACHED = dict(cache_key_fn=digest_cache_key, persist_result=True, cache_expiration=timedelta(days=30))
UNCACHED = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="snapshot-dataset", **UNCACHED)
def snapshot_dataset(data_uri: str, registry_uri: str, cfg: dict) -> dict:
    """List and hash the dataset (content hashes are cached by object etag)."""
    c = config_from(cfg)
    snap = pipeline.snapshot_step(workspace(data_uri, registry_uri, c), c)
    get_run_logger().info("snapshot %s: %d rows from %d CSV file(s)", snap["digest"][:12], snap["n_rows"], len(snap["csvs"]))
    return snap


@task(name="validate-dataset", **CACHED)
def validate_dataset(data_uri: str, registry_uri: str, cfg: dict, snapshot: dict) -> dict:
    c = config_from(cfg)
    ws = workspace(data_uri, registry_uri, c)
    out = pipeline.validate_step(ws, snapshot, c)
    log = get_run_logger()
    log.info("validation: %d good, %d quarantined", out["n_good"], out["n_quarantined"])
    if out["n_quarantined"]:
        rows = pipeline.get_json(ws.store, out["quarantine_key"], [])
        create_table_artifact(
            key=QUARANTINE_KEY,
            table=[{k: r.get(k) for k in ("file", "reason", "csv", "row")} for r in rows],
            description=f"Quarantined rows of snapshot {snapshot['digest'][:12]}",
        )
        for r in rows[:20]:
            log.warning("quarantined %s: %s", r.get("file"), r.get("reason"))
    return out


@task(name="split-dataset", **CACHED)
def split_dataset(data_uri: str, registry_uri: str, cfg: dict, validated: dict) -> dict:
    c = config_from(cfg)
    out = pipeline.split_step(workspace(data_uri, registry_uri, c), validated, c)
    get_run_logger().info("split %s: %s", out["split_digest"][:12], out["summary"]["counts"].get("split"))
    return out


@task(name="find-trained-version", **UNCACHED)
def find_trained_version(data_uri: str, registry_uri: str, cfg: dict, split: dict, model_name: str) -> dict | None:
    """The version already trained on this snapshot + config + code, if any (idempotent retraining)."""
    c = config_from(cfg)
    mv = pipeline.find_trained(workspace(data_uri, registry_uri, c), model_name, split, c)
    return None if mv is None else {"version": mv.version, "uri": mv.uri, "metrics": mv.metadata.get("metrics", {})}


@task(name="extract-features", **CACHED)
def extract_features(data_uri: str, registry_uri: str, cfg: dict, split: dict, index: int = 0, count: int = 1) -> dict:
    """Per-clip features for one chunk of the split; only clips the store has not seen are computed."""
    c = config_from(cfg)
    out = pipeline.features_step(
        workspace(data_uri, registry_uri, c), split, c, workers=c.runtime.feature_workers, chunk=(index, count)
    )
    get_run_logger().info(
        "features chunk %d/%d: %d arrays computed, %d reused, %.1f s of audio in %.1f s",
        index + 1, count, out["computed"], out["reused"], out["audio_seconds"], out["seconds"],
    )
    return out


@task(name="train-model", **CACHED)
def train_model(data_uri: str, registry_uri: str, cfg: dict, split: dict, features: dict) -> dict:
    """Train SpiraConv; a progress artifact follows the epochs in the UI.

    ``features`` carries only the feature-store keys (extractor, augmentation),
    so the cache key does not change with how long extraction took.
    """
    c = config_from(cfg)
    log = get_run_logger()
    progress_id = create_progress_artifact(progress=0.0, description=f"Training SpiraConv on {split['split_digest'][:12]}")
    total = c.training.epochs

    def on_epoch(s) -> None:
        log.info(
            "epoch %d/%d train_loss=%.4f val_loss=%.4f val_acc=%.3f%s", s.epoch, total, s.train_loss, s.val_loss, s.val_accuracy, " (best)" if s.is_best else ""
        )
        update_progress_artifact(progress_id, progress=min(100.0, 100.0 * s.epoch / total))

    out = pipeline.train_step(workspace(data_uri, registry_uri, c), split, c, on_epoch=on_epoch)
    update_progress_artifact(progress_id, progress=100.0)
    log.info("trained %d epochs (best %d) in %.1f s on %s", out["epochs_run"], out["best_epoch"], out["seconds"], out["device"])
    return out


@task(name="evaluate-model", **CACHED)
def evaluate_model(data_uri: str, registry_uri: str, cfg: dict, split: dict, trained: dict) -> dict:
    c = config_from(cfg)
    out = pipeline.evaluate_step(workspace(data_uri, registry_uri, c), split, trained, c)
    m = out["metrics"]
    get_run_logger().info(
        "test: roc_auc=%s accuracy=%s shortcut_accuracy=%s on %s files", m.get("roc_auc"), m.get("accuracy"), m.get("shortcut_accuracy"), m.get("n_files")
    )
    return out


@task(name="compare-with-champion", **UNCACHED)
def compare_with_champion(data_uri: str, registry_uri: str, cfg: dict, model_name: str, split: dict, evaluated: dict) -> dict:
    """Champion re-scored on the same test clips, then the promotion gate."""
    c = config_from(cfg)
    out = pipeline.compare_step(workspace(data_uri, registry_uri, c), model_name, split, evaluated, c)
    d = out["decision"]
    get_run_logger().info("gate: %s — %s", "promote" if d["promote"] else "reject", "; ".join(d["reasons"][:3]))
    return out


@task(name="register-model", **UNCACHED)
def register_model(
    data_uri: str, registry_uri: str, cfg: dict, model_name: str, split: dict, trained: dict, evaluated: dict, compared: dict, force: bool = False
) -> dict:
    c = config_from(cfg)
    out = pipeline.register_step(workspace(data_uri, registry_uri, c), model_name, split, trained, evaluated, compared, c, force=force)
    get_run_logger().info("%s %s v%d at %s", "registered" if out["created"] else "already registered", model_name, out["version"], out["uri"])
    return out


@task(name="promote-or-reject", **UNCACHED)
def promote_or_reject(data_uri: str, registry_uri: str, cfg: dict, model_name: str, registered: dict, compared: dict) -> dict:
    c = config_from(cfg)
    out = pipeline.promote_step(workspace(data_uri, registry_uri, c), model_name, registered, compared, actor="prefect")
    get_run_logger().info("%s v%d %s", model_name, out["version"], "is champion" if out["promoted"] else "was not promoted")
    return out


@task(name="publish-report", **UNCACHED)
def publish_report(
    data_uri: str,
    registry_uri: str,
    cfg: dict,
    model_name: str,
    validated: dict,
    split: dict,
    evaluated: dict,
    compared: dict,
    registered: dict,
    promoted: dict,
) -> dict:
    """Post the validation report, metric/slice tables, the model link and the model card to the UI."""
    c = config_from(cfg)
    ws = workspace(data_uri, registry_uri, c)
    report = pipeline.get_json(ws.store, evaluated["report_key"])
    comparison = pipeline.get_json(ws.store, compared["comparison_key"], {}) or {}
    champion_report = comparison.get("champion_report")
    quarantine = pipeline.get_json(ws.store, validated["quarantine_key"], [])
    mv = ws.registry.get(model_name, version=registered["version"])
    model = {
        "name": model_name,
        "version": mv.version,
        "alias": "champion" if promoted["promoted"] else None,
        "uri": mv.uri,
        "sha256": mv.artifacts.get("model.pt", {}).get("sha256"),
        "data_digest": mv.metadata.get("data_digest"),
        "config_digest": mv.metadata.get("config_digest"),
        "code_version": mv.metadata.get("code_version"),
    }
    md = validation_report_markdown(
        snapshot=split["summary"], quarantine=quarantine, report=report, champion_report=champion_report, decision=compared["decision"], model=model
    )
    create_markdown_artifact(key=VALIDATION_REPORT_KEY, markdown=md, description=f"{model_name} v{mv.version}: validation report")
    create_table_artifact(key=METRICS_KEY, table=metrics_table(report, champion_report), description="Test metrics with 95% intervals")
    create_table_artifact(key=SLICES_KEY, table=slices_table(report), description="Metrics per slice (sex, age band, hospital)")
    lineage = "\n".join(f"| {k} | `{v}` |" for k, v in model.items())
    create_markdown_artifact(
        key=MODEL_KEY,
        markdown=f"## {model_name} v{mv.version}\n\n| field | value |\n|---|---|\n{lineage}\n| snapshot | `{split['summary'].get('digest')}` |\n",
        description="Registered model and its lineage",
    )
    card = ws.registry.load_artifact(mv, "model_card.md").decode()
    create_markdown_artifact(key=MODEL_CARD_KEY, markdown=card, description=f"Model card of {model_name} v{mv.version}")
    return {"version": mv.version, "promoted": promoted["promoted"]}


@task(name="publish-skip-report", **UNCACHED)
def publish_skip_report(model_name: str, split: dict, existing: dict) -> None:
    """An already-trained snapshot: say so in the UI instead of training again."""
    create_markdown_artifact(
        key=VALIDATION_REPORT_KEY,
        markdown=(
            f"## Nothing to train\n\nSnapshot `{split['summary'].get('digest')}` with this configuration was already "
            f"trained: **{model_name} v{existing['version']}** ({existing['uri']}). No new version was registered.\n"
        ),
        description="Rerun on an already-trained snapshot",
    )


@task(name="publish-failure-report", **UNCACHED)
def publish_failure_report(data_uri: str, registry_uri: str, cfg: dict, validated: dict) -> None:
    """Not enough valid data: the quarantine is the report."""
    c = config_from(cfg)
    ws = workspace(data_uri, registry_uri, c)
    rows = pipeline.get_json(ws.store, validated["quarantine_key"], [])
    lines = "\n".join(f"| {r.get('file')} | {str(r.get('reason')).replace('|', '/')} |" for r in rows[:100])
    create_markdown_artifact(
        key=VALIDATION_REPORT_KEY,
        markdown=f"## Validation failed\n\n{validated['message']}\n\n| file | reason |\n|---|---|\n{lines}\n",
        description="The run stopped before training",
    )

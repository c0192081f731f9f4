"""The tasks of the spira-retrain flow: one core step each, an artifact where people look, a small typed result.

Each task receives the RunSpec and only the result of the step before it, so
the run graph in the Prefect UI reads as the pipeline does. Caching and
retries are in ``tasks.caching``; the markdown is rendered by ``spira_lib.reporting``.
"""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from spira_lib.pipeline import data_steps as D
from spira_lib.pipeline import layout as L
from spira_lib.pipeline import model_steps as M
from spira_lib.pipeline.hand_off import hand_off_champion
from spira_lib.ports import PublishedModel
from spira_lib.pipeline.contract import (
    Compared, Evaluated, FeaturesReady, Promoted, Registered, RunSpec, SnapshotRef, SplitRef, Trained, TrainedVersion,
    Validated,
)
from spira_lib.reporting import metrics_table, slices_table, validation_report_markdown
from spira_lib.reporting.run_reports import failure_report, lineage_report, skip_report
from tasks import artifacts as A
from tasks.caching import CACHED, RETRIED, UNCACHED


def _quarantine_for_people(spec: RunSpec, snapshot_digest: str, quarantine_key: str) -> list[dict]:
    """The quarantine rows as people other than the data owners may see them (pseudonymous names)."""
    ws = spec.workspace()
    rows = L.get_json(ws.store, quarantine_key, [])
    return ws.redactor(spec.config, L.manifest_key(snapshot_digest)).rows(rows) if rows else []


def _logged(result):
    """Log a step result's one-line description and hand it on."""
    get_run_logger().info(result.describe())
    return result


@task(name="snapshot-dataset", task_run_name="snapshot {spec.model_name} dataset", **UNCACHED, **RETRIED)
def snapshot_dataset(spec: RunSpec) -> SnapshotRef:
    """List and hash the dataset (content hashes are cached by object etag)."""
    return _logged(D.snapshot_step(spec))


@task(name="validate-dataset", task_run_name="validate snapshot {snapshot.digest:.8}", **CACHED, **RETRIED)
def validate_dataset(spec: RunSpec, snapshot: SnapshotRef) -> Validated:
    out = D.validate_step(spec, snapshot)
    log = get_run_logger()
    log.info(out.describe())
    if out.n_quarantined:
        rows = _quarantine_for_people(spec, snapshot.digest, out.quarantine_key)
        A.publish_quarantine(rows, snapshot.digest)
        for r in rows[:20]:
            log.warning("quarantined %s: %s", r.get("file"), r.get("reason"))
    return out


@task(name="split-dataset", task_run_name="split snapshot {validated.snapshot_digest:.8}", **CACHED, **RETRIED)
def split_dataset(spec: RunSpec, validated: Validated) -> SplitRef:
    return _logged(D.split_step(spec, validated))


@task(name="find-trained-version", task_run_name="look up split {split.split_digest:.8} in the registry", **UNCACHED, **RETRIED)
def find_trained_version(spec: RunSpec, split: SplitRef) -> TrainedVersion | None:
    """The version already trained on this data + config + code, if any (idempotent retraining)."""
    return M.find_trained(spec, split)


@task(name="finish-decision", task_run_name="record the gate decision of {spec.model_name} v{existing.version}", **UNCACHED, **RETRIED)
def finish_decision(spec: RunSpec, existing: TrainedVersion) -> TrainedVersion:
    """A version registered by a run that stopped before promote: record the decision stored with it."""
    done = M.finish_decision(spec, existing, actor="prefect")
    get_run_logger().info("v%d: %s", done.version, "promoted" if done.promoted else "held" if done.held else "rejected")
    return done


@task(name="extract-features", task_run_name="features {index}/{count} of split {split.split_digest:.8}", **CACHED, **RETRIED)
def extract_features(spec: RunSpec, split: SplitRef, index: int = 0, count: int = 1) -> FeaturesReady:
    """Per-clip features for one chunk of the split; only clips the store has not seen are computed."""
    out = D.features_step(spec, split, chunk=(index, count))
    get_run_logger().info("chunk %d/%d: %s (%.1f s of audio)", index + 1, count, out.describe(), out.audio_seconds)
    return out


@task(name="train-model", task_run_name="train {spec.model_name} on split {split.split_digest:.8}", **CACHED)
def train_model(spec: RunSpec, split: SplitRef, features: FeaturesReady) -> Trained:
    """Train; a progress artifact follows the epochs in the UI."""
    log = get_run_logger()
    total = spec.config.training.epochs
    progress_id = create_progress_artifact(progress=0.0, description=f"Training {spec.model_name} on {split.split_digest[:12]}")

    def on_epoch(s) -> None:
        best = " (best)" if s.is_best else ""
        log.info("epoch %d/%d train_loss=%.4f val_loss=%.4f val_acc=%.3f%s", s.epoch, total, s.train_loss, s.val_loss, s.val_accuracy, best)
        update_progress_artifact(progress_id, progress=min(100.0, 100.0 * s.epoch / total))

    out = M.train_step(spec, split, features, on_epoch=on_epoch)
    update_progress_artifact(progress_id, progress=100.0)
    log.info(out.describe())
    return out


@task(name="evaluate-model", task_run_name="evaluate training {trained.training_key:.8}", **CACHED, **RETRIED)
def evaluate_model(spec: RunSpec, trained: Trained) -> Evaluated:
    return _logged(M.evaluate_step(spec, trained))


@task(name="compare-with-champion", task_run_name="compare {spec.model_name} challenger with the champion", **UNCACHED, **RETRIED)
def compare_with_champion(spec: RunSpec, evaluated: Evaluated) -> Compared:
    """Champion re-scored on the same test clips, then the promotion gate."""
    return _logged(M.compare_step(spec, evaluated))


@task(name="register-model", task_run_name="register {spec.model_name}", **UNCACHED, **RETRIED)
def register_model(spec: RunSpec, compared: Compared, force: bool = False) -> Registered:
    return _logged(M.register_step(spec, compared, force=force))


@task(name="promote-or-reject", task_run_name="promote or reject {spec.model_name} v{registered.version}", **UNCACHED, **RETRIED)
def promote_or_reject(spec: RunSpec, registered: Registered) -> Promoted:
    return _logged(M.promote_step(spec, registered, actor="prefect"))


@task(name="hand-off-to-serving", task_run_name="hand {spec.model_name} champion to serving", **UNCACHED, **RETRIED)
def hand_off_to_serving(spec: RunSpec) -> PublishedModel | None:
    """The new champion to SPIRA's MLflow registry (when SPIRA_MLFLOW_TRACKING_URI is set)."""
    published = hand_off_champion(spec.workspace(), spec.model_name, spec.config.evaluation.threshold)
    if published is not None:
        get_run_logger().info("handed off as %s (MLflow version %s, stage %s)", published.uri, published.version, published.stage)
    return published


@task(name="publish-report", task_run_name="report {spec.model_name} v{promoted.registered.version}", **UNCACHED, **RETRIED)
def publish_report(spec: RunSpec, promoted: Promoted) -> None:
    """The validation report, metric/slice tables, the model's lineage and its card, in the UI."""
    ws = spec.workspace()
    registered = promoted.registered
    compared, trained = registered.compared, registered.compared.evaluated.trained
    report = L.get_json(ws.store, compared.evaluated.report_key)
    champion_report = (L.get_json(ws.store, compared.comparison_key, {}) or {}).get("champion_report")
    mv = ws.registry.get(spec.model_name, version=registered.version)
    model = {
        "name": spec.model_name, "version": mv.version, "alias": "champion" if promoted.promoted else None, "uri": mv.uri,
        "sha256": mv.artifacts.get("model.pt", {}).get("sha256"), "data_digest": mv.metadata.get("data_digest"),
        "config_digest": mv.metadata.get("config_digest"), "code_version": mv.metadata.get("code_version"),
    }
    md = validation_report_markdown(
        snapshot=trained.split.summary,
        quarantine=_quarantine_for_people(spec, trained.split.snapshot_digest, trained.split.quarantine_key),
        report=report, champion_report=champion_report, decision=compared.decision, model=model,
        training=L.get_json(ws.store, trained.training_json_key), slice_floor=spec.config.gate.slice_floor,
    )
    verdict = "promoted" if promoted.promoted else "not promoted"
    create_markdown_artifact(key=A.VALIDATION_REPORT, markdown=md, description=f"{spec.model_name} v{mv.version}: {verdict}")
    create_table_artifact(key=A.METRICS, table=metrics_table(report, champion_report), description="Test metrics with 95% intervals")
    create_table_artifact(key=A.SLICES, table=slices_table(report), description="Metrics per slice (sex, age band, hospital)")
    create_markdown_artifact(
        key=A.MODEL, markdown=lineage_report(model, trained.split.snapshot_digest, trained.split.split_digest),
        description="Registered model and its lineage",
    )
    card = ws.registry.load_artifact(mv, "model_card.md").decode()
    create_markdown_artifact(key=A.MODEL_CARD, markdown=card, description=f"Model card of {spec.model_name} v{mv.version}")


@task(name="publish-skip-report", task_run_name="report: nothing to train", **UNCACHED)
def publish_skip_report(spec: RunSpec, split: SplitRef, existing: TrainedVersion) -> None:
    """An already-trained snapshot: say so in the UI instead of training again."""
    md = skip_report(spec.model_name, split.snapshot_digest, split.split_digest, existing.version, existing.uri)
    create_markdown_artifact(key=A.VALIDATION_REPORT, markdown=md, description="Rerun on an already-trained snapshot")


@task(name="publish-failure-report", task_run_name="report: validation failed", **UNCACHED, **RETRIED)
def publish_failure_report(spec: RunSpec, validated: Validated) -> None:
    """Not enough valid data: the quarantine is the report."""
    rows = _quarantine_for_people(spec, validated.snapshot_digest, validated.quarantine_key)
    create_markdown_artifact(key=A.VALIDATION_REPORT, markdown=failure_report(validated.message, rows), description="The run stopped before training")

"""The drift step of a retrain run: the labelled clips added since the champion's training snapshot.

Runs before training (``sequence.retrain``). It compares the new clips with
the champion's reference (raw-audio profiles, the champion's embeddings, and
the label / sex / age band / hospital mix) and measures concept drift: the
champion's ROC-AUC on the new clips, with a bootstrap interval, next to the
AUC it had at registration. Too few new clips (or too few of a class) are
said in words, never turned into a number.
"""
from __future__ import annotations

import json

import numpy as np
import polars as pl

from spira_lib.config import SpiraConfig
from spira_lib.dataset.manifest import manifest_from_bytes
from spira_lib.metrics import bootstrap_intervals, roc_auc
from spira_lib.monitoring.reference import categorical_counts
from spira_lib.monitoring.run import ConceptDrift, DriftCheck, check_clips, model_probabilities, new_clips
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.contract import RunSpec, SplitRef
from spira_lib.pipeline.workspace import Workspace
from spira_lib.registry import ModelVersion


def _registered_auc(ws: Workspace, mv: ModelVersion) -> tuple[float | None, list[float] | None]:
    """The champion's test ROC-AUC and its interval as recorded at registration."""
    auc = (mv.metadata.get("metrics") or {}).get("roc_auc")
    interval = None
    if "report.json" in mv.artifacts:
        interval = (json.loads(ws.registry.load_artifact(mv, "report.json")).get("intervals") or {}).get("roc_auc")
    return auc, interval


def concept_drift(ws: Workspace, cfg: SpiraConfig, champion: ModelVersion, new: pl.DataFrame) -> ConceptDrift:
    """The champion scored on the new labelled clips: ROC-AUC with a bootstrap interval vs its AUC at registration."""
    labels = np.asarray(new["label"].to_list(), dtype=int) if new.height else np.zeros(0, dtype=int)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    ev, need = cfg.evaluation, cfg.drift.min_clips_per_class
    registered, registered_interval = _registered_auc(ws, champion)
    base = dict(n_clips=int(labels.size), n_patients=n_pos, n_controls=n_neg, confidence=ev.confidence,
                registered_roc_auc=registered, registered_interval=registered_interval)
    if min(n_pos, n_neg) < need:
        return ConceptDrift(**base, message=(
            f"too few new labelled clips to measure the champion's ROC-AUC: {n_pos} patient(s), {n_neg} control(s) "
            f"since v{champion.version}'s training snapshot (drift.min_clips_per_class = {need})"))
    rows = new.select("key", "sha256", "label").to_dicts()
    probs = model_probabilities(ws, cfg, ws.registry.load_artifact(champion, "model.pt"), rows)
    auc = roc_auc(labels, probs)
    interval = bootstrap_intervals(labels, probs, threshold=ev.threshold, n_samples=max(ev.bootstrap_samples, 200),
                                   confidence=ev.confidence, seed=ev.seed).get("roc_auc")
    then = "unknown" if registered is None else f"{registered:.3f}"
    band = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
    return ConceptDrift(**base, roc_auc=auc, interval=interval, message=(
        f"champion v{champion.version} ROC-AUC on {labels.size} new labelled clips: {auc:.3f}{band} "
        f"({ev.confidence:.0%} bootstrap), {then} at registration"))


def new_data_drift_step(spec: RunSpec, split: SplitRef) -> DriftCheck:
    """Clips of this run's split that the champion never saw vs its reference, and its AUC on them."""
    ws, cfg = spec.workspace(), spec.config
    reg = ws.registry
    champion = reg.champion(spec.model_name) if spec.model_name in reg.list_models() else None
    batch = f"new-data-{split.snapshot_digest[:12]}"
    if champion is None:
        return DriftCheck(model=spec.model_name, version=None, source="retrain", batch=batch, n_clips=0, status="no-champion",
                          message="no champion yet: new data has nothing to be compared with")
    base = dict(model=champion.name, version=champion.version, source="retrain", batch=batch)
    if not cfg.drift.enabled:
        return DriftCheck(**base, n_clips=0, status="disabled", message="drift monitoring is off (drift.enabled = false)")
    if "split.parquet" not in champion.artifacts:
        return DriftCheck(**base, n_clips=0, status="no-reference",
                          message=f"{champion.name} v{champion.version} has no training split recorded: new clips cannot be told apart")
    trained_on = manifest_from_bytes(reg.load_artifact(champion, "split.parquet"))
    new = new_clips(L.get_frame(ws.store, split.split_key), trained_on)
    concept = concept_drift(ws, cfg, champion, new)
    rows = new.select("key", "sha256").to_dicts()
    return check_clips(ws, cfg, champion, rows, batch=batch, source="retrain", categorical=categorical_counts(new), concept=concept)

"""The model half of a run: train -> evaluate -> compare -> register -> promote.

A trained model is staged under ``staging/<training_key>/`` until it is
registered; the registry then holds it as an immutable version with its
report, comparison and model card.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np
import polars as pl

from spira_lib.checkpoint import checkpoint_bytes, load_checkpoint
from spira_lib.config import SpiraConfig
from spira_lib.feature_store import ShortcutClipSource, StoreClipSource, VariantPlan
from spira_lib.features import FeatureExtractor
from spira_lib.gate import decide
from spira_lib.hashing import sha256_hex
from spira_lib.metrics import evaluate_predictions, paired_auc_difference, summary_metrics
from spira_lib.model import window_frames
from spira_lib.monitoring.run import REFERENCE_ARTIFACT, reference_artifact
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.contract import (
    ChampionInfo, Compared, Evaluated, FeaturesReady, Promoted, Registered, RunSpec, SplitRef, Trained, TrainedVersion,
)
from spira_lib.pipeline.data_steps import feature_rows
from spira_lib.pipeline.workspace import TRAINING_SECTIONS, Workspace, code_version, training_key
from spira_lib.registry import CHALLENGER_ALIAS
from spira_lib.reporting import model_card_markdown
from spira_lib.training import EpochStats, predict_clips, train_model


def _plan(ws: Workspace, cfg: SpiraConfig) -> VariantPlan:
    return VariantPlan.build(cfg.augment, cfg.evaluation, ws.noise_bank(cfg.audio.sample_rate))


def _split_frame(ws: Workspace, split: SplitRef) -> pl.DataFrame:
    return L.get_frame(ws.store, split.split_key)


def _test_frame(ws: Workspace, split: SplitRef) -> pl.DataFrame:
    return _split_frame(ws, split).filter(pl.col("split") == "test")


def find_trained(spec: RunSpec, split: SplitRef) -> TrainedVersion | None:
    """The registered version already trained on this exact data + config + code, if any."""
    reg = spec.workspace().registry
    if spec.model_name not in reg.list_models():
        return None
    mv = reg.find_by_training_key(spec.model_name, training_key(split.split_digest, spec.config))
    if mv is None:
        return None
    decided = any(e.get("version") == mv.version and e.get("action") in DECISIONS for e in reg.ledger(spec.model_name))
    return TrainedVersion(version=mv.version, uri=mv.uri, metrics=mv.metadata.get("metrics", {}), decided=decided,
                          decision=mv.metadata.get("decision") or {})


# Ledger actions that record the gate's decision on a version.
DECISIONS = ("promote", "reject", "hold")


def finish_decision(spec: RunSpec, existing: TrainedVersion, *, actor: str = "spira") -> TrainedVersion:
    """Record the gate decision of a version whose run stopped between register and promote.

    The decision is the one stored with the version at registration, applied by the same rule as
    ``promote_step`` (the champion may have moved since: the comparison is not redone).
    """
    if existing.decided:
        return existing
    promoted, held, _ = _apply_decision(spec, existing.version, existing.decision, actor)
    return existing.model_copy(update={"decided": True, "promoted": promoted, "held": held})


def train_step(
    spec: RunSpec, split: SplitRef, features: FeaturesReady, *, on_epoch: Callable[[EpochStats], None] | None = None
) -> Trained:
    """Train on the train split (early stopping on eval); stage the checkpoint and the epoch history."""
    ws, cfg = spec.workspace(), spec.config
    tkey = training_key(split.split_digest, cfg)
    df, plan = _split_frame(ws, split), _plan(ws, cfg)

    def source(name: str, augmented: bool = False) -> StoreClipSource:
        sub = df.filter(pl.col("split") == name)
        return StoreClipSource(ws.features, features.extractor_key, sub["sha256"].to_list(), sub["label"].to_list(), plan, augmented=augmented)

    train_src, eval_src = source("train", augmented=True), source("eval")
    t0 = time.perf_counter()
    result = train_model(
        train_src, eval_src, model_cfg=cfg.model, train_cfg=cfg.training, feat_cfg=cfg.features, aug_cfg=cfg.augment, on_epoch=on_epoch
    )
    training = {
        "training_key": tkey, "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "stopped_early": bool(result.stopped_early), "device": str(result.device),
        "seconds": round(time.perf_counter() - t0, 2), "n_train_clips": len(train_src), "n_eval_clips": len(eval_src),
        "n_train_windows": int(result.n_train_windows),
        "history": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in vars(h).items()} for h in result.history],
    }
    meta = {
        "training_key": tkey, "data_digest": split.split_digest, "snapshot_digest": split.snapshot_digest,
        "config": cfg.model_dump(mode="json"), "config_digest": cfg.digest(*TRAINING_SECTIONS),
        "code_version": code_version(), "extractor_key": features.extractor_key,
        "training": {k: v for k, v in training.items() if k != "history"},
    }
    blob = checkpoint_bytes(
        result.model, model_cfg=cfg.model, feat_cfg=cfg.features, n_frames=window_frames(cfg.model, cfg.features), meta=meta
    )
    ws.store.put(L.staged(tkey, "model.pt"), blob)
    L.put_json(ws.store, L.staged(tkey, "training.json"), training)
    return Trained(
        split=split, training_key=tkey, checkpoint_key=L.staged(tkey, "model.pt"), training_json_key=L.staged(tkey, "training.json"),
        epochs_run=training["epochs_run"], best_epoch=training["best_epoch"], seconds=training["seconds"], device=training["device"],
    )


def score_checkpoint(ws: Workspace, blob: bytes, test: pl.DataFrame, cfg: SpiraConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities of a checkpoint on test rows, clean and as the shortcut check sees them.

    Uses the checkpoint's OWN feature config (a champion may predate a config
    change), computing any missing features for it first.
    """
    ckpt = load_checkpoint(blob)
    extractor = FeatureExtractor(ckpt.feat_cfg)
    noise = ws.noise_bank(cfg.audio.sample_rate)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    ws.features.ensure(ws.data, feature_rows(test), extractor, plan, noise)
    shas, labels = test["sha256"].to_list(), test["label"].to_list()
    clean = StoreClipSource(ws.features, extractor.key, shas, labels, plan)
    probs = predict_clips(ckpt.model, clean, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg)
    shortcut = None
    if plan.shortcut_key:
        noisy = ShortcutClipSource(ws.features, extractor.key, shas, labels, plan)
        shortcut = predict_clips(ckpt.model, noisy, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg)
    return np.asarray(probs, dtype=float), None if shortcut is None else np.asarray(shortcut, dtype=float)


def report_for(test: pl.DataFrame, probs: np.ndarray, shortcut: np.ndarray | None, cfg: SpiraConfig, ws: Workspace | None = None) -> dict:
    """The evaluation report; with ``ws``, its shortcut section also names the noise the check used."""
    frame = test.select("sha256", "label", "sex", "age", "hospital").with_columns(pl.Series("prob", probs))
    report = evaluate_predictions(frame, cfg.evaluation, shortcut_prob=shortcut)
    if ws is not None and isinstance(report.get("shortcut"), dict):
        augmentation, check = _plan(ws, cfg).noise_parts(ws.noise_bank(cfg.audio.sample_rate))
        report["shortcut"].update({
            "noise_files": check.names, "augmentation_noise_files": augmentation.names,
            "noise_held_out": set(check.names).isdisjoint(augmentation.names),
        })
    return report


def evaluate_step(spec: RunSpec, trained: Trained) -> Evaluated:
    """Score the staged challenger on the test split: metrics, intervals, slices, shortcut check."""
    ws, cfg = spec.workspace(), spec.config
    test = _test_frame(ws, trained.split)
    probs, shortcut = score_checkpoint(ws, ws.store.get(trained.checkpoint_key), test, cfg)
    report = report_for(test, probs, shortcut, cfg, ws)
    L.put_json(ws.store, L.staged(trained.training_key, "report.json"), report)
    preds = test.select("sha256", "label").with_columns(pl.Series("prob", probs))
    L.put_table(ws.store, L.staged(trained.training_key, "predictions.parquet"), preds)
    return Evaluated(
        trained=trained, report_key=L.staged(trained.training_key, "report.json"),
        predictions_key=L.staged(trained.training_key, "predictions.parquet"), metrics=summary_metrics(report),
    )


def compare_step(spec: RunSpec, evaluated: Evaluated) -> Compared:
    """Re-score the champion on the SAME test clips and apply the promotion gate."""
    ws, cfg = spec.workspace(), spec.config
    report = L.get_json(ws.store, evaluated.report_key)
    reg = ws.registry
    champion = reg.champion(spec.model_name) if spec.model_name in reg.list_models() else None
    champion_report = paired = champion_info = None
    if champion is not None:
        test = _test_frame(ws, evaluated.trained.split)
        champ_probs, champ_short = score_checkpoint(ws, reg.load_artifact(champion, "model.pt"), test, cfg)
        champion_report = report_for(test, champ_probs, champ_short, cfg, ws)
        preds = L.get_table(ws.store, evaluated.predictions_key)
        ev = cfg.evaluation
        paired = paired_auc_difference(
            preds["label"].to_numpy(), preds["prob"].to_numpy(), champ_probs,
            n_samples=max(ev.bootstrap_samples, 200), confidence=ev.confidence, seed=ev.seed,
        )
        champion_info = ChampionInfo(version=champion.version, metrics=summary_metrics(champion_report))
    decision = decide(report, champion_report, paired, cfg.gate, min_slice_size=cfg.evaluation.min_slice_size).to_dict()
    ckey = L.staged(evaluated.trained.training_key, "comparison.json")
    info = None if champion_info is None else champion_info.model_dump(mode="json")
    L.put_json(ws.store, ckey, {"champion": info, "champion_report": champion_report, "paired": paired, "decision": decision})
    return Compared(evaluated=evaluated, comparison_key=ckey, champion=champion_info, decision=decision)


def register_step(spec: RunSpec, compared: Compared, *, force: bool = False) -> Registered:
    """Register the challenger as a new immutable version (promoted or not), with its model card.

    Idempotent: a model already registered for this training key is returned
    as is, unless ``force`` asks for a fresh version.
    """
    ws, cfg = spec.workspace(), spec.config
    evaluated, trained = compared.evaluated, compared.evaluated.trained
    existing = None
    if not force and spec.model_name in ws.registry.list_models():
        existing = ws.registry.find_by_training_key(spec.model_name, trained.training_key)
    if existing is not None:
        sha = existing.artifacts.get("model.pt", {}).get("sha256", "")
        return Registered(compared=compared, version=existing.version, uri=existing.uri, sha256=sha, created=False)
    report = L.get_json(ws.store, evaluated.report_key)
    training = L.get_json(ws.store, trained.training_json_key)
    blob = ws.store.get(trained.checkpoint_key)
    # What later batches are compared with (drift): the training clips' profiles and this model's view of them.
    train_rows = _split_frame(ws, trained.split).filter(pl.col("split") == "train")
    reference = reference_artifact(ws, cfg, train_rows, blob) if cfg.drift.enabled else None
    lineage = {
        "name": spec.model_name, "version": None, "alias": "champion" if compared.promote else None, "uri": None,
        "sha256": sha256_hex(blob), "data_digest": trained.split.split_digest,
        "config_digest": cfg.digest(*TRAINING_SECTIONS), "code_version": code_version(),
    }

    def artifacts(version: int, uri: str) -> dict[str, bytes]:
        card = model_card_markdown(
            model={**lineage, "version": version, "uri": uri}, report=report, decision=compared.decision,
            training=training, snapshot=trained.split.summary, config=cfg.model_dump(mode="json"),
        )
        return {
            "model.pt": blob,
            "report.json": json.dumps(report, indent=2, sort_keys=True).encode(),
            "training.json": json.dumps(training, indent=2, sort_keys=True).encode(),
            "comparison.json": ws.store.get(compared.comparison_key),
            "model_card.md": card.encode(),
            "split.parquet": ws.store.get(trained.split.split_key),
            **({REFERENCE_ARTIFACT: reference} if reference is not None else {}),
        }

    metadata = {
        "training_key": trained.training_key, "data_digest": trained.split.split_digest,
        "snapshot_digest": trained.split.snapshot_digest, "config_digest": lineage["config_digest"],
        "code_version": lineage["code_version"], "metrics": evaluated.metrics, "decision": compared.decision,
        "staging": L.staged(trained.training_key), "forced": force,
    }
    mv = ws.registry.register(spec.model_name, artifacts, metadata)
    return Registered(compared=compared, version=mv.version, uri=mv.uri, sha256=lineage["sha256"], created=True)


def promote_step(spec: RunSpec, registered: Registered, *, actor: str = "spira") -> Promoted:
    """Move `champion` to the new version when the gate said so; record the decision either way.

    A version the gate rejects becomes the ``challenger`` (scored in shadow by the scoring flow). When the
    gate asks for shadow evidence (``gate.min_shadow_clips``) and a champion exists, a passing version is
    held as the challenger instead; the scoring flow promotes it once the evidence is there.
    """
    promoted, held, already = _apply_decision(spec, registered.version, registered.compared.decision, actor)
    return Promoted(registered=registered, promoted=promoted, held=held, already=already)


def _apply_decision(spec: RunSpec, version: int, decision: dict, actor: str) -> tuple[bool, bool, bool]:
    """(promoted, held, already champion) after writing the gate's decision on ``version`` to the registry."""
    reg, name, gate = spec.workspace().registry, spec.model_name, spec.config.gate
    reason = "; ".join(decision.get("reasons", [])[:6]) or "no reasons recorded"
    current = reg.champion(name)
    if current is not None and current.version == version:
        return True, False, True
    if decision.get("promote") and (current is None or gate.min_shadow_clips == 0):
        reg.promote(name, version, reason=reason, decision=decision, actor=actor)
        return True, False, False
    if decision.get("promote"):
        held = f"gate passed; held as challenger until it has scored {gate.min_shadow_clips} clips in shadow"
        reg.hold(name, version, reason=f"{held}; {reason}", decision=decision, actor=actor)
        return False, True, False
    reg.record_rejection(name, version, reason=reason, decision=decision, actor=actor)
    reg.set_alias(name, CHALLENGER_ALIAS, version)
    return False, False, False

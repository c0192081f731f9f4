"""The training pipeline as plain steps over a :class:`Workspace`.

Each step reads its inputs from storage, writes its outputs back, and returns a
small JSON-able dict (keys, digests, counts, metrics) — never arrays or
DataFrames. That keeps two callers honest:

* ``run_pipeline`` chains the steps for ``spira train`` (no orchestration);
* the Prefect tasks in ``tasks/`` call the same steps one each, so task inputs
  and results are cheap, stable cache keys.

Storage layout on the workspace store (next to ``models/`` of the registry)::

    snapshots/<digest>/manifest.parquet         every metadata row + content hash
    snapshots/<digest>/validated-<k>.parquet    rows that passed validation
    snapshots/<digest>/quarantine-<k>.json      rows that did not, with reasons
    snapshots/<digest>/split-<k>.parquet        validated rows with their split
    features/...                                see feature_store
    staging/<training_key>/...                  a trained model before registration
    cache/...                                   content-hash and clip-check caches
"""
from __future__ import annotations

import functools
import hashlib
import io
import uuid
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

import spira_lib
from spira_lib import dataset as ds
from spira_lib import validation as val
from spira_lib.checkpoint import checkpoint_bytes, load_checkpoint
from spira_lib.config import SpiraConfig, stable_hash
from spira_lib.feature_store import FeatureStore, NoiseBank, ShortcutClipSource, StoreClipSource, VariantPlan
from spira_lib.features import FeatureExtractor
from spira_lib.gate import decide
from spira_lib.metrics import evaluate_predictions, paired_auc_difference, summary_metrics
from spira_lib.model import window_frames
from spira_lib.ports import ObjectNotFound, ObjectStore, join_key
from spira_lib.registry import ModelRegistry
from spira_lib.reporting import model_card_markdown
from spira_lib.training import EpochStats, predict_clips, train_model

log = logging.getLogger(__name__)

# Config sections that change what gets trained (evaluation and gate settings do not).
TRAINING_SECTIONS = ("audio", "features", "augment", "model", "training", "split", "validation")


class PipelineError(RuntimeError):
    """The pipeline cannot go on (e.g. not enough valid data); the message says why."""


@dataclass
class Workspace:
    """The ports one run works with; built by ``spira_lib.bootstrap.open_workspace``."""

    data: ObjectStore  # the labelled dataset (read only)
    store: ObjectStore  # registry side: models, features, snapshots, staging, caches
    noise: ObjectStore  # where the ward-noise recordings live
    noise_prefix: str
    registry: ModelRegistry
    features: FeatureStore
    # Decoded noise banks by sample rate: every step of a run needs the same bank.
    noise_banks: dict[int, NoiseBank] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- helpers


# Modules whose code decides what model comes out of a given snapshot + config.
# Their source hash is part of every training key: changing them retrains once.
# (The CLI, reports, registry and demo generator do not change the model.)
MODEL_CODE_MODULES = (
    "audio.py", "config.py", "dataset.py", "validation.py", "features.py",
    "feature_store.py", "model.py", "training.py", "checkpoint.py",
)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the model-shaping source, recorded in every checkpoint."""
    root = Path(spira_lib.__file__).parent
    h = hashlib.sha256()
    for name in MODEL_CODE_MODULES:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return f"{spira_lib.__version__}+{h.hexdigest()[:8]}"


def _put_json(store: ObjectStore, key: str, obj: Any) -> None:
    store.put(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def get_json(store: ObjectStore, key: str, default: Any = None) -> Any:
    try:
        return json.loads(store.get(key))
    except ObjectNotFound:
        return default


def _put_frame(store: ObjectStore, key: str, df: pl.DataFrame) -> None:
    store.put(key, ds.manifest_to_bytes(df))


def _get_frame(store: ObjectStore, key: str) -> pl.DataFrame:
    return ds.manifest_from_bytes(store.get(key))


def _put_table(store: ObjectStore, key: str, df: pl.DataFrame) -> None:
    """Any small table (not a manifest), as parquet."""
    buf = io.BytesIO()
    df.write_parquet(buf)
    store.put(key, buf.getvalue())


def _get_table(store: ObjectStore, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.get(key)))


def _snapshot_dir(digest: str) -> str:
    return join_key("snapshots", digest)


def workspace_id(store: ObjectStore) -> str:
    """A random id created with the workspace; cache keys include it so that a
    deleted and recreated registry never serves results that point into the old one."""
    try:
        return json.loads(store.get("workspace.json"))["id"]
    except ObjectNotFound:
        wid = uuid.uuid4().hex
        _put_json(store, "workspace.json", {"id": wid, "created_by": code_version()})
        return wid


def load_noise(ws: Workspace, cfg: SpiraConfig) -> NoiseBank:
    """The workspace's noise bank, decoded once per workspace (not once per step)."""
    sr = cfg.audio.sample_rate
    if sr not in ws.noise_banks:
        ws.noise_banks[sr] = NoiseBank.load(ws.noise, ws.noise_prefix, sr)
    return ws.noise_banks[sr]


def training_key(split_digest: str, cfg: SpiraConfig) -> str:
    """Identity of a training: data (with its split) + config that shapes the model + code."""
    return stable_hash({"data": split_digest, "config": cfg.digest(*TRAINING_SECTIONS), "code": code_version()})[:20]


# --------------------------------------------------------------------------- steps


def snapshot_step(ws: Workspace, cfg: SpiraConfig) -> dict:
    """List and hash the dataset; store its manifest under its digest."""
    cache_key = join_key("cache", "hashes", stable_hash(ws.data.uri)[:16] + ".json")
    raw = get_json(ws.store, cache_key, {}) or {}
    # JSON keys are strings: (key, etag) pairs are stored as "key\x00etag".
    hash_cache = {tuple(k.split("\x00", 1)): v for k, v in raw.items()}
    snap = ds.snapshot(ws.data, noise_dir=cfg.augment.noise_dir, hash_cache=hash_cache)
    _put_json(ws.store, cache_key, {"\x00".join(k): v for k, v in hash_cache.items()})
    key = join_key(_snapshot_dir(snap.digest), "manifest.parquet")
    if not ws.store.exists(key):
        _put_frame(ws.store, key, snap.manifest)
    _put_json(ws.store, join_key(_snapshot_dir(snap.digest), "csvs.json"), snap.csvs)
    return {"digest": snap.digest, "manifest_key": key, "n_rows": snap.manifest.height, "csvs": snap.csvs}


def validate_step(ws: Workspace, snapshot: dict, cfg: SpiraConfig) -> dict:
    """Quarantine bad rows; fail with a clear message when too little good data remains."""
    vkey = cfg.digest("audio", "validation", "model")[:12]
    base = _snapshot_dir(snapshot["digest"])
    manifest = _get_frame(ws.store, snapshot["manifest_key"])
    snap = ds.Snapshot(manifest=manifest, digest=snapshot["digest"], csvs=snapshot.get("csvs", []))
    cache_key = join_key("cache", "clipchecks", cfg.digest("audio")[:16] + ".json")
    clip_cache = get_json(ws.store, cache_key, {}) or {}
    result = val.validate(ws.data, snap, cfg, clip_cache=clip_cache)
    _put_json(ws.store, cache_key, clip_cache)
    quarantine = [q.to_dict() for q in result.quarantine]
    qkey = join_key(base, f"quarantine-{vkey}.json")
    _put_json(ws.store, qkey, quarantine)
    good_key = join_key(base, f"validated-{vkey}.parquet")
    _put_frame(ws.store, good_key, result.good)
    out = {
        "digest": snapshot["digest"],
        "ok": bool(result.ok),
        "message": result.message,
        "n_rows": manifest.height,
        "n_good": result.good.height,
        "n_quarantined": len(quarantine),
        "quarantine_key": qkey,
        "good_key": good_key,
    }
    return out


def split_step(ws: Workspace, validated: dict, cfg: SpiraConfig) -> dict:
    """Assign train/eval/test (speaker-disjoint) and summarise the snapshot."""
    good = _get_frame(ws.store, validated["good_key"])
    split = ds.assign_splits(good, cfg.split)
    split_digest = ds.manifest_digest(split)
    key = join_key(_snapshot_dir(validated["digest"]), f"split-{split_digest[:16]}.parquet")
    if not ws.store.exists(key):
        _put_frame(ws.store, key, split)
    summary = ds.summarize(split)
    summary.update({"digest": validated["digest"], "split_digest": split_digest, "n_quarantined": validated["n_quarantined"]})
    for name in ("train", "eval", "test"):
        labels = split.filter(pl.col("split") == name)["label"]
        if labels.n_unique() < 2:
            raise PipelineError(f"the {name} split has only one class ({labels.len()} clips): add data for both classes")
    return {"split_key": key, "split_digest": split_digest, "summary": summary}


def _rows(df: pl.DataFrame) -> list[dict]:
    return df.select("key", "sha256", "split", "label").to_dicts()


def feature_chunk_count(split: dict, chunk_size: int) -> int:
    """How many chunks the feature stage fans out into (at least one)."""
    n = int(split["summary"].get("n_clips", 0))
    return max(1, -(-n // max(1, chunk_size)))


def features_step(
    ws: Workspace,
    split: dict,
    cfg: SpiraConfig,
    *,
    workers: int = 2,
    chunk: tuple[int, int] = (0, 1),
    on_clip: Callable[[int, int], None] | None = None,
) -> dict:
    """Compute the features (clean + noise copies + shortcut variants) the run needs; reuse the rest.

    ``chunk=(i, n)`` handles the i-th of n contiguous slices of the split's
    rows, so the stage can fan out over a task runner (threads or Dask); each
    clip's arrays depend only on its content and the config, so any split into
    chunks gives identical features.
    """
    df = _get_frame(ws.store, split["split_key"]).sort("sha256")
    index, count = chunk
    if not 0 <= index < count:
        raise ValueError(f"chunk index {index} is outside 0..{count - 1}")
    size = -(-df.height // count)
    df = df.slice(index * size, size)
    extractor = FeatureExtractor(cfg.features)
    noise = load_noise(ws, cfg)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    if len(noise) == 0:
        log.warning("no noise recordings under %s/%s: training without noise augmentation", ws.noise.uri, ws.noise_prefix)
    stats = ws.features.ensure(ws.data, _rows(df), extractor, plan, noise, workers=workers, on_clip=on_clip)
    out = stats.to_dict()
    out.update({"extractor_key": extractor.key, "aug_key": plan.aug_key, "noise_files": len(noise), "chunk": [index, count]})
    if stats.failed:
        # Validation decoded these already; a failure here means the object changed under us.
        raise PipelineError(f"feature extraction failed for {len(stats.failed)} clip(s): {stats.failed[:3]}")
    return out


def merge_feature_stats(parts: list[dict]) -> dict:
    """Sum the per-chunk results of the feature stage into one."""
    out = {"clips": 0, "computed": 0, "reused": 0, "audio_seconds": 0.0, "seconds": 0.0, "failed": [], "chunks": len(parts)}
    for p in parts:
        for k in ("clips", "computed", "reused", "audio_seconds"):
            out[k] += p[k]
        out["seconds"] = max(out["seconds"], p["seconds"])  # chunks run side by side: wall time is the slowest
        out["failed"] += p["failed"]
    if parts:
        out.update({k: parts[0][k] for k in ("extractor_key", "aug_key", "noise_files")})
    return out


def _sources(ws: Workspace, df: pl.DataFrame, cfg: SpiraConfig, plan: VariantPlan, ekey: str):
    def part(name: str, augmented: bool = False) -> StoreClipSource:
        sub = df.filter(pl.col("split") == name)
        return StoreClipSource(ws.features, ekey, sub["sha256"].to_list(), sub["label"].to_list(), plan, augmented=augmented)

    return part("train", augmented=True), part("eval")


def train_step(
    ws: Workspace, split: dict, cfg: SpiraConfig, *, on_epoch: Callable[[EpochStats], None] | None = None
) -> dict:
    """Train SpiraConv on the train split (early stopping on eval); stage the checkpoint."""
    tkey = training_key(split["split_digest"], cfg)
    df = _get_frame(ws.store, split["split_key"])
    noise = load_noise(ws, cfg)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    extractor = FeatureExtractor(cfg.features)
    train_src, eval_src = _sources(ws, df, cfg, plan, extractor.key)
    t0 = time.perf_counter()
    result = train_model(
        train_src, eval_src, model_cfg=cfg.model, train_cfg=cfg.training, feat_cfg=cfg.features, aug_cfg=cfg.augment, on_epoch=on_epoch
    )
    seconds = time.perf_counter() - t0
    history = [
        {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in vars(h).items()} for h in result.history
    ]
    training = {
        "training_key": tkey,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": bool(result.stopped_early),
        "device": str(result.device),
        "seconds": round(seconds, 2),
        "n_train_clips": len(train_src),
        "n_eval_clips": len(eval_src),
        "n_train_windows": int(getattr(result, "n_train_windows", 0)),
        "history": history,
    }
    meta = {
        "training_key": tkey,
        "data_digest": split["split_digest"],
        "snapshot_digest": split["summary"]["digest"],
        "config": cfg.model_dump(mode="json"),
        "config_digest": cfg.digest(*TRAINING_SECTIONS),
        "code_version": code_version(),
        "extractor_key": extractor.key,
        "training": {k: v for k, v in training.items() if k != "history"},
    }
    blob = checkpoint_bytes(
        result.model, model_cfg=cfg.model, feat_cfg=cfg.features, n_frames=window_frames(cfg.model, cfg.features), meta=meta
    )
    stage = join_key("staging", tkey)
    ws.store.put(join_key(stage, "model.pt"), blob)
    _put_json(ws.store, join_key(stage, "training.json"), training)
    return {
        "training_key": tkey,
        "checkpoint_key": join_key(stage, "model.pt"),
        "training_json_key": join_key(stage, "training.json"),
        "epochs_run": training["epochs_run"],
        "best_epoch": training["best_epoch"],
        "seconds": training["seconds"],
        "device": training["device"],
    }


def score_checkpoint(ws: Workspace, blob: bytes, test: pl.DataFrame, cfg: SpiraConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities of a checkpoint on test rows, clean and as the shortcut check sees them.

    Uses the checkpoint's OWN feature config (a champion may predate a config
    change), computing any missing features for it first.
    """
    ckpt = load_checkpoint(blob)
    extractor = FeatureExtractor(ckpt.feat_cfg)
    noise = load_noise(ws, cfg)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    ws.features.ensure(ws.data, _rows(test), extractor, plan, noise)
    shas, labels = test["sha256"].to_list(), test["label"].to_list()
    clean = StoreClipSource(ws.features, extractor.key, shas, labels, plan)
    probs = predict_clips(ckpt.model, clean, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg)
    shortcut = None
    if plan.shortcut_key:
        noisy = ShortcutClipSource(ws.features, extractor.key, shas, labels, plan)
        shortcut = predict_clips(ckpt.model, noisy, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg)
    return np.asarray(probs, dtype=float), None if shortcut is None else np.asarray(shortcut, dtype=float)


def _test_frame(ws: Workspace, split: dict) -> pl.DataFrame:
    return _get_frame(ws.store, split["split_key"]).filter(pl.col("split") == "test")


def _report_for(test: pl.DataFrame, probs: np.ndarray, shortcut: np.ndarray | None, cfg: SpiraConfig) -> dict:
    frame = test.select("sha256", "label", "sex", "age", "hospital").with_columns(pl.Series("prob", probs))
    return evaluate_predictions(frame, cfg.evaluation, shortcut_prob=shortcut)


def evaluate_step(ws: Workspace, split: dict, trained: dict, cfg: SpiraConfig) -> dict:
    """Score the staged challenger on the test split: metrics, intervals, slices, shortcut check."""
    test = _test_frame(ws, split)
    probs, shortcut = score_checkpoint(ws, ws.store.get(trained["checkpoint_key"]), test, cfg)
    report = _report_for(test, probs, shortcut, cfg)
    stage = join_key("staging", trained["training_key"])
    _put_json(ws.store, join_key(stage, "report.json"), report)
    preds = test.select("sha256", "label").with_columns(pl.Series("prob", probs))
    _put_table(ws.store, join_key(stage, "predictions.parquet"), preds)
    return {"report_key": join_key(stage, "report.json"), "predictions_key": join_key(stage, "predictions.parquet"), "metrics": summary_metrics(report)}


def compare_step(ws: Workspace, model_name: str, split: dict, evaluated: dict, cfg: SpiraConfig) -> dict:
    """Re-score the champion on the SAME test clips and apply the promotion gate."""
    report = get_json(ws.store, evaluated["report_key"])
    champion = ws.registry.champion(model_name) if model_name in ws.registry.list_models() else None
    champion_report = paired = None
    champion_info = None
    if champion is not None:
        test = _test_frame(ws, split)
        blob = ws.registry.load_artifact(champion, "model.pt")
        champ_probs, champ_short = score_checkpoint(ws, blob, test, cfg)
        champion_report = _report_for(test, champ_probs, champ_short, cfg)
        preds = _get_table(ws.store, evaluated["predictions_key"])
        ev = cfg.evaluation
        paired = paired_auc_difference(
            preds["label"].to_numpy(), preds["prob"].to_numpy(), champ_probs,
            n_samples=max(ev.bootstrap_samples, 200), confidence=ev.confidence, seed=ev.seed,
        )
        champion_info = {"version": champion.version, "metrics": summary_metrics(champion_report)}
    decision = decide(report, champion_report, paired, cfg.gate, min_slice_size=cfg.evaluation.min_slice_size).to_dict()
    stage = join_key(evaluated["report_key"].rsplit("/", 1)[0])
    ckey = join_key(stage, "comparison.json")
    _put_json(ws.store, ckey, {"champion": champion_info, "champion_report": champion_report, "paired": paired, "decision": decision})
    return {"comparison_key": ckey, "champion": champion_info, "paired": paired, "decision": decision}


def register_step(
    ws: Workspace, model_name: str, split: dict, trained: dict, evaluated: dict, compared: dict, cfg: SpiraConfig,
    *, force: bool = False,
) -> dict:
    """Register the challenger as a new immutable version (promoted or not), with its model card.

    Idempotent: a model already registered for this training key is returned
    as is, unless ``force`` asks for a fresh version.
    """
    existing = None
    if not force and model_name in ws.registry.list_models():
        existing = ws.registry.find_by_training_key(model_name, trained["training_key"])
    if existing is not None:
        return {"version": existing.version, "uri": existing.uri, "created": False}
    stage = join_key("staging", trained["training_key"])
    report = get_json(ws.store, evaluated["report_key"])
    training = get_json(ws.store, trained["training_json_key"])
    blob = ws.store.get(trained["checkpoint_key"])
    model_info = {
        "name": model_name,
        "version": None,
        "alias": None,
        "uri": None,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "data_digest": split["split_digest"],
        "config_digest": cfg.digest(*TRAINING_SECTIONS),
        "code_version": code_version(),
    }
    card = model_card_markdown(
        model=model_info, report=report, decision=compared["decision"], training=training,
        snapshot=split["summary"], config=cfg.model_dump(mode="json"),
    )
    artifacts = {
        "model.pt": blob,
        "report.json": json.dumps(report, indent=2, sort_keys=True).encode(),
        "training.json": json.dumps(training, indent=2, sort_keys=True).encode(),
        "comparison.json": ws.store.get(compared["comparison_key"]),
        "model_card.md": card.encode(),
        "split.parquet": ws.store.get(split["split_key"]),
    }
    metadata = {
        "training_key": trained["training_key"],
        "data_digest": split["split_digest"],
        "snapshot_digest": split["summary"]["digest"],
        "config_digest": model_info["config_digest"],
        "code_version": model_info["code_version"],
        "metrics": evaluated["metrics"],
        "decision": compared["decision"],
        "staging": stage,
        "forced": force,
    }
    mv = ws.registry.register(model_name, artifacts, metadata)
    return {"version": mv.version, "uri": mv.uri, "sha256": model_info["sha256"], "created": True}


def promote_step(ws: Workspace, model_name: str, registered: dict, compared: dict, *, actor: str = "spira") -> dict:
    """Move `champion` to the new version when the gate said so; record the decision either way."""
    decision = compared["decision"]
    reason = "; ".join(decision.get("reasons", [])[:6]) or "no reasons recorded"
    version = registered["version"]
    current = ws.registry.champion(model_name)
    if current is not None and current.version == version:
        return {"promoted": True, "version": version, "alias": "champion", "already": True}
    if decision.get("promote"):
        ws.registry.promote(model_name, version, reason=reason, decision=decision, actor=actor)
        return {"promoted": True, "version": version, "alias": "champion", "already": False}
    ws.registry.record_rejection(model_name, version, reason=reason, decision=decision, actor=actor)
    return {"promoted": False, "version": version, "alias": None, "already": False}


# --------------------------------------------------------------------------- whole run


def find_trained(ws: Workspace, model_name: str, split: dict, cfg: SpiraConfig):
    """The registered version already trained on this exact data + config + code, if any."""
    if model_name not in ws.registry.list_models():
        return None
    return ws.registry.find_by_training_key(model_name, training_key(split["split_digest"], cfg))


def run_pipeline(
    ws: Workspace,
    cfg: SpiraConfig,
    *,
    model_name: str = "spira",
    force: bool = False,
    say: Callable[[str], None] = lambda _m: None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> dict:
    """validate -> features -> split -> train -> evaluate -> compare -> register -> promote, without Prefect."""
    t0 = time.perf_counter()
    snap = snapshot_step(ws, cfg)
    say(f"snapshot {snap['digest'][:12]}: {snap['n_rows']} rows in {len(snap['csvs'])} CSV file(s)")
    checked = validate_step(ws, snap, cfg)
    say(f"validation: {checked['n_good']} good, {checked['n_quarantined']} quarantined")
    if not checked["ok"]:
        raise PipelineError(checked["message"])
    split = split_step(ws, checked, cfg)
    say(f"split: {split['summary']['counts'].get('split', {})}")
    existing = None if force else find_trained(ws, model_name, split, cfg)
    if existing is not None:
        say(f"already trained on this snapshot and config: {model_name} v{existing.version}; nothing to do")
        return {
            "model": model_name, "version": existing.version, "metrics": existing.metadata.get("metrics", {}),
            "promoted": None, "skipped": True, "seconds": round(time.perf_counter() - t0, 2),
        }
    feats = features_step(ws, split, cfg, workers=cfg.runtime.feature_workers)
    say(f"features: {feats['computed']} computed, {feats['reused']} reused in {feats['seconds']:.1f} s")
    trained = train_step(ws, split, cfg, on_epoch=on_epoch)
    say(f"trained {trained['epochs_run']} epochs (best {trained['best_epoch']}) in {trained['seconds']:.1f} s on {trained['device']}")
    evaluated = evaluate_step(ws, split, trained, cfg)
    say("test: " + ", ".join(f"{k}={v:.3f}" for k, v in evaluated["metrics"].items() if isinstance(v, float)))
    compared = compare_step(ws, model_name, split, evaluated, cfg)
    registered = register_step(ws, model_name, split, trained, evaluated, compared, cfg, force=force)
    promoted = promote_step(ws, model_name, registered, compared)
    verdict = "promoted to champion" if promoted["promoted"] else "not promoted"
    say(f"registered {model_name} v{registered['version']} ({verdict}) at {registered['uri']}")
    return {
        "model": model_name,
        "version": registered["version"],
        "metrics": evaluated["metrics"],
        "promoted": promoted["promoted"],
        "decision": compared["decision"],
        "uri": registered["uri"],
        "skipped": False,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def evaluate_dataset(ws: Workspace, model_ref: str, cfg: SpiraConfig) -> dict:
    """Score a registered model on every valid clip of any labelled dataset (e.g. a fresh hold-out)."""
    mv = ws.registry.resolve(model_ref)
    blob = ws.registry.load_artifact(mv, "model.pt")
    snap = snapshot_step(ws, cfg)
    checked = validate_step(ws, snap, cfg)
    good = _get_frame(ws.store, checked["good_key"])
    if good.height == 0:
        raise PipelineError(f"no valid clips to evaluate in {ws.data.uri}: {checked['message']}")
    rows = good.with_columns(pl.lit("test").alias("split"))
    probs, shortcut = score_checkpoint(ws, blob, rows, cfg)
    report = _report_for(rows, probs, shortcut, cfg)
    return {
        "model": mv.name,
        "version": mv.version,
        "data": ws.data.uri,
        "snapshot_digest": snap["digest"],
        "n_quarantined": checked["n_quarantined"],
        "quarantine": get_json(ws.store, checked["quarantine_key"], []),
        "metrics": summary_metrics(report),
        "report": report,
    }

"""The data half of a run: snapshot -> validate -> split -> features.

Each step reads its inputs from the workspace, writes its outputs back, and
returns a small step result (see ``contract``).
"""
from __future__ import annotations

import logging
from typing import Callable

import polars as pl

from spira_lib import dataset as ds
from spira_lib import validation as val
from spira_lib.feature_store import VariantPlan
from spira_lib.features import FeatureExtractor
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.contract import FeaturesReady, RunSpec, SnapshotRef, SplitRef, Validated
from spira_lib.pipeline.workspace import PipelineError
from spira_lib.validation import audio_config_digest

log = logging.getLogger(__name__)


def snapshot_step(spec: RunSpec) -> SnapshotRef:
    """List and hash the dataset; store its manifest under its digest."""
    ws, cfg = spec.workspace(), spec.config
    ws.ensure_id()
    cache_key = L.hash_cache_key(ws.data.uri)
    raw = L.get_json(ws.store, cache_key, {}) or {}
    # JSON keys are strings: (key, etag) pairs are stored as "key\x00etag".
    hash_cache = {tuple(k.split("\x00", 1)): v for k, v in raw.items()}
    snap = ds.snapshot(ws.data, noise_dir=cfg.augment.noise_dir, hash_cache=hash_cache, max_file_bytes=cfg.audio.max_file_bytes)
    L.put_json(ws.store, cache_key, {"\x00".join(k): v for k, v in hash_cache.items()})
    key = L.manifest_key(snap.digest)
    # Written every run, not only when missing: the digest names the data, not the manifest's format, and a
    # manifest left by an older version of this code (other columns) must not be read back as this one.
    L.put_frame(ws.store, key, snap.manifest)
    L.put_json(ws.store, L.csvs_key(snap.digest), snap.csvs)
    return SnapshotRef(digest=snap.digest, manifest_key=key, n_rows=snap.manifest.height, csvs=snap.csvs)


def validate_step(spec: RunSpec, snapshot: SnapshotRef) -> Validated:
    """Quarantine bad rows; ``ok`` is False (with the reason) when too little good data remains."""
    ws, cfg = spec.workspace(), spec.config
    vkey = cfg.digest("audio", "validation", "model")[:12]
    manifest = L.get_frame(ws.store, snapshot.manifest_key)
    snap = ds.Snapshot(manifest=manifest, digest=snapshot.digest, csvs=snapshot.csvs)
    cache_key = L.clip_cache_key(audio_config_digest(cfg.audio))
    clip_cache = L.get_json(ws.store, cache_key, {}) or {}
    result = val.validate(ws.data, snap, cfg, clip_cache=clip_cache)
    L.put_json(ws.store, cache_key, clip_cache)
    qkey, good_key = L.quarantine_key(snapshot.digest, vkey), L.validated_key(snapshot.digest, vkey)
    L.put_json(ws.store, qkey, [q.to_dict() for q in result.quarantine])
    L.put_frame(ws.store, good_key, result.good)
    return Validated(
        snapshot_digest=snapshot.digest, ok=bool(result.ok), message=result.message, n_rows=manifest.height,
        n_good=result.good.height, n_quarantined=len(result.quarantine), quarantine_key=qkey, good_key=good_key,
    )


def split_step(spec: RunSpec, validated: Validated) -> SplitRef:
    """Assign train/eval/test (speaker-disjoint) and summarise the snapshot."""
    ws, cfg = spec.workspace(), spec.config
    good = L.get_frame(ws.store, validated.good_key)
    split = ds.assign_splits(good, cfg.split)
    split_digest = ds.manifest_digest(split)
    key = L.split_key(validated.snapshot_digest, split_digest)
    L.put_frame(ws.store, key, split)  # every run, like the manifest: an older format under the same key is replaced
    summary = ds.summarize(split) | {"digest": validated.snapshot_digest, "split_digest": split_digest,
                                     "n_quarantined": validated.n_quarantined}
    for name in ("train", "eval", "test"):
        labels = split.filter(pl.col("split") == name)["label"]
        if labels.n_unique() < 2:
            raise PipelineError(f"the {name} split has only one class ({labels.len()} clips): add data for both classes")
    return SplitRef(
        snapshot_digest=validated.snapshot_digest, split_digest=split_digest, split_key=key,
        quarantine_key=validated.quarantine_key, summary=summary,
    )


def feature_rows(df: pl.DataFrame) -> list[dict]:
    return df.select("key", "sha256", "split", "label").to_dicts()


def feature_chunk_count(split: SplitRef, chunk_size: int) -> int:
    """How many chunks the feature stage fans out into (at least one)."""
    n = int(split.summary.get("n_clips", 0))
    return max(1, -(-n // max(1, chunk_size)))


def features_step(
    spec: RunSpec, split: SplitRef, *, chunk: tuple[int, int] = (0, 1), on_clip: Callable[[int, int], None] | None = None
) -> FeaturesReady:
    """Compute the features (clean + noise copies + shortcut variants) the run needs; reuse the rest.

    ``chunk=(i, n)`` handles the i-th of n contiguous slices of the split's
    rows, so the stage can fan out over a task runner (threads or Dask); each
    clip's arrays depend only on its content and the config, so any split into
    chunks gives identical features.
    """
    ws, cfg = spec.workspace(), spec.config
    df = L.get_frame(ws.store, split.split_key).sort("sha256")
    index, count = chunk
    if not 0 <= index < count:
        raise ValueError(f"chunk index {index} is outside 0..{count - 1}")
    size = -(-df.height // count)
    df = df.slice(index * size, size)
    extractor = FeatureExtractor(cfg.features)
    noise = ws.noise_bank(cfg.audio.sample_rate)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    if len(noise) == 0:
        log.warning("no noise recordings under %s/%s: training without noise augmentation", ws.noise.uri, ws.noise_prefix)
    stats = ws.features.ensure(ws.data, feature_rows(df), extractor, plan, noise, workers=cfg.runtime.feature_workers, on_clip=on_clip)
    if stats.failed:
        # Validation decoded these already; a failure here means the object changed under us.
        raise PipelineError(f"feature extraction failed for {len(stats.failed)} clip(s): {stats.failed[:3]}")
    return FeaturesReady(
        extractor_key=extractor.key, aug_key=plan.aug_key, noise_files=len(noise), clips=stats.clips,
        computed=stats.computed, reused=stats.reused, audio_seconds=stats.audio_seconds, seconds=stats.seconds,
    )


def merge_features(parts: list[FeaturesReady]) -> FeaturesReady:
    """The per-chunk results of the feature stage as one (chunks run side by side: wall time is the slowest)."""
    if not parts:
        raise ValueError("merge_features needs at least one chunk")
    return parts[0].model_copy(update={
        "clips": sum(p.clips for p in parts), "computed": sum(p.computed for p in parts),
        "reused": sum(p.reused for p in parts), "audio_seconds": sum(p.audio_seconds for p in parts),
        "seconds": max(p.seconds for p in parts), "chunks": len(parts),
    })

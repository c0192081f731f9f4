"""Batch scoring: every new recording in an inbox scored by a registered model, once.

Predictions are Parquet files next to the registry, one per batch::

    predictions/<model>/v<NNNN>/<batch_id>.parquet

with one row per clip: the file key, its content sha256, the probability,
the decision at the model's threshold, the spread of the window scores, the
model's name/version/sha256 and when it was scored. A clip is identified by
its content, so a rerun (or the same recording uploaded again under another
name) scores nothing new. Recordings that fail the audio checks are skipped
with a reason code, as in training validation.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from spira_lib.checkpoint import load_checkpoint
from spira_lib.config import SpiraConfig
from spira_lib.feature_store import StoreClipSource, VariantPlan
from spira_lib.features import FeatureExtractor
from spira_lib.hashing import sha256_hex, stable_hash
from spira_lib.noise import AUDIO_EXTENSIONS, NoiseBank
from spira_lib.pipeline.contract import RunSpec, StepResult
from spira_lib.pipeline.layout import get_json, put_json
from spira_lib.pipeline.workspace import Workspace
from spira_lib.ports import join_key
from spira_lib.registry import ModelVersion
from spira_lib.training.predict import clip_index, per_clip, window_probabilities
from spira_lib.validation import check_clip

PREDICTION_SCHEMA = {
    "file": pl.String, "sha256": pl.String, "probability": pl.Float64, "decision": pl.String,
    "window_std": pl.Float64, "n_windows": pl.Int64, "model": pl.String, "version": pl.Int64,
    "model_sha256": pl.String, "role": pl.String, "batch_id": pl.String, "scored_at": pl.String,
}


def predictions_dir(model: str, version: int) -> str:
    return join_key("predictions", model, f"v{version:04d}")


class ScoredBatch(StepResult):
    """What one model did with one batch: how many clips it scored, skipped as known, or rejected."""

    model: str
    version: int
    role: str  # "champion" | "shadow"
    batch_id: str
    n_files: int
    n_scored: int
    n_known: int
    rejected: list[dict[str, Any]]  # {"file": pseudonym, "kind": reason code, "reason": sentence}
    predictions_key: str | None
    shas: list[str]  # the clips of this batch that the model has predictions for (new or known)
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"{self.model} v{self.version} ({self.role}): {self.n_scored} scored, {self.n_known} already scored, "
                f"{len(self.rejected)} rejected of {self.n_files} recordings in {self.seconds:.1f} s")


@dataclass(frozen=True)
class InboxClip:
    key: str
    sha256: str


def list_inbox(ws: Workspace) -> list[InboxClip]:
    """Every audio object of the inbox with its content hash (hashes cached by object etag)."""
    cache_key = join_key("cache", "hashes", stable_hash(ws.data.uri)[:16] + ".json")
    cache = get_json(ws.store, cache_key, {}) or {}
    clips, changed = [], False
    for info in ws.data.list(""):
        if not info.key.lower().endswith(AUDIO_EXTENSIONS):
            continue
        tag = f"{info.key}\x00{info.etag}"
        sha = cache.get(tag) if info.etag else None
        if sha is None:
            sha = sha256_hex(ws.data.get(info.key))
            if info.etag:
                cache[tag], changed = sha, True
        clips.append(InboxClip(info.key, sha))
    if changed:
        put_json(ws.store, cache_key, cache)
    return clips


def known_shas(ws: Workspace, model: str, version: int) -> set[str]:
    """Clips this model version already has predictions for."""
    out: set[str] = set()
    for info in ws.store.list(predictions_dir(model, version) + "/"):
        if info.key.endswith(".parquet"):
            out |= set(pl.read_parquet(io.BytesIO(ws.store.get(info.key)), columns=["sha256"])["sha256"].to_list())
    return out


def _check(ws: Workspace, cfg: SpiraConfig, clips: list[InboxClip], pseudonym) -> tuple[list[InboxClip], list[dict]]:
    good, rejected = [], []
    for clip in clips:
        check = check_clip(ws.data.get(clip.key), cfg.audio, name=clip.key)
        if check.ok:
            good.append(clip)
        else:
            rejected.append({"file": pseudonym(clip.key), "kind": check.code, "reason": check.reason})
    return good, rejected


def score_clips(ws: Workspace, cfg: SpiraConfig, mv: ModelVersion, clips: list[InboxClip], role: str, batch_id: str) -> pl.DataFrame:
    """Probabilities of ``clips`` under ``mv``, with the spread of its window scores."""
    ckpt = load_checkpoint(ws.registry.load_artifact(mv, "model.pt"))
    extractor = FeatureExtractor(ckpt.feat_cfg)
    empty = NoiseBank([], [], "none")
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, empty)  # clean features only
    rows = [{"key": c.key, "sha256": c.sha256, "split": None, "label": 0} for c in clips]
    stats = ws.features.ensure(ws.data, rows, extractor, plan, empty, workers=cfg.runtime.feature_workers)
    if stats.failed:
        raise RuntimeError(f"feature extraction failed for {len(stats.failed)} recording(s) that passed the audio checks")
    source = StoreClipSource(ws.features, extractor.key, [c.sha256 for c in clips], [0] * len(clips), plan)
    index = clip_index(ckpt.model, source, ckpt.model_cfg, ckpt.feat_cfg)
    mean, std, n = per_clip(index, window_probabilities(ckpt.model, index, ckpt.n_frames, 256))
    threshold = cfg.evaluation.threshold
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return pl.DataFrame({
        "file": [c.key for c in clips], "sha256": [c.sha256 for c in clips], "probability": mean,
        "decision": np.where(mean >= threshold, "patient", "control").tolist(), "window_std": std, "n_windows": n,
        "model": mv.name, "version": mv.version, "model_sha256": mv.artifacts["model.pt"]["sha256"], "role": role,
        "batch_id": batch_id, "scored_at": now,
    }, schema=PREDICTION_SCHEMA)


def score_batch(spec: RunSpec, mv: ModelVersion, *, role: str = "champion", only: set[str] | None = None) -> ScoredBatch:
    """Score the inbox's recordings that ``mv`` has not scored yet (``only``: restrict to these clips)."""
    t0 = time.perf_counter()
    ws, cfg = spec.workspace(), spec.config
    pseudonym = ws.pseudonyms(cfg)
    clips = [c for c in list_inbox(ws) if only is None or c.sha256 in only]
    known = known_shas(ws, mv.name, mv.version)
    fresh = list({c.sha256: c for c in clips if c.sha256 not in known}.values())
    good, rejected = _check(ws, cfg, fresh, pseudonym)
    batch_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + stable_hash(sorted(c.sha256 for c in good))[:8]
    key = None
    if good:
        key = join_key(predictions_dir(mv.name, mv.version), f"{batch_id}.parquet")
        buf = io.BytesIO()
        score_clips(ws, cfg, mv, good, role, batch_id).write_parquet(buf)
        ws.store.put(key, buf.getvalue())
    return ScoredBatch(
        model=mv.name, version=mv.version, role=role, batch_id=batch_id, n_files=len(clips), n_scored=len(good),
        n_known=len({c.sha256 for c in clips} & known), rejected=rejected, predictions_key=key,
        shas=sorted({c.sha256 for c in clips} & (known | {c.sha256 for c in good})), seconds=round(time.perf_counter() - t0, 2),
    )


def read_predictions(ws: Workspace, model: str, version: int, shas: set[str] | None = None) -> pl.DataFrame:
    """Every stored prediction of one model version (optionally of some clips only)."""
    frames = [pl.read_parquet(io.BytesIO(ws.store.get(i.key))) for i in ws.store.list(predictions_dir(model, version) + "/")
              if i.key.endswith(".parquet")]
    df = pl.concat(frames) if frames else pl.DataFrame(schema=PREDICTION_SCHEMA)
    df = df.unique(subset="sha256", keep="first", maintain_order=True)
    return df if shas is None else df.filter(pl.col("sha256").is_in(sorted(shas)))

"""The drift step: clips compared with the reference their champion keeps.

- At registration, ``reference_artifact`` builds the reference of a model's
  training clips (raw-audio profiles, label / sex / age band / hospital
  counts, and the model's own embeddings of those clips); the registry stores
  it with the version as ``drift_reference.json`` (``REFERENCE_ARTIFACT``).
- ``check_clips`` compares clips (a scored inbox batch, or the labelled clips
  added since the champion's training snapshot) with that reference and
  returns a ``DriftCheck``: a status, one sentence, and the ``DriftReport``.

A model registered before references existed has none: the check says so
(status ``no-reference``) and never fails the run. Too few clips give status
``too-few`` instead of a test. Only content hashes and feature names are
carried: no file names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from spira_lib.checkpoint import load_checkpoint
from spira_lib.config import DriftConfig, SpiraConfig
from spira_lib.feature_store import StoreClipSource, VariantPlan
from spira_lib.features import FeatureExtractor
from spira_lib.hashing import sha256_hex
from spira_lib.monitoring.embedding import clip_embeddings
from spira_lib.monitoring.reference import DEFAULT_MAX_EMBEDDINGS, ReferenceProfile
from spira_lib.monitoring.report import DriftReport, DriftThresholds, drift_report
from spira_lib.monitoring.store import ProfileStore, build_reference
from spira_lib.noise import NoiseBank
from spira_lib.training.predict import predict_clips
from spira_lib.training.windows import clip_loader

if TYPE_CHECKING:
    from spira_lib.pipeline.workspace import Workspace
    from spira_lib.registry import ModelVersion

REFERENCE_ARTIFACT = "drift_reference.json"
Status = Literal["drifted", "no-drift", "too-few", "no-reference", "no-champion", "disabled"]
Source = Literal["score", "retrain"]


class ConceptDrift(BaseModel):
    """The champion's ROC-AUC on new labelled clips next to the one it had at registration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_clips: int
    n_patients: int
    n_controls: int
    confidence: float
    roc_auc: float | None = None  # None: too few clips of a class (``message`` says so)
    interval: list[float] | None = None
    registered_roc_auc: float | None = None
    registered_interval: list[float] | None = None
    message: str

    @property
    def decayed(self) -> bool:
        """The new clips' interval lies wholly below the AUC at registration."""
        return bool(self.interval and self.registered_roc_auc is not None and self.interval[1] < self.registered_roc_auc)


class DriftCheck(BaseModel):
    """What one drift step found: small and JSON-able (the report holds statistics, never clip names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    version: int | None
    source: Source
    batch: str
    n_clips: int
    status: Status
    message: str
    report: DriftReport | None = None
    concept: ConceptDrift | None = None
    unreadable: int = 0  # clips whose audio could not be profiled

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"

    def describe(self) -> str:
        who = self.model if self.version is None else f"{self.model} v{self.version}"
        text = f"drift ({self.source}, {who}): {self.message}"
        return text + (f"; {self.concept.message}" if self.concept is not None else "")

    def event_payload(self) -> dict[str, Any]:
        """Body of the ``spira.drift.detected`` event: severity, what moved, the batch; no clip names."""
        body = self.report.event_payload() if self.report is not None else {"batch": self.batch, "n_clips": self.n_clips}
        body.update({"model": self.model, "version": self.version, "source": self.source, "status": self.status,
                     "batch_size": self.n_clips, "message": self.message})
        if self.concept is not None:
            body["concept"] = self.concept.model_dump(mode="json")
        return body


def thresholds(cfg: DriftConfig) -> DriftThresholds:
    return DriftThresholds(alpha=cfg.alpha, major_wasserstein_norm=cfg.major_wasserstein_norm,
                           major_tv=cfg.major_tv, major_count=cfg.major_count)


def _clean_source(ws: "Workspace", cfg: SpiraConfig, ckpt, rows: list[dict]) -> StoreClipSource:
    """The clean features of ``rows`` for the checkpoint's own feature config (computed when missing)."""
    extractor = FeatureExtractor(ckpt.feat_cfg)
    empty = NoiseBank([], [], "none")
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, empty)  # clean features only
    todo = [{"key": r["key"], "sha256": r["sha256"], "split": None, "label": int(r.get("label") or 0)} for r in rows]
    stats = ws.features.ensure(ws.data, todo, extractor, plan, empty, workers=cfg.runtime.feature_workers)
    if stats.failed:
        raise RuntimeError(f"feature extraction failed for {len(stats.failed)} clip(s) of the drift check")
    return StoreClipSource(ws.features, extractor.key, [r["sha256"] for r in rows], [t["label"] for t in todo], plan)


def model_embeddings(ws: "Workspace", cfg: SpiraConfig, blob: bytes, rows: list[dict]) -> np.ndarray:
    """``[n, D]`` mean window embeddings of ``rows`` (``key``, ``sha256``) by the checkpoint ``blob``."""
    ckpt = load_checkpoint(blob)
    source = _clean_source(ws, cfg, ckpt, rows)
    loaders = [clip_loader(source, i, 0) for i in range(len(source))]
    return clip_embeddings(ckpt.model, loaders, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg)


def model_probabilities(ws: "Workspace", cfg: SpiraConfig, blob: bytes, rows: list[dict]) -> np.ndarray:
    """Clean probabilities of ``rows`` under the checkpoint ``blob`` (as batch scoring computes them)."""
    ckpt = load_checkpoint(blob)
    source = _clean_source(ws, cfg, ckpt, rows)
    return np.asarray(predict_clips(ckpt.model, source, model_cfg=ckpt.model_cfg, feat_cfg=ckpt.feat_cfg), dtype=float)


def _subsample(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """At most ``n`` rows, the same ones for the same clips (by content hash)."""
    if frame.height <= n:
        return frame
    return frame.sort("sha256").gather_every(max(1, frame.height // n)).head(n)


def reference_artifact(ws: "Workspace", cfg: SpiraConfig, frame: pl.DataFrame, blob: bytes | None = None) -> bytes:
    """The JSON reference of ``frame``'s clips (a model's train rows), with that model's embeddings when ``blob`` is given."""
    emb = emb_model = None
    if blob is not None and cfg.drift.embeddings and frame.height >= 2:
        rows = _subsample(frame, DEFAULT_MAX_EMBEDDINGS).select("key", "sha256").to_dicts()
        emb, emb_model = model_embeddings(ws, cfg, blob, rows), sha256_hex(blob)
    ref, _failed = build_reference(ProfileStore(ws.store), ws.data, frame, embeddings=emb, embedding_model=emb_model,
                                   workers=cfg.runtime.feature_workers)
    return ref.to_json().encode()


def load_reference(ws: "Workspace", mv: "ModelVersion") -> tuple[ReferenceProfile | None, str]:
    """The reference a version keeps, or None and why (registered before references existed, or stale)."""
    if REFERENCE_ARTIFACT not in mv.artifacts:
        return None, (f"{mv.name} v{mv.version} was registered without a drift reference (before drift monitoring "
                      f"existed): nothing to compare with until a newer version is registered")
    try:
        return ReferenceProfile.from_json(ws.registry.load_artifact(mv, REFERENCE_ARTIFACT)), ""
    except ValueError as exc:
        return None, f"the drift reference of {mv.name} v{mv.version} cannot be used: {exc}"


def check_clips(
    ws: "Workspace", cfg: SpiraConfig, champion: "ModelVersion", rows: list[dict], *, batch: str, source: Source,
    categorical: Mapping[str, Mapping[str, int]] | None = None, concept: ConceptDrift | None = None,
) -> DriftCheck:
    """Compare the clips of ``rows`` (``key``, ``sha256``) with the champion's reference."""
    base = dict(model=champion.name, version=champion.version, source=source, batch=batch, n_clips=len(rows), concept=concept)
    if not cfg.drift.enabled:
        return DriftCheck(status="disabled", message="drift monitoring is off (drift.enabled = false)", **base)
    ref, why = load_reference(ws, champion)
    if ref is None:
        return DriftCheck(status="no-reference", message=why, **base)
    table, failed, _ = ProfileStore(ws.store).ensure(ws.data, rows, workers=cfg.runtime.feature_workers)
    if len(table) < cfg.drift.min_clips:
        return DriftCheck(status="too-few", unreadable=len(failed), **base, message=(
            f"too few clips to test: {len(table)} profiled, drift.min_clips = {cfg.drift.min_clips}"))
    emb = None
    if cfg.drift.embeddings and ref.embeddings is not None and ref.embedding_model == champion.artifacts.get("model.pt", {}).get("sha256"):
        emb = model_embeddings(ws, cfg, ws.registry.load_artifact(champion, "model.pt"), rows)
    report = drift_report(ref, table, batch=batch, cur_embeddings=emb, cur_categorical=categorical, thresholds=thresholds(cfg.drift))
    if report.drifted:
        message = f"{report.severity} drift in {len(report.moved)} test(s): {', '.join(report.moved[:6])} ({len(table)} clips)"
    else:
        message = f"no drift: nothing moved at alpha {report.alpha:g} ({len(table)} clips)"
    return DriftCheck(status="drifted" if report.drifted else "no-drift", message=message, report=report,
                      unreadable=len(failed), **base)


def new_clips(current: pl.DataFrame, trained_on: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``current`` whose clip (content hash) the model was not trained, tuned or tested on."""
    return current.filter(~pl.col("sha256").is_in(trained_on["sha256"].to_list())).unique("sha256", keep="first", maintain_order=True)


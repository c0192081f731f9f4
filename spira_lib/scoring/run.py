"""A scoring run: the champion scores the new recordings of an inbox; a challenger, if any, scores them in shadow.

``score(steps)`` is the order, written once (like ``pipeline.sequence.retrain``):
champion batch -> drift of the newly scored clips vs the champion's reference
-> shadow batch and comparison -> promote a held challenger whose shadow
evidence is now sufficient. ``LocalScoring`` runs it directly
(``spira score``); the ``spira-score`` flow runs each step as a task.
"""
from __future__ import annotations

import io
from typing import Callable, Protocol

import polars as pl

from spira_lib.monitoring.run import DriftCheck, check_clips
from spira_lib.pipeline.contract import RunSpec, StepResult
from spira_lib.pipeline.hand_off import hand_off_champion
from spira_lib.registry import CHALLENGER_ALIAS, ModelVersion, RegistryError
from spira_lib.scoring.batch import ScoredBatch, read_predictions, score_batch
from spira_lib.scoring.shadow import ShadowReport, compare, update_tally

Say = Callable[[str], None]


class ScoreOutcome(StepResult):
    champion: ScoredBatch
    drift: DriftCheck | None = None
    shadow: ShadowReport | None = None
    promoted_challenger: int | None = None


def models(spec: RunSpec) -> tuple[ModelVersion, ModelVersion | None]:
    """The champion (required) and a challenger that is not the champion (optional)."""
    reg = spec.workspace().registry
    champion = reg.champion(spec.model_name)
    if champion is None:
        raise RegistryError(
            f"model {spec.model_name!r} has no champion to score with: promote a version first "
            f"(spira registry promote {spec.model_name}:N --registry {spec.registry_uri})"
        )
    aliases = reg.aliases(spec.model_name) if spec.model_name in reg.list_models() else {}
    version = aliases.get(CHALLENGER_ALIAS)
    challenger = reg.get(spec.model_name, version=version) if version and version != champion.version else None
    return champion, challenger


def drift_step(spec: RunSpec, champion: ModelVersion, batch: ScoredBatch) -> DriftCheck:
    """The clips the champion scored in this batch vs the reference of its training clips."""
    ws = spec.workspace()
    rows: list[dict] = []
    if batch.predictions_key:
        preds = pl.read_parquet(io.BytesIO(ws.store.get(batch.predictions_key)), columns=["file", "sha256"])
        rows = [{"key": f, "sha256": s} for f, s in zip(preds["file"].to_list(), preds["sha256"].to_list())]
    return check_clips(ws, spec.config, champion, rows, batch=batch.batch_id, source="score")


def shadow_step(spec: RunSpec, champion: ModelVersion, challenger: ModelVersion, batch: ScoredBatch) -> ShadowReport:
    """Score the champion's batch with the challenger too, compare on the same clips, add to the running tally."""
    ws, cfg = spec.workspace(), spec.config
    shadow = score_batch(spec, challenger, role="shadow", only=set(batch.shas))
    shas = set(batch.shas) & set(shadow.shas)
    stats = compare(read_predictions(ws, champion.name, champion.version, shas),
                    read_predictions(ws, challenger.name, challenger.version, shas), ws.pseudonyms(cfg), cfg.evaluation.threshold)
    stats.pop("decisions")  # this batch's counts; the tally counts each clip once, from per_clip
    tally = update_tally(ws, spec.model_name, champion.version, challenger.version, batch.batch_id, stats.pop("per_clip"))
    return ShadowReport(model=spec.model_name, champion=champion.version, challenger=challenger.version, tally=tally, **stats)


def promote_if_shadow_passes(spec: RunSpec, report: ShadowReport) -> int | None:
    """Promote a challenger the gate held back, once its shadow tally meets gate.min_shadow_clips/agreement."""
    gate, reg = spec.config.gate, spec.workspace().registry
    held = [e for e in reg.ledger(spec.model_name) if e.get("version") == report.challenger]
    if gate.min_shadow_clips <= 0 or not held or held[-1].get("action") != "hold":
        return None
    if report.tally["n"] < gate.min_shadow_clips or report.tally["agreement"] < gate.min_shadow_agreement:
        return None
    reason = (f"shadow evidence: {report.tally['n']} clips scored in shadow, agreement {report.tally['agreement']:.3f} "
              f">= {gate.min_shadow_agreement:.3f} with champion v{report.champion}")
    reg.promote(spec.model_name, report.challenger, reason=reason, decision=held[-1].get("decision"), actor="spira-score")
    hand_off_champion(spec.workspace(), spec.model_name, spec.config.evaluation.threshold)
    return report.challenger


class ScoringSteps(Protocol):
    def models(self) -> tuple[ModelVersion, ModelVersion | None]: ...
    def champion_batch(self, champion: ModelVersion) -> ScoredBatch: ...
    def drift(self, champion: ModelVersion, batch: ScoredBatch) -> DriftCheck: ...
    def shadow(self, champion: ModelVersion, challenger: ModelVersion, batch: ScoredBatch) -> ShadowReport: ...
    def promote_if_ready(self, report: ShadowReport) -> int | None: ...


def score(steps: ScoringSteps, say: Say = lambda _m: None) -> ScoreOutcome:
    champion, challenger = steps.models()
    batch = steps.champion_batch(champion)
    say(batch.describe())
    drift = steps.drift(champion, batch) if batch.n_scored else None
    if drift is not None:
        say(drift.describe())
    if challenger is None or not batch.shas:
        return ScoreOutcome(champion=batch, drift=drift)
    report = steps.shadow(champion, challenger, batch)
    say(report.describe())
    promoted = steps.promote_if_ready(report)
    if promoted is not None:
        say(f"{report.model} v{promoted} promoted to champion on its shadow evidence")
    return ScoreOutcome(champion=batch, drift=drift, shadow=report, promoted_challenger=promoted)


class LocalScoring:
    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def models(self):
        return models(self.spec)

    def champion_batch(self, champion: ModelVersion) -> ScoredBatch:
        return score_batch(self.spec, champion)

    def drift(self, champion: ModelVersion, batch: ScoredBatch) -> DriftCheck:
        return drift_step(self.spec, champion, batch)

    def shadow(self, champion, challenger, batch) -> ShadowReport:
        return shadow_step(self.spec, champion, challenger, batch)

    def promote_if_ready(self, report: ShadowReport) -> int | None:
        return promote_if_shadow_passes(self.spec, report)


def run_scoring(spec: RunSpec, say: Say = lambda _m: None) -> ScoreOutcome:
    return score(LocalScoring(spec), say)

"""The tasks of the spira-score flow: champion batch, shadow comparison, promotion of a held challenger."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from spira_lib.pipeline import RunSpec
from spira_lib.registry import ModelVersion
from spira_lib.reporting.monitoring import batch_report, shadow_report
from spira_lib.scoring import ScoredBatch, ShadowReport, score_batch
from spira_lib.scoring import run as S
from tasks import artifacts as A
from tasks.caching import RETRIED, UNCACHED


def _logged(result):
    get_run_logger().info(result.describe())
    return result


@task(name="resolve-models", task_run_name="find {spec.model_name} champion and challenger", **UNCACHED, **RETRIED)
def resolve_models(spec: RunSpec) -> tuple[ModelVersion, ModelVersion | None]:
    return S.models(spec)


@task(name="score-with-champion", task_run_name="score inbox with {champion.name} v{champion.version}", **UNCACHED, **RETRIED)
def score_with_champion(spec: RunSpec, champion: ModelVersion) -> ScoredBatch:
    batch = _logged(score_batch(spec, champion))
    create_markdown_artifact(key=A.SCORED_BATCH, markdown=batch_report(batch), description=batch.describe())
    return batch


@task(name="shadow-score", task_run_name="shadow-score with challenger v{challenger.version}", **UNCACHED, **RETRIED)
def shadow_score(spec: RunSpec, champion: ModelVersion, challenger: ModelVersion, batch: ScoredBatch) -> ShadowReport:
    report = _logged(S.shadow_step(spec, champion, challenger, batch))
    create_markdown_artifact(key=A.SHADOW, markdown=shadow_report(report), description=report.describe())
    return report


@task(name="promote-if-shadow-passes", task_run_name="promote challenger v{report.challenger} if its shadow evidence suffices", **UNCACHED, **RETRIED)
def promote_if_ready(spec: RunSpec, report: ShadowReport) -> int | None:
    return S.promote_if_shadow_passes(spec, report)

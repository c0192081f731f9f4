"""Tasks of the on-demand flows: score a registered model on a dataset, roll the champion back."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from spira_lib.pipeline import Evaluation, RunSpec, evaluate_dataset
from spira_lib.pipeline.hand_off import hand_off_champion
from spira_lib.reporting import metrics_table, slices_table
from spira_lib.reporting.run_reports import rollback_report
from tasks import artifacts as A
from tasks.caching import RETRIED, UNCACHED


@task(name="evaluate-registered-model", task_run_name="evaluate {model_ref} on {spec.data_uri}", **UNCACHED, **RETRIED)
def evaluate_registered_model(spec: RunSpec, model_ref: str) -> Evaluation:
    result = evaluate_dataset(spec, model_ref)
    get_run_logger().info("%s v%d on %s: %s", result.model, result.version, result.data, result.metrics)
    return result


@task(name="publish-evaluation", task_run_name="report {result.model} v{result.version} evaluation", **UNCACHED)
def publish_evaluation(result: Evaluation) -> None:
    what = f"{result.model} v{result.version} on {result.data}"
    create_table_artifact(key=A.CHAMPION_METRICS, table=metrics_table(result.report), description=what)
    create_table_artifact(key=A.CHAMPION_SLICES, table=slices_table(result.report), description=f"{what}: slices")


@task(name="rollback-champion", task_run_name="roll back {model_name}", **UNCACHED, **RETRIED)
def rollback_champion(registry_uri: str, model_name: str, reason: str) -> dict:
    """Move `champion` back to the previous champion; recorded in the ledger."""
    ws = RunSpec.build(registry_uri, registry_uri).workspace()  # the registry's ports (no dataset needed)
    reg = ws.registry
    before = reg.champion(model_name)
    mv = reg.rollback(model_name, reason=reason, actor="prefect")
    hand_off_champion(ws, model_name)
    before_version = before.version if before else None
    create_markdown_artifact(key=A.ROLLBACK, markdown=rollback_report(model_name, before_version, mv.version, reason))
    get_run_logger().info("%s champion rolled back from v%s to v%d", model_name, before_version or "-", mv.version)
    return {"model": model_name, "from": before_version, "to": mv.version}

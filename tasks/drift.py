"""The drift tasks: one core drift step, the ``spira-drift`` artifact, and ``spira.drift.detected`` when something moved."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from spira_lib.monitoring import DRIFT_EVENT
from spira_lib.monitoring.run import DriftCheck
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.contract import SplitRef
from spira_lib.pipeline.drift_steps import new_data_drift_step
from spira_lib.registry import ModelVersion
from spira_lib.reporting.drift import drift_markdown
from spira_lib.scoring import ScoredBatch
from spira_lib.scoring import run as S
from spira_lib.watch import model_resource_id
from tasks import artifacts as A
from tasks.caching import RETRIED, UNCACHED


def publish(check: DriftCheck) -> DriftCheck:
    """Log, publish the artifact, and emit the event when the batch drifted (resource: the champion version)."""
    log = get_run_logger()
    (log.warning if check.drifted else log.info)(check.describe())
    create_markdown_artifact(key=A.DRIFT, markdown=drift_markdown(check), description=check.describe()[:500])
    if check.drifted:
        emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": model_resource_id(check.model, check.version or 0),
                "prefect.resource.name": f"{check.model} v{check.version}",
                "spira.model": check.model,
                "spira.version": str(check.version),
                "spira.drift.source": check.source,
                "spira.drift.severity": check.report.severity if check.report else "none",
            },
            payload=check.event_payload(),
        )
    return check


@task(name="check-batch-drift", task_run_name="drift of batch {batch.batch_id} vs v{champion.version}", **UNCACHED, **RETRIED)
def check_batch_drift(spec: RunSpec, champion: ModelVersion, batch: ScoredBatch) -> DriftCheck:
    """The clips the champion just scored vs the reference of its training clips."""
    return publish(S.drift_step(spec, champion, batch))


@task(name="check-new-data-drift", task_run_name="drift of new data in split {split.split_digest:.8}", **UNCACHED, **RETRIED)
def check_new_data_drift(spec: RunSpec, split: SplitRef) -> DriftCheck:
    """Before training: the labelled clips added since the champion's snapshot vs its reference, and its AUC on them."""
    return publish(new_data_drift_step(spec, split))

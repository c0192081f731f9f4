"""The training pipeline as plain steps over a workspace.

``contract`` (RunSpec and the typed step results), ``layout`` (where a run
keeps its work), ``workspace`` (the ports, code version and training key),
``data_steps`` and ``model_steps`` (the steps), ``sequence`` (their order and
the skip rule, written once) and ``evaluation`` (scoring any labelled dataset).
"""
from spira_lib.pipeline.contract import RunOutcome, RunSpec
from spira_lib.pipeline.evaluation import Evaluation, evaluate_dataset
from spira_lib.pipeline.sequence import LocalSteps, Steps, retrain, run_pipeline
from spira_lib.pipeline.workspace import PipelineError, Workspace, code_version, training_key

__all__ = [
    "Evaluation",
    "LocalSteps",
    "PipelineError",
    "RunOutcome",
    "RunSpec",
    "Steps",
    "Workspace",
    "code_version",
    "evaluate_dataset",
    "retrain",
    "run_pipeline",
    "training_key",
]

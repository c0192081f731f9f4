"""Run the core pipeline in a child process that SIGKILLs itself at a chosen point.

``run_until(spec_json, point)`` runs ``spira_lib.pipeline`` (the same
``retrain`` sequence as ``spira train``) with every step wrapped: after the
step named ``point`` returns, the process kills itself with SIGKILL, the way
an OOM killer, a lost spot instance or ``kill -9`` ends a run, with no
``finally`` blocks or atexit handlers running. Points inside a step:

* ``features:<n>``  after the n-th feature file was written;
* ``register:artifacts``  after the artifacts of the new version, before its marker.

The tests start these children from a forkserver that has already imported
torch, so each run costs the pipeline's time, not the interpreter's start-up.
"""
from __future__ import annotations

import os
import signal

import torch  # noqa: F401 - preloaded in the forkserver
import torch._dynamo  # noqa: F401 - imported lazily by torch.use_deterministic_algorithms; 9 s here

from spira_lib.feature_store import FeatureStore
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.sequence import LocalSteps, retrain
from spira_lib.registry.claims import VersionWriter

STEPS = ("snapshot", "validate", "split", "features", "train", "evaluate", "compare", "register", "promote")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingSteps(LocalSteps):
    """LocalSteps that die right after the step named ``point``."""

    def __init__(self, spec: RunSpec, point: str | None) -> None:
        super().__init__(spec)
        self.point = point


def _wrap(name: str):
    def step(self, *args, **kwargs):
        result = getattr(LocalSteps, name)(self, *args, **kwargs)
        if self.point == name:
            _die()
        return result

    step.__name__ = name
    return step


for _name in STEPS:
    setattr(KillingSteps, _name, _wrap(_name))


def _arm_inner_points(point: str | None) -> None:
    if point and point.startswith("features:"):
        limit, count = int(point.split(":", 1)[1]), [0]
        original = FeatureStore.put

        def put(self, *args, **kwargs):
            original(self, *args, **kwargs)
            count[0] += 1
            if count[0] >= limit:
                _die()

        FeatureStore.put = put
    if point == "register:artifacts":
        original_write = VersionWriter.write

        def write(self, name, artifacts, metadata, champion, reason, actor):
            real_create = self.reg.store.put

            def put(key, data, *, if_absent=False):
                if key.endswith("/version.json"):
                    _die()
                return real_create(key, data, if_absent=if_absent)

            self.reg.store.put = put
            return original_write(self, name, artifacts, metadata, champion, reason, actor)

        VersionWriter.write = write


def run_until(spec_json: str, point: str | None) -> dict:
    """The run's outcome as a dict; never returns when ``point`` is reached."""
    spec = RunSpec.model_validate_json(spec_json)
    _arm_inner_points(point)
    outcome = retrain(KillingSteps(spec, point), model_name=spec.model_name)
    return outcome.model_dump(mode="json")

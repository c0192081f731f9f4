"""The typed run contract: what a run is asked to do (RunSpec) and what each step hands on.

Every step result is a small frozen pydantic model of keys, digests, counts and
metrics, never arrays or DataFrames, so Prefect can cache and persist it and
the CLI can print it. Results carry forward what later steps need (a
``Trained`` holds its ``SplitRef``, an ``Evaluated`` its ``Trained``, ...), so
each step takes only the result of the step before it and the run graph reads
as a chain.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from spira_lib.config import SpiraConfig, load_config

if TYPE_CHECKING:
    from spira_lib.pipeline.workspace import Workspace


class RunSpec(BaseModel):
    """What one run works on: the dataset, the registry, a validated config, the model name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_uri: str
    registry_uri: str
    config: SpiraConfig = Field(default_factory=SpiraConfig)
    model_name: str = "spira"

    @classmethod
    def build(
        cls, data_uri: str | Path, registry_uri: str | Path, *, config_path: str | Path | None = None,
        overrides: dict[str, Any] | None = None, model_name: str = "spira",
    ) -> "RunSpec":
        """From URIs, an optional YAML config and dotted overrides (ConfigError names a bad field)."""
        return cls(
            data_uri=str(data_uri), registry_uri=str(registry_uri),
            config=load_config(config_path, overrides or {}), model_name=model_name,
        )

    def workspace(self) -> "Workspace":
        """The run's ports, opened once per process and shared by every step (see bootstrap.workspace_for)."""
        from spira_lib.bootstrap import workspace_for

        return workspace_for(self.data_uri, self.registry_uri, self.config.augment.noise_dir)

    def cache_identity(self) -> dict[str, Any]:
        """What of the spec a cached step result depends on: the config and the model, not the URIs
        (results are content-addressed; the registry is named by its workspace id)."""
        return {"config": self.config.digest(), "model": self.model_name}


class StepResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def cache_identity(self) -> Any:
        """What a cached step that receives this result depends on (all of it, unless a step says otherwise)."""
        return self.model_dump(mode="json")


class SnapshotRef(StepResult):
    digest: str
    manifest_key: str
    n_rows: int
    csvs: list[str]

    def describe(self) -> str:
        return f"snapshot {self.digest[:12]}: {self.n_rows} rows in {len(self.csvs)} CSV file(s)"


class Validated(StepResult):
    snapshot_digest: str
    ok: bool
    message: str
    n_rows: int
    n_good: int
    n_quarantined: int
    quarantine_key: str
    good_key: str

    def describe(self) -> str:
        return f"validation: {self.n_good} good, {self.n_quarantined} quarantined"


class SplitRef(StepResult):
    snapshot_digest: str
    split_digest: str
    split_key: str
    quarantine_key: str
    summary: dict[str, Any]

    def describe(self) -> str:
        return f"split {self.split_digest[:12]} of snapshot {self.snapshot_digest[:12]}: {self.summary['counts'].get('split', {})}"


class FeaturesReady(StepResult):
    extractor_key: str
    aug_key: str
    noise_files: int
    clips: int = 0
    computed: int = 0
    reused: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    chunks: int = 1

    def cache_identity(self) -> Any:
        # Training depends on which features exist, not on how long extraction took.
        return {"extractor_key": self.extractor_key, "aug_key": self.aug_key}

    def describe(self) -> str:
        return f"features: {self.computed} computed, {self.reused} reused in {self.seconds:.1f} s over {self.chunks} chunk(s)"


class Trained(StepResult):
    split: SplitRef
    training_key: str
    checkpoint_key: str
    training_json_key: str
    epochs_run: int
    best_epoch: int
    seconds: float
    device: str

    def describe(self) -> str:
        return f"trained {self.epochs_run} epochs (best {self.best_epoch}) in {self.seconds:.1f} s on {self.device}"


class Evaluated(StepResult):
    trained: Trained
    report_key: str
    predictions_key: str
    metrics: dict[str, Any]

    def describe(self) -> str:
        return "test: " + ", ".join(f"{k}={v:.3f}" for k, v in self.metrics.items() if isinstance(v, float))


class ChampionInfo(StepResult):
    version: int
    metrics: dict[str, Any]


class Compared(StepResult):
    evaluated: Evaluated
    comparison_key: str
    champion: ChampionInfo | None
    decision: dict[str, Any]

    @property
    def promote(self) -> bool:
        return bool(self.decision.get("promote"))

    def describe(self) -> str:
        reasons = "; ".join(self.decision.get("reasons", [])[:3])
        return f"gate: {'promote' if self.promote else 'reject'} - {reasons}"


class Registered(StepResult):
    compared: Compared
    version: int
    uri: str
    sha256: str
    created: bool

    def describe(self) -> str:
        return f"{'registered' if self.created else 'already registered'} v{self.version} at {self.uri}"


class Promoted(StepResult):
    registered: Registered
    promoted: bool
    already: bool = False
    held: bool = False  # passed the gate, waits as challenger for shadow evidence

    def describe(self) -> str:
        state = "is champion" if self.promoted else "is held as challenger for shadow scoring" if self.held else "was not promoted"
        return f"v{self.registered.version} {state}"


class TrainedVersion(StepResult):
    """A version already trained on the same data, config and code (the run then trains nothing).

    ``decided`` is False when the run that registered it stopped before the gate's decision
    reached the ledger (killed between register and promote); the next run records it from the
    ``decision`` stored with the version, and ``promoted``/``held`` then say how it ended.
    """

    version: int
    uri: str
    metrics: dict[str, Any]
    decided: bool = True
    decision: dict[str, Any] = Field(default_factory=dict)
    promoted: bool | None = None
    held: bool = False


class RunOutcome(StepResult):
    """What a retrain run did: the same from ``spira train`` and from the Prefect flow."""

    model: str
    version: int
    skipped: bool
    promoted: bool | None
    metrics: dict[str, Any]
    decision: dict[str, Any] | None = None
    uri: str | None = None
    seconds: float | None = None
    held: bool = False
    served: str | None = None  # where the serving side loads the promoted model (e.g. models:/spira@champion)

    @property
    def verdict(self) -> str:
        if self.skipped and self.promoted is None:
            return "already trained (nothing to do)"
        if self.held:
            return "registered, held as challenger until shadow scoring confirms it"
        return "promoted to champion" if self.promoted else "registered, not promoted"

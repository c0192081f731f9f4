"""spira-retrain end to end under prefect_test_harness: artifacts, caching, idempotency, the gate, rollback."""
from __future__ import annotations

import json
import shutil
from unittest import mock
from pathlib import Path

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.common import check_trigger
from flows.retrain import retrain_flow
from flows.rollback import rollback_flow
from spira_lib import bootstrap
from spira_lib.bootstrap import open_registry
from spira_lib.noise import NoiseBank
from spira_demo import generate_demo_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _run(data: Path, reg: Path, overrides: dict, **kw) -> tuple[dict, object]:
    state = retrain_flow(data_uri=str(data), registry_uri=str(reg), overrides=overrides, return_state=True, **kw)
    assert state.is_completed(), state
    return {**state.result().model_dump(), "state_message": state.message}, state.state_details.flow_run_id


def _run_tags(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as c:
        return list(c.read_flow_run(flow_run_id).tags)


def _model_events(flow_run_id, timeout_s: float = 20.0) -> list:
    """spira.model.* events related to the flow run (the server stores events in batches)."""
    import time

    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    flt = EventFilter(event=EventNameFilter(prefix=["spira.model."]), related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as c:
            events = c.read_events(filter=flt, limit=50).events  # the client default (100) is over the server cap
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def _artifacts(flow_run_id) -> dict:
    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    out: dict = {}
    for a in arts:
        out.setdefault(a.key or f"<{a.type}>", []).append(a)
    return out


def _task_names(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as c:
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r.name for r in runs]


def _feature_files(reg: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in (reg / "features").rglob("*.npy")}


@pytest.fixture(scope="module")
def first(tmp_path_factory, demo_dataset, fast_overrides):
    root = tmp_path_factory.mktemp("flow")
    data, reg = root / "data", root / "reg"
    shutil.copytree(demo_dataset, data)
    with open(data / "metadata.csv", "a") as fh:  # two bad rows whose names must never reach people
        fh.write("audio/maria-da-silva.wav,1,F,50,2,maria-da-silva,HC-SP\n")
        original = (data / "metadata.csv").read_text().splitlines()[1].split(",")
        fh.write(",".join([*original[:5], "jose-souza", original[6]]) + "\n")  # the same clip listed twice
    bootstrap.forget_workspaces()
    # Count how often the run opens its workspace and decodes the ward noise.
    with mock.patch.object(bootstrap, "open_workspace", wraps=bootstrap.open_workspace) as opens, \
            mock.patch.object(NoiseBank, "load", wraps=NoiseBank.load) as loads:
        result, run_id = _run(data, reg, fast_overrides)
    return {"data": data, "reg": reg, "result": result, "run_id": run_id, "features": _feature_files(reg),
            "opens": opens.call_count, "noise_loads": loads.call_count}


def test_one_run_opens_its_workspace_once_and_decodes_the_noise_once(first):
    assert first["opens"] == 1
    assert first["noise_loads"] == 1


def test_the_outcome_shows_at_a_glance(first):
    """State message, a tag for the runs list, and an event automations can turn into a notification."""
    assert first["result"]["state_message"] == "promoted spira v1"
    assert "promoted" in _run_tags(first["run_id"])
    (event,) = _model_events(first["run_id"])
    assert event.event == "spira.model.promoted"
    assert event.resource.id == "spira.model.spira.v1" and event.resource["spira.version"] == "1"


def _raw_names(data: Path) -> set[str]:
    """Every file key and speaker id of the dataset's CSVs (the names that identify patients)."""
    names = set()
    for csv in data.rglob("metadata.csv"):
        folder = csv.parent.relative_to(data).as_posix()
        for row in pl.read_csv(csv, infer_schema_length=0).iter_rows(named=True):
            names.add(f"{folder}/{row['file_path']}".removeprefix("./"))
            names.add(row["speaker_id"])
    return names


def test_no_artifact_or_log_line_of_a_run_shows_a_raw_name(first):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as c:
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[first["run_id"]])))
        task_names = [r.name for r in c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first["run_id"]])))]
    texts = [str(a.data) for group in _artifacts(first["run_id"]).values() for a in group]
    texts += [a.description or "" for group in _artifacts(first["run_id"]).values() for a in group]
    texts += [log.message for log in logs] + task_names
    names = _raw_names(first["data"])
    assert len(names) > 60 and {"maria-da-silva", "audio/maria-da-silva.wav"} <= names
    leaks = sorted({n for n in names for t in texts if n in t})
    assert not leaks, leaks[:10]
    # The quarantine is still there for people, under pseudonyms, with its reasons.
    quarantine = json.loads(_artifacts(first["run_id"])["spira-quarantine"][0].data)
    assert len(quarantine) == 2 and all(r["file"].startswith("p-") for r in quarantine)
    assert {r["kind"] for r in quarantine} == {"missing_file", "duplicate"} and logs


def test_first_run_registers_and_posts_the_artifacts(first):
    res = first["result"]
    assert res["version"] == 1 and res["skipped"] is False and res["promoted"] is True
    arts = _artifacts(first["run_id"])
    for key in ("spira-validation-report", "spira-metrics", "spira-slices", "spira-model", "spira-model-card"):
        assert key in arts, sorted(arts)
    report = arts["spira-validation-report"][0].data
    for section in ("snapshot", "Shortcut", "Decision"):
        assert section.lower() in report.lower(), section
    metrics = {row["metric"]: row for row in json.loads(arts["spira-metrics"][0].data)}
    assert metrics["roc_auc"]["challenger"] == pytest.approx(res["metrics"]["roc_auc"], abs=1e-4)
    slices = json.loads(arts["spira-slices"][0].data)
    assert {s["slice"] for s in slices} >= {"sex", "age_band", "hospital"}
    assert "v1" in arts["spira-model"][0].data and "sha256" in arts["spira-model"][0].data
    progress = [a for a in arts.get("<progress>", [])]
    assert progress and progress[0].data == 100.0
    with get_client(sync_client=True) as c:
        name = c.read_flow_run(first["run_id"]).name
    assert name.startswith("retrain-") and name.endswith("-promoted-v1"), name


def test_rerun_on_the_same_snapshot_trains_nothing(first, fast_overrides):
    result, run_id = _run(first["data"], first["reg"], fast_overrides)
    assert result["skipped"] is True and result["version"] == 1
    names = _task_names(run_id)
    assert names and not any(n.startswith(("train ", "register ", "features ")) for n in names), names
    assert [v.version for v in open_registry(first["reg"]).list_versions("spira")] == [1]
    assert "Nothing to train" in _artifacts(run_id)["spira-validation-report"][0].data
    assert result["state_message"].startswith("nothing to train: spira v1")
    assert "skipped" in _run_tags(run_id) and _model_events(run_id, timeout_s=2) == []


def test_added_clips_recompute_only_their_features(first, fast_overrides, tmp_path):
    before = first["features"]
    extra = tmp_path / "extra"
    generate_demo_dataset(extra, speakers=4, seed=77, noise_files=0)
    shutil.copytree(extra, first["data"] / "batch2")
    result, run_id = _run(first["data"], first["reg"], fast_overrides)
    assert result["skipped"] is False and result["version"] == 2
    after = _feature_files(first["reg"])
    assert all(after[p] == m for p, m in before.items()), "existing feature files were rewritten"
    new_shas = {Path(p).name.split(".")[0] for p in set(after) - set(before)}
    reg = open_registry(first["reg"])
    split2 = pl.read_parquet(reg.load_artifact(reg.get("spira", version=2), "split.parquet"))
    split1 = pl.read_parquet(reg.load_artifact(reg.get("spira", version=1), "split.parquet"))
    added = set(split2.filter(pl.col("key").str.starts_with("batch2/"))["sha256"])
    moved = set(split1.join(split2, on="sha256").filter(pl.col("split") != pl.col("split_right"))["sha256"])
    assert len(added) == 4
    assert new_shas and new_shas <= added | moved
    # Before training, the 4 new clips were checked against v1's drift reference: too few, said in words.
    drift = _artifacts(run_id)["spira-drift"][0].data
    assert "## Drift: new-data-" in drift and "vs spira v1" in drift and "Clips: 4 (labelled clips added" in drift
    assert "too few clips to test: 4 profiled" in drift and "too few new labelled clips to measure the champion's ROC-AUC" in drift


def _easy_dataset(root: Path) -> list[Path]:
    """Patients = voiced tones with pauses, controls = steady noise: a CNN separates them in a few steps.

    Fixed `split` column, so champion and challenger are scored on the same test clips.
    """
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr, rows = 16000, ["file_path,class,sexo,idade,nivel_falta_de_ar,speaker_id,split"]
    (root / "audio").mkdir(parents=True)
    (root / "noises").mkdir()
    sf.write(root / "noises" / "ward.wav", rng.normal(0, 0.05, sr * 3).astype("float32"), sr)
    t = np.arange(int(sr * 5.0)) / sr
    for i in range(36):
        label = i % 2
        if label:
            gate = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.2).astype("float32")
            wave = 0.3 * gate * np.sin(2 * np.pi * rng.uniform(150, 250) * t) + rng.normal(0, 0.003, t.size)
        else:
            wave = rng.normal(0, 0.1, t.size)
        name = f"audio/c{i:02d}.wav"
        sf.write(root / name, wave.astype("float32"), sr)
        split = "test" if i % 3 == 0 else "eval" if i % 3 == 1 else "train"
        rows.append(f"{name},{label},{'F' if i % 4 < 2 else 'M'},{30 + i},{2 * label},spk{i:02d},{split}")
    csv = root / "metadata.csv"
    csv.write_text("\n".join(rows) + "\n")
    return [csv]


def test_worse_challenger_is_rejected_with_its_reason(tmp_path, fast_overrides):
    data, reg = tmp_path / "data", tmp_path / "reg"
    csvs = _easy_dataset(data)
    overrides = {**fast_overrides, "training.epochs": 6, "training.early_stopping_patience": 6, "training.batch_size": 8}
    champion, _ = _run(data, reg, overrides)
    assert champion["promoted"] is True
    assert champion["metrics"]["roc_auc"] >= 0.8, champion["metrics"]
    # Same test clips, but train/eval labels flipped: the challenger learns the inverse.
    for csv in csvs:
        df = pl.read_csv(csv, infer_schema_length=0)
        flipped = pl.when(pl.col("split") != "test").then(1 - pl.col("class").cast(pl.Int64)).otherwise(pl.col("class").cast(pl.Int64))
        df.with_columns(flipped.cast(pl.Utf8).alias("class")).write_csv(csv)
    challenger, run_id = _run(data, reg, overrides)
    assert challenger["version"] == 2 and challenger["promoted"] is False, challenger["decision"]
    # The shipped gate: the inverted model fails the floors and the comparison with the champion,
    # and the run's state message names every failed check.
    failed = [c["name"] for c in challenger["decision"]["checks"] if not c["passed"]]
    assert {"min_roc_auc", "champion"} <= set(failed), challenger["decision"]
    assert challenger["state_message"] == "rejected spira v2: " + ", ".join(f"{n} check" for n in failed)
    assert "rejected" in _run_tags(run_id)
    assert [e.event for e in _model_events(run_id)] == ["spira.model.rejected"]
    registry = open_registry(reg)
    assert registry.champion("spira").version == 1
    assert registry.ledger("spira")[-1]["action"] == "reject"
    assert "reject" in _artifacts(run_id)["spira-validation-report"][0].data.lower()


def test_rollback_flow_moves_champion_back(first):
    registry = open_registry(first["reg"])
    if registry.champion("spira").version != 2:
        registry.promote("spira", 2, reason="test: make v2 champion")
    out = rollback_flow(registry_uri=str(first["reg"]), model_name="spira", reason="test rollback")
    assert out == {"model": "spira", "from": 2, "to": 1}
    assert registry.champion("spira").version == 1
    assert registry.ledger("spira")[-1]["action"] == "rollback"


def test_event_parameters_must_point_inside_the_watched_dataset():
    check_trigger(None, "s3://bucket/spira")
    check_trigger("s3://bucket/spira/batch/a.wav", "s3://bucket/spira")
    with pytest.raises(ValueError, match="outside the watched dataset"):
        check_trigger("s3://bucket/spira-other/a.wav", "s3://bucket/spira")
    with pytest.raises(ValueError, match="outside"):
        check_trigger("s3://other/spira/a.wav", "s3://bucket/spira")


def test_the_state_message_of_a_run_that_recorded_an_interrupted_decision():
    from flows.retrain import outcome_message
    from spira_lib.pipeline.contract import RunOutcome

    plain = RunOutcome(model="spira", version=4, skipped=True, promoted=None, metrics={})
    assert outcome_message(plain) == "nothing to train: spira v4 was already trained on this data"
    finished = plain.model_copy(update={"promoted": True})
    assert outcome_message(finished) == "nothing to train; recorded the interrupted run's decision: promoted spira v4"
    rejected = plain.model_copy(update={"promoted": False, "decision": {"checks": [{"name": "champion", "passed": False}]}})
    assert outcome_message(rejected) == "nothing to train; recorded the interrupted run's decision: rejected spira v4: champion check"

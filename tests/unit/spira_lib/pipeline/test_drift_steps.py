"""The retrain run's drift step: labelled clips added since the champion's snapshot vs its reference, and its AUC on them."""
from __future__ import annotations

import json
import uuid

import polars as pl

from spira_lib.dataset.manifest import MANIFEST_SCHEMA, manifest_to_bytes
from spira_lib.monitoring.run import REFERENCE_ARTIFACT, reference_artifact
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.contract import SplitRef
from spira_lib.pipeline.drift_steps import new_data_drift_step
from tests.unit.spira_lib.monitoring._drift_helpers import BASE, rows_for
from tests.unit.spira_lib.scoring._helpers import checkpoint, wav


def manifest(frame: pl.DataFrame, split: str) -> pl.DataFrame:
    cols = [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c) for c, t in MANIFEST_SCHEMA.items()]
    return frame.with_columns(pl.lit(split).alias("split")).select(cols)


def world(n_new: int, *, new_sex: str = "F", champion: bool = True, with_split: bool = True) -> tuple[RunSpec, SplitRef]:
    """A champion trained on 24 clips (a quarter of them men) and a new split with ``n_new`` more clips."""
    name = uuid.uuid4().hex[:8]
    spec = RunSpec.build(f"memory://data-{name}", f"memory://reg-{name}", overrides=BASE)
    ws = spec.workspace()
    old = [(f"old/seed-{i}.wav", wav(i)) for i in range(24)]
    new = [(f"new/seed-{i}.wav", wav(i)) for i in range(500, 500 + n_new)]
    for key, data in old + new:
        ws.data.put(key, data)
    old_rows, new_rows = manifest(rows_for(old), "train"), manifest(rows_for(new, sex=new_sex).with_columns(pl.lit(new_sex).alias("sex")), "train")
    if champion:
        blob = checkpoint(1)
        artifacts = {"model.pt": blob, REFERENCE_ARTIFACT: reference_artifact(ws, spec.config, old_rows, blob),
                     "report.json": json.dumps({"intervals": {"roc_auc": [0.82, 0.96]}}).encode()}
        if with_split:
            artifacts["split.parquet"] = manifest_to_bytes(old_rows)
        ws.registry.register("spira", artifacts, {"training_key": "a", "metrics": {"roc_auc": 0.9}})
        ws.registry.promote("spira", 1, reason="test champion")
    L.put_frame(ws.store, "splits/now.parquet", pl.concat([old_rows, new_rows]))
    split = SplitRef(snapshot_digest="d" * 64, split_digest="s" * 64, split_key="splits/now.parquet", quarantine_key="q", summary={})
    return spec, split


def test_new_clips_from_a_different_population_shift_the_mix_and_the_champion_is_scored_on_them():
    spec, split = world(16, new_sex="M")
    check = new_data_drift_step(spec, split)
    assert check.source == "retrain" and check.n_clips == 16  # only the clips the champion never saw
    sex = next(c for c in check.report.categorical if c.name == "sex")
    assert sex.ref_counts == {"F": 18, "M": 6} and sex.cur_counts == {"F": 0, "M": 16} and sex.moved
    assert check.drifted and "sex" in check.report.moved
    label = next(c for c in check.report.categorical if c.name == "label")
    assert label.moved is False  # same class balance
    concept = check.concept
    assert (concept.n_patients, concept.n_controls) == (8, 8)
    assert concept.roc_auc is not None and concept.interval[0] <= concept.roc_auc <= concept.interval[1]
    assert (concept.registered_roc_auc, concept.registered_interval) == (0.9, [0.82, 0.96])
    assert "ROC-AUC on 16 new labelled clips" in concept.message and "0.900 at registration" in concept.message


def test_too_few_new_clips_are_said_in_words():
    spec, split = world(3)
    check = new_data_drift_step(spec, split)
    assert check.status == "too-few" and check.report is None
    assert check.concept.roc_auc is None and check.concept.message.startswith("too few new labelled clips")


def test_without_a_champion_or_its_training_split_nothing_is_compared():
    spec, split = world(10, champion=False)
    assert new_data_drift_step(spec, split).status == "no-champion"
    spec, split = world(10, with_split=False)
    check = new_data_drift_step(spec, split)
    assert check.status == "no-reference" and "no training split" in check.message

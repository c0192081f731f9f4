"""The run contract: a validated spec, immutable step results, cache identities without timings."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from spira_lib.config import ConfigError
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.contract import FeaturesReady, SnapshotRef


def test_spec_from_uris_and_overrides_names_a_bad_field(tmp_path):
    spec = RunSpec.build(tmp_path / "d", tmp_path / "r", overrides={"training.epochs": 3})
    assert spec.config.training.epochs == 3 and spec.data_uri == str(tmp_path / "d")
    with pytest.raises(ConfigError, match="config field 'training.lr'"):
        RunSpec.build(tmp_path / "d", tmp_path / "r", overrides={"training.lr": -1})
    with pytest.raises(ValidationError):
        RunSpec(data_uri="d", registry_uri="r", unknown=1)


def test_results_are_immutable_and_round_trip_as_json():
    snap = SnapshotRef(digest="a" * 64, manifest_key="k", n_rows=2, csvs=["x.csv"])
    with pytest.raises(ValidationError):
        snap.n_rows = 3
    assert SnapshotRef.model_validate_json(snap.model_dump_json()) == snap


def test_identity_of_a_spec_and_of_features():
    a = RunSpec.build("d1", "r1")
    assert a.cache_identity() == RunSpec.build("d2", "r2").cache_identity()  # URIs do not count
    assert a.cache_identity() != RunSpec.build("d1", "r1", overrides={"training.seed": 1}).cache_identity()
    f = FeaturesReady(extractor_key="e", aug_key="a", noise_files=1, seconds=3.0)
    assert f.cache_identity() == {"extractor_key": "e", "aug_key": "a"}

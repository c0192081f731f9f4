"""ProfileTable, the stored ReferenceProfile (size, JSON round trip) and categorical counts."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from spira_lib.monitoring.profile import FEATURE_NAMES, PROFILE_VERSION
from spira_lib.monitoring.reference import (
    EmbeddingSample,
    FeatureSample,
    ProfileTable,
    ReferenceProfile,
    categorical_counts,
)


def random_table(n: int, seed: int = 0) -> ProfileTable:
    rng = np.random.default_rng(seed)
    profiles = {f"clip{i}": {k: float(rng.normal(10, 3)) for k in FEATURE_NAMES} for i in range(n)}
    profiles["clip0"]["f0_median_hz"] = float("nan")
    return ProfileTable.from_profiles(profiles)


def test_profile_table_has_one_column_per_feature_and_drops_nan_on_read():
    t = random_table(20)
    assert t.frame.columns == ["clip", *FEATURE_NAMES]
    assert len(t) == 20
    assert t.values("f0_median_hz").size == 19
    assert t.values("rms_dbfs").size == 20


def test_small_reference_keeps_every_value_large_one_keeps_order_statistics():
    x = np.random.default_rng(1).normal(size=5000)
    small = FeatureSample.from_values(x[:300], max_values=1000)
    assert small.exact and small.n == 300 and small.values == sorted(small.values) and len(small.values) == 300
    big = FeatureSample.from_values(x, max_values=1000)
    assert not big.exact and big.n == 5000 and len(big.values) == 1000
    assert big.values == sorted(big.values)
    assert np.median(big.values) == pytest.approx(np.median(x), abs=0.02)
    assert big.scale == pytest.approx(1.0, rel=0.05)  # IQR / 1.349 of a standard normal
    # Constant data: the IQR and SD are 0, so the scale falls back to 1 instead of dividing by zero.
    assert FeatureSample.from_values(np.ones(50)).scale == 1.0


def test_reference_json_round_trip_keeps_everything():
    emb = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
    ref = ReferenceProfile.build(random_table(50), categorical={"sex": {"F": 20, "M": 30}}, embeddings=emb, embedding_model="sha:abc")
    back = ReferenceProfile.from_json(ref.to_json())
    assert back == ref
    assert back.features["f0_median_hz"].n == 49 and back.features["f0_median_hz"].n_missing == 1
    np.testing.assert_allclose(back.embeddings.array(), emb, rtol=1e-3, atol=1e-3)  # float16
    assert back.profile_version == PROFILE_VERSION


def test_a_reference_of_thousands_of_clips_stays_small():
    emb = np.random.default_rng(3).normal(size=(5000, 100))
    ref = ReferenceProfile.build(random_table(5000), embeddings=emb)
    size = len(ref.to_json().encode())
    assert ref.embeddings.shape == (500, 100) and ref.embeddings.n_total == 5000
    assert size < 400_000, size


def test_reference_from_another_profile_version_is_refused():
    doc = json.loads(ReferenceProfile.build(random_table(10)).to_json())
    doc["profile_version"] = PROFILE_VERSION + 1
    with pytest.raises(ValueError, match="recompute"):
        ReferenceProfile.from_json(json.dumps(doc))


def test_embedding_sample_rejects_non_matrices():
    with pytest.raises(ValueError):
        EmbeddingSample.from_array(np.zeros(5))


def test_categorical_counts_bands_ages_and_counts_unknowns():
    frame = pl.DataFrame({
        "label": [0, 1, 1, 0], "sex": ["F", "M", None, "F"], "age": [25.0, 40.0, 61.0, None],
        "hospital": ["A", "A", "B", ""],
    })
    counts = categorical_counts(frame)
    assert counts["label"] == {"0": 2, "1": 2}
    assert counts["sex"] == {"F": 2, "M": 1, "unknown": 1}
    assert counts["age_band"] == {"0-40": 1, "40-60": 1, "60-200": 1, "unknown": 1}
    assert counts["hospital"] == {"A": 2, "B": 1, "unknown": 1}
    assert categorical_counts(frame.select("label")) == {"label": {"0": 2, "1": 2}}

"""Damaged feature files are detected (size and checksum) and recomputed; intact ones are reused.

No servers: the feature store over a memory store and over a local folder.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from spira_demo import synth_clip, synth_noise
from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import AugmentConfig, EvaluationConfig, FeatureConfig
from spira_lib.feature_store import TRAILER_LEN, DamagedFeatures, FeatureStore, VariantPlan, check_sealed
from spira_lib.features import FeatureExtractor
from spira_lib.noise import NoiseBank
from tests.unit.spira_lib._audio import SR, wav_bytes


@pytest.fixture(params=["memory", "local"])
def world(request, tmp_path):
    data = MemoryStore()
    side = MemoryStore() if request.param == "memory" else LocalFolderStore(tmp_path / "side")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(4):
        raw = wav_bytes(synth_clip(rng, i % 2, duration_s=2.0))
        data.put(f"audio/{i}.wav", raw)
        rows.append({"key": f"audio/{i}.wav", "sha256": hashlib.sha256(raw).hexdigest(), "split": "eval", "label": i % 2})
    data.put("noises/n.wav", wav_bytes(synth_noise(rng, "babble", SR, 3.0)))
    noise = NoiseBank.load(data, "noises", SR)
    plan = VariantPlan.build(AugmentConfig(noisy_copies=0), EvaluationConfig(), noise)
    ex = FeatureExtractor(FeatureConfig())
    return data, side, rows, noise, plan, ex


def _damage(side, key: str, how: str) -> None:
    raw = side.get(key)
    if how == "truncated":
        bad = raw[: len(raw) // 2]
    elif how == "bit-flip":
        bad = bytearray(raw)
        bad[len(raw) - TRAILER_LEN - 9] ^= 0x40  # inside the array data, not the header
        bad = bytes(bad)
    elif how == "extended":
        bad = raw + b"\0" * 16
    else:  # "empty"
        bad = b""
    side.put(key, bad)


@pytest.mark.parametrize("how", ["truncated", "bit-flip", "extended", "empty"])
def test_damaged_file_is_detected_and_recomputed(world, how):
    data, side, rows, noise, plan, ex = world
    first = FeatureStore(side)
    assert first.ensure(data, rows, ex, plan, noise).computed == 4
    victim = rows[2]["sha256"]
    key = first.key(ex.key, victim, "clean")
    original = np.array(first.get(ex.key, victim))
    _damage(side, key, how)

    fresh = FeatureStore(side)  # a new process: nothing cached in memory
    with pytest.raises(DamagedFeatures, match="is damaged"):
        fresh.get(ex.key, victim)
    stats = fresh.ensure(data, rows, ex, plan, noise)
    assert (stats.computed, stats.reused) == (1, 3)  # only the damaged one
    np.testing.assert_array_equal(FeatureStore(side).get(ex.key, victim), original)


def test_files_are_plain_npy_and_files_without_checksum_are_still_read(world):
    data, side, rows, noise, plan, ex = world
    fs = FeatureStore(side)
    fs.ensure(data, rows, ex, plan, noise)
    key = fs.key(ex.key, rows[0]["sha256"], "clean")
    sealed = side.get(key)
    arr = np.load(io.BytesIO(sealed), allow_pickle=False)  # numpy ignores the trailer
    legacy = sealed[:-TRAILER_LEN]  # as written before checksums existed
    check_sealed(legacy, key)
    side.put(key, legacy)
    fresh = FeatureStore(side)
    np.testing.assert_array_equal(fresh.get(ex.key, rows[0]["sha256"]), arr)
    assert fresh.ensure(data, rows, ex, plan, noise).computed == 0
    side.put(key, legacy[:-4])  # a truncated legacy file fails the size check
    with pytest.raises(DamagedFeatures, match="truncated or extended"):
        FeatureStore(side).get(ex.key, rows[0]["sha256"])

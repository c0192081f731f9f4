"""The content-addressed feature store, its variants and the clip sources over it."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import AugmentConfig, EvaluationConfig, FeatureConfig
from spira_demo import synth_clip, synth_noise
from spira_lib.feature_store import FeatureStore, ShortcutClipSource, StoreClipSource, VariantPlan
from spira_lib.noise import NoiseBank
from spira_lib.features import FeatureExtractor
from tests.unit.spira_lib._audio import SR, wav_bytes


def _dataset(store, n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        wave = synth_clip(rng, label, duration_s=2.0)
        key = f"audio/c{seed}-{i}.wav"
        data = wav_bytes(wave)
        store.put(key, data)
        split = ["train", "train", "test", "test", "eval", "eval"][i % 6]
        rows.append({"key": key, "sha256": hashlib.sha256(data).hexdigest(), "split": split, "label": label})
    for k in range(2):
        store.put(f"noises/n{k}.wav", wav_bytes(synth_noise(rng, "babble", SR, 3.0)))
    return rows


@pytest.fixture
def setup():
    data, side = MemoryStore(), MemoryStore()
    rows = _dataset(data)
    noise = NoiseBank.load(data, "noises", SR)
    plan = VariantPlan.build(AugmentConfig(noisy_copies=2), EvaluationConfig(), noise)
    return data, FeatureStore(side), rows, noise, plan


def test_ensure_computes_the_variants_each_split_needs(setup):
    data, fs, rows, noise, plan = setup
    ex = FeatureExtractor(FeatureConfig())
    stats = fs.ensure(data, rows, ex, plan, noise)
    # train clips: clean + 2 noise copies; test controls: clean + shortcut; the rest: clean
    expected = sum(len(plan.variants_for(r["split"], r["label"])) for r in rows)
    assert stats.computed == expected == 2 * 3 + 2 + 1 + 2
    assert stats.failed == [] and stats.reused == 0
    train = rows[0]
    clean = fs.get(ex.key, train["sha256"], "clean")
    noisy = fs.get(ex.key, train["sha256"], plan.aug_variant(1))
    assert clean.shape == noisy.shape and not np.allclose(clean, noisy)


def test_second_ensure_reuses_everything_and_new_clips_only_are_computed(setup):
    data, fs, rows, noise, plan = setup
    ex = FeatureExtractor(FeatureConfig())
    first = fs.ensure(data, rows, ex, plan, noise)
    again = fs.ensure(data, rows, ex, plan, noise)
    assert again.computed == 0 and again.reused == first.computed
    more = _dataset(data, n=2, seed=1)
    third = fs.ensure(data, rows + more, ex, plan, noise)
    assert third.computed == sum(len(plan.variants_for(r["split"], r["label"])) for r in more)


def test_noise_copies_are_deterministic_per_clip_not_per_order(setup):
    data, fs, rows, noise, plan = setup
    ex = FeatureExtractor(FeatureConfig())
    fs.ensure(data, rows, ex, plan, noise, workers=2)
    other = FeatureStore(MemoryStore())
    other.ensure(data, list(reversed(rows)), ex, plan, noise, workers=1)
    sha = rows[0]["sha256"]
    np.testing.assert_array_equal(fs.get(ex.key, sha, plan.aug_variant(2)), other.get(ex.key, sha, plan.aug_variant(2)))


def test_unreadable_clip_is_reported_not_raised(setup):
    data, fs, rows, noise, plan = setup
    data.put(rows[0]["key"], b"RIFF garbage")
    stats = fs.ensure(data, rows, FeatureExtractor(FeatureConfig()), plan, noise)
    assert [f["file"] for f in stats.failed] == [rows[0]["key"]]
    assert stats.computed > 0


def test_no_noise_means_no_augmentation_and_no_shortcut(setup):
    data, fs, rows, _noise, _plan = setup
    empty = NoiseBank.load(data, "nothing-here", SR)
    plan = VariantPlan.build(AugmentConfig(noisy_copies=2), EvaluationConfig(), empty)
    assert plan.noisy_copies == 0 and plan.shortcut_key is None
    assert plan.variants_for("train", 1) == ["clean"] and plan.variants_for("test", 0) == ["clean"]


def test_clip_sources_over_the_store(setup, tmp_path):
    data, _fs, rows, noise, plan = setup
    fs = FeatureStore(LocalFolderStore(tmp_path))
    ex = FeatureExtractor(FeatureConfig())
    fs.ensure(data, rows, ex, plan, noise)
    train = [r for r in rows if r["split"] == "train"]
    src = StoreClipSource(fs, ex.key, [r["sha256"] for r in train], [r["label"] for r in train], plan, augmented=True)
    assert len(src) == 2 and src.n_variants(0) == 3
    assert isinstance(fs.get(ex.key, train[0]["sha256"]), np.memmap)  # local stores stream from disk
    test = [r for r in rows if r["split"] == "test"]
    short = ShortcutClipSource(fs, ex.key, [r["sha256"] for r in test], [r["label"] for r in test], plan)
    clean = StoreClipSource(fs, ex.key, [r["sha256"] for r in test], [r["label"] for r in test], plan)
    for i, r in enumerate(test):
        same = np.array_equal(short.features(i), clean.features(i))
        assert same == (r["label"] == 1)  # only controls get noise in the shortcut check

"""Held-out ward noise: the split by content, the keys that follow it, augmentation with the default options."""
from __future__ import annotations

import numpy as np

from spira_lib.config import AugmentConfig, EvaluationConfig
from spira_lib.feature_store import VariantPlan
from spira_lib.noise import NoiseBank, augment_wave


def _bank(n: int) -> NoiseBank:
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(1600).astype(np.float32) for _ in range(n)]
    return NoiseBank(clips, [f"n{i}.wav" for i in range(n)], "d", [f"{i:064x}"[::-1] for i in range(n)])


def test_noise_split_is_by_content_and_disjoint():
    bank = _bank(6)
    aug, check = bank.split(0.34)
    assert len(aug) == 4 and len(check) == 2
    assert not set(aug.hashes) & set(check.hashes)
    # Same contents in another order and under other names: same split.
    order = [3, 1, 5, 0, 2, 4]
    other = NoiseBank([bank.clips[i] for i in order], [f"x{i}" for i in order], "d", [bank.hashes[i] for i in order])
    aug2, check2 = other.split(0.34)
    assert sorted(check2.hashes) == sorted(check.hashes) and check2.digest == check.digest


def test_noise_split_zero_or_single_file_shares_the_bank():
    bank = _bank(3)
    assert bank.split(0.0) == (bank, bank)
    one = _bank(1)
    assert one.split(0.5) == (one, one)


def test_variant_plan_keys_follow_the_parts():
    bank = _bank(6)
    old = VariantPlan.build(AugmentConfig(holdout_noise_fraction=0.0), EvaluationConfig(), bank)
    new = VariantPlan.build(AugmentConfig(holdout_noise_fraction=0.34), EvaluationConfig(), bank)
    assert old.aug_key != new.aug_key and old.shortcut_key != new.shortcut_key


def test_augment_wave_default_matches_plain_noise_mix():
    bank = _bank(4)
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    spira = AugmentConfig(snr_db_min=0.0, snr_db_max=15.0, snr_reference="clip", noise_prob=1.0,
                          synthetic_noise_prob=0.0, channel_prob=0.0)
    a = augment_wave(wave, 16000, np.random.default_rng(5), spira, bank)
    b = bank.mix(wave, np.random.default_rng(5), 0.0, 15.0)
    np.testing.assert_array_equal(a, b)

"""Batch augmentations."""
from __future__ import annotations

import numpy as np

from spira_lib.config import AugmentConfig
from spira_lib.training.augment import spec_augment as _spec_augment


def test_spec_augment_masks_one_time_band_and_one_frequency_band():
    rng = np.random.default_rng(0)
    batch = np.ones((64, 80, 8), np.float32)
    _spec_augment(batch, AugmentConfig(specaugment=True, time_mask_frames=10, freq_mask_bins=3), rng)
    assert (batch == 0).any() and (batch == 1).any()
    for w in batch:
        zero_rows = np.flatnonzero((w == 0).all(axis=1))
        zero_cols = np.flatnonzero((w == 0).all(axis=0))
        assert len(zero_rows) <= 10 and len(zero_cols) <= 3
        for idx in (zero_rows, zero_cols):  # each mask is one contiguous band
            assert len(idx) == 0 or idx[-1] - idx[0] == len(idx) - 1
        # Every zero lies in the time band or the frequency band.
        zero = w == 0
        zero[zero_rows, :] = False
        zero[:, zero_cols] = False
        assert not zero.any()

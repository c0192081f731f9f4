"""Batch-level augmentations applied inside the training loop (in place, seeded)."""
from __future__ import annotations

import numpy as np

from spira_lib.config import AugmentConfig


def spec_augment(batch: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> None:
    """In place: one time mask and one frequency mask per window, widths uniform in [0, max]."""
    b, t, f = batch.shape
    if aug.time_mask_frames > 0:
        w = rng.integers(0, min(aug.time_mask_frames, t) + 1, size=b)
        s = rng.integers(0, t - w + 1)
        pos = np.arange(t)[None, :]
        batch[(pos >= s[:, None]) & (pos < (s + w)[:, None])] = 0.0
    if aug.freq_mask_bins > 0:
        w = rng.integers(0, min(aug.freq_mask_bins, f) + 1, size=b)
        s = rng.integers(0, f - w + 1)
        pos = np.arange(f)[None, :]
        mask = (pos >= s[:, None]) & (pos < (s + w)[:, None])  # [b, f]
        batch *= ~mask[:, None, :]

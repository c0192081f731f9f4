"""Channel augmentation and SNR against active speech."""
from __future__ import annotations

import numpy as np
import pytest

from spira_lib.channels import CHANNEL_KINDS, active_rms, mix_at_active_snr, random_channel


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
def test_random_channel_keeps_length_and_range(kind):
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.3
    y = random_channel(x, 16000, np.random.default_rng(1), kind)
    assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0 and np.isfinite(y).all()


def test_active_snr_ignores_pauses():
    rng = np.random.default_rng(0)
    speech = np.concatenate([rng.standard_normal(16000) * 0.1, np.zeros(16000)]).astype(np.float32)
    noise = rng.standard_normal(40000).astype(np.float32)
    mixed = mix_at_active_snr(speech, noise, 10.0, np.random.default_rng(1), 16000)
    added = mixed - speech
    ratio = 20 * np.log10(active_rms(speech, 16000) / np.sqrt(np.mean(added**2)))
    assert abs(ratio - 10.0) < 0.5

"""The ward-noise bank."""
from __future__ import annotations

import numpy as np

from spira_lib.adapters.memory import MemoryStore
from spira_demo import synth_noise
from spira_lib.noise import NoiseBank
from tests.unit.spira_lib._audio import SR, wav_bytes


def test_noise_bank_skips_bad_files():
    store = MemoryStore()
    store.put("noises/good.wav", wav_bytes(synth_noise(np.random.default_rng(0), "fan", SR, 1.0)))
    store.put("noises/bad.wav", b"not audio")
    store.put("noises/readme.txt", b"ignored")
    bank = NoiseBank.load(store, "noises", SR)
    assert bank.names == ["noises/good.wav"]

"""The drift benchmark's injected shifts do what their names say (measured with audio_profile)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from bench import drift as bench
from spira_demo import draw_profile, synth_clip
from spira_lib.monitoring.profile import audio_profile

SR = 16000


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synth_clip(np.random.default_rng(0), 1, SR, 5.0)[:, None].astype(np.float64)


@pytest.fixture(scope="module")
def bank() -> list[np.ndarray]:
    return bench._noise_bank(n=2)


def profile(frames: np.ndarray, sr: int = SR) -> dict[str, float]:
    data = bench._wav(frames, sr)
    assert sf.info(io.BytesIO(data)).subtype == "PCM_16"
    return audio_profile(data)


def test_gain_shift_lowers_every_level_by_12_db(clip, bank):
    a, b = profile(clip), profile(bench._shifted("gain_-12db", clip, SR, np.random.default_rng(0), bank))
    assert b["rms_dbfs"] - a["rms_dbfs"] == pytest.approx(-12.0, abs=0.1)
    assert b["spectral_centroid_hz"] == pytest.approx(a["spectral_centroid_hz"], rel=0.02)


def test_snr_shift_multiplies_the_noise_power_by_ten(clip, bank):
    rng = np.random.default_rng(1)
    noisy = bench._shifted("snr_-10db", clip, SR, rng, bank)
    before = bench._noise_power(clip.mean(axis=1), SR)
    added = noisy - clip
    assert np.mean(added**2) == pytest.approx(9.0 * before, rel=0.01)
    assert profile(noisy)["snr_db"] < profile(clip)["snr_db"] - 3.0


@pytest.mark.parametrize("sr", [16000, 22050, 44100])
def test_band_shifts_remove_what_they_should(sr):
    x = np.random.default_rng(2).normal(0, 0.05, (sr * 2, 2))
    flat = audio_profile((x.astype(np.float32), sr))
    tel = audio_profile((bench._telephone(x, sr).astype(np.float32), sr))
    low = audio_profile((bench._resample_8k(x, sr).astype(np.float32), sr))
    assert tel["high_band_db"] < flat["high_band_db"] - 10 and tel["low_band_db"] < flat["low_band_db"] - 5
    assert low["high_band_db"] < flat["high_band_db"] - 15 and low["channels"] == 2 and low["duration_s"] == pytest.approx(2.0)


def test_other_voice_raises_pitch_and_formants():
    a = draw_profile(np.random.default_rng(3), 0)
    b = bench._other_voice(draw_profile)(np.random.default_rng(3), 0)
    assert b.f0_hz == pytest.approx(a.f0_hz * bench.VOICE_F0)
    assert b.formant_scale == pytest.approx(a.formant_scale * bench.VOICE_FORMANT)
    assert (b.label, b.sex, b.age, b.severity) == (a.label, a.sex, a.age, a.severity)


def test_unknown_shift_is_an_error(clip, bank):
    with pytest.raises(ValueError):
        bench._shifted("reverb", clip, SR, np.random.default_rng(0), bank)

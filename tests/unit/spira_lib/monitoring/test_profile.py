"""audio_profile on synthetic signals whose true values are known."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from spira_lib.audio import AudioError
from spira_lib.monitoring.profile import FEATURE_NAMES, PROFILE_FEATURES, UNITS, audio_profile

SR = 16000


def tone(freq: float, dbfs: float, seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    # RMS of a sine is amplitude / sqrt(2).
    return (10 ** (dbfs / 20) * math.sqrt(2) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_every_feature_is_documented_with_a_unit():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == len(PROFILE_FEATURES)
    assert all(UNITS[n] for n in FEATURE_NAMES)
    p = audio_profile((tone(220, -20), SR))
    assert list(p) == list(FEATURE_NAMES)
    assert all(isinstance(v, float) for v in p.values())


def test_a_minus_20_dbfs_tone_measures_minus_20_dbfs():
    p = audio_profile((tone(220, -20), SR))
    assert p["rms_dbfs"] == pytest.approx(-20.0, abs=0.05)
    assert p["active_level_dbfs"] == pytest.approx(-20.0, abs=0.1)
    assert p["peak_dbfs"] == pytest.approx(-20.0 + 20 * math.log10(math.sqrt(2)), abs=0.05)
    assert p["clipped_fraction"] == 0.0
    assert p["duration_s"] == pytest.approx(4.0)
    assert p["sample_rate_hz"] == SR and p["channels"] == 1
    # A stationary signal is all "speech": no pauses.
    assert p["speech_ratio"] == pytest.approx(1.0)
    assert p["pause_count"] == 0


@pytest.mark.parametrize("freq", [90.0, 150.0, 220.0, 310.0])
def test_f0_of_a_tone_and_spectral_centroid_sit_at_its_frequency(freq):
    p = audio_profile((tone(freq, -20), SR))
    assert p["f0_median_hz"] == pytest.approx(freq, rel=0.01)
    assert p["spectral_centroid_hz"] == pytest.approx(freq, rel=0.05)


def test_f0_of_a_pulse_train_is_its_rate_not_an_octave_off():
    x = np.zeros(SR * 3, dtype=np.float32)
    x[:: SR // 125] = 0.5  # 125 Hz pulses: strong harmonics at 250, 375, ...
    x = signal.lfilter([1.0], [1.0, -0.9], x).astype(np.float32)
    assert audio_profile((x, SR))["f0_median_hz"] == pytest.approx(125.0, rel=0.02)


def test_noise_has_no_pitch():
    x = np.random.default_rng(0).normal(0, 0.05, SR * 3).astype(np.float32)
    assert math.isnan(audio_profile((x, SR))["f0_median_hz"])


def test_gain_moves_the_levels_by_exactly_the_gain():
    x = tone(200, -20) + np.random.default_rng(1).normal(0, 0.001, SR * 4).astype(np.float32)
    a, b = audio_profile((x, SR)), audio_profile((x * 10 ** (-12 / 20), SR))
    for k in ("rms_dbfs", "active_level_dbfs", "peak_dbfs", "noise_floor_dbfs"):
        assert b[k] - a[k] == pytest.approx(-12.0, abs=0.05), k
    for k in ("snr_db", "speech_ratio", "spectral_centroid_hz", "f0_median_hz"):
        assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-6), k


def bursts(noise_db: float = -70.0) -> np.ndarray:
    """Five 0.6 s tone bursts separated by four 0.4 s gaps, plus 0.4 s of silence at each end, over a noise floor."""
    rng = np.random.default_rng(2)
    on, off = int(0.6 * SR), int(0.4 * SR)
    parts = [np.zeros(off)]
    for k in range(5):
        parts += [tone(200, -20, 0.6), np.zeros(off)]
    x = np.concatenate(parts)
    return (x + rng.normal(0, 10 ** (noise_db / 20), x.size)).astype(np.float32)


def test_silence_gaps_give_the_pause_ratio_and_count():
    p = audio_profile((bursts(), SR))
    # Speech span: first to last burst = 5 x 0.6 s on + 4 x 0.4 s off -> 3.0 / 4.6 active.
    assert p["speech_ratio"] == pytest.approx(3.0 / 4.6, abs=0.02)
    assert p["pause_count"] == 4
    assert p["noise_floor_dbfs"] == pytest.approx(-70.0, abs=1.0)
    assert p["snr_db"] == pytest.approx(50.0, abs=1.5)
    assert p["active_level_dbfs"] == pytest.approx(-20.0, abs=0.5)


def test_a_raised_noise_floor_lowers_the_snr():
    quiet, noisy = audio_profile((bursts(-70.0), SR)), audio_profile((bursts(-50.0), SR))
    assert quiet["snr_db"] - noisy["snr_db"] == pytest.approx(20.0, abs=1.5)
    assert noisy["pause_count"] == 4  # the pauses are still found 30 dB below speech


def test_clipping_fraction_of_an_overdriven_sine():
    t = np.arange(SR * 2) / SR
    x = np.clip(2.0 * np.sin(2 * np.pi * 100 * t), -1.0, 1.0).astype(np.float32)
    expected = 1.0 - 2.0 / np.pi * np.arcsin(0.999 / 2.0)  # share of time |2 sin| >= 0.999
    assert audio_profile((x, SR))["clipped_fraction"] == pytest.approx(expected, abs=0.005)


def test_one_clipped_channel_counts_and_channels_are_reported():
    left = tone(200, -20)
    right = np.clip(left * 20, -1, 1)
    p = audio_profile((np.stack([left, right], axis=1), SR))
    assert p["channels"] == 2
    assert p["clipped_fraction"] > 0.3


def test_band_features_see_a_telephone_band_and_a_low_pass():
    rng = np.random.default_rng(3)
    white = rng.normal(0, 0.05, SR * 3)
    p = audio_profile((white.astype(np.float32), SR))
    assert p["spectral_centroid_hz"] == pytest.approx(4000.0, rel=0.03)  # flat up to 8 kHz
    assert p["high_band_db"] == pytest.approx(10 * math.log10(0.5), abs=0.3)
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=SR, output="sos")
    tel = audio_profile((signal.sosfilt(sos, white).astype(np.float32), SR))
    assert tel["high_band_db"] < -20 and tel["low_band_db"] < -20
    assert 1500 < tel["spectral_centroid_hz"] < 2200


def test_rates_give_comparable_spectral_features():
    a = audio_profile((tone(440, -20, sr=16000), 16000))
    b = audio_profile((tone(440, -20, sr=44100), 44100))
    assert b["sample_rate_hz"] == 44100
    assert b["spectral_centroid_hz"] == pytest.approx(a["spectral_centroid_hz"], rel=0.02)
    assert b["f0_median_hz"] == pytest.approx(a["f0_median_hz"], rel=0.01)


def test_bytes_and_frames_give_the_same_profile():
    x = bursts(-60.0)
    buf = io.BytesIO()
    sf.write(buf, x, SR, subtype="PCM_16", format="WAV")
    from_bytes, from_frames = audio_profile(buf.getvalue(), name="x.wav"), audio_profile((x, SR))
    for k in FEATURE_NAMES:
        assert from_bytes[k] == pytest.approx(from_frames[k], rel=0.01, abs=0.05), k


def test_empty_and_unreadable_audio():
    p = audio_profile((np.zeros((0, 1), dtype=np.float32), SR))
    assert p["duration_s"] == 0 and p["channels"] == 1 and math.isnan(p["rms_dbfs"])
    with pytest.raises(AudioError):
        audio_profile(b"not audio", name="bad.wav")
    with pytest.raises(ValueError):
        audio_profile((np.zeros((2, 2, 2)), SR))


def test_digital_silence_is_floored_not_infinite():
    p = audio_profile((np.zeros(SR, dtype=np.float32), SR))
    assert p["rms_dbfs"] == -120.0 and p["peak_dbfs"] == -120.0
    assert all(not math.isinf(v) for v in p.values())


def test_pause_tonality_sees_a_beep_in_the_pauses_not_broadband_noise():
    plain = bursts(-50.0)
    beeped = plain.copy()
    t = np.arange(beeped.size) / SR
    beep = (t % 1.0) < 0.1  # a 100 ms, 1 kHz monitor beep every second, 10 dB above the floor on average
    beeped += (beep * 10 ** (-40 / 20) * math.sqrt(2) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    a, b = audio_profile((plain, SR)), audio_profile((beeped, SR))
    assert a["pause_tonality_db"] < 4.0
    assert b["pause_tonality_db"] > a["pause_tonality_db"] + 8.0
    # The broadband floor statistic barely moves: that is why the tonality feature exists.
    assert abs(b["noise_floor_dbfs"] - a["noise_floor_dbfs"]) < 3.0
    # A stationary tone has no pauses to look at.
    assert math.isnan(audio_profile((tone(220, -20), SR))["pause_tonality_db"])

"""Audio decoding, quality checks, preprocessing and noise mixing."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from spira_lib.audio import AudioError, check_quality, decode_audio, mix_at_snr, preprocess, read_native
from spira_lib.config import AudioConfig


def encode(wave: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = 16000, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Noise bursts under a syllable-rate envelope: has loud and quiet frames like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.2 * envelope * rng.standard_normal(t.size)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


# --------------------------------------------------------------------------- decode


def test_decode_resamples_44k_stereo_to_16k_mono():
    left, right = tone(1.0, 44100, amp=0.6), tone(1.0, 44100, amp=0.2)
    data = encode(np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    wave, orig_sr = decode_audio(data, target_sr=16000, name="a.wav")
    assert orig_sr == 44100
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape[0] == 16000
    # Downmix by mean: amplitude (0.6 + 0.2) / 2 = 0.4, so RMS = 0.4 / sqrt(2).
    middle = wave[1000:-1000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)


def test_decode_keeps_samples_when_rate_matches():
    x = tone(0.5, 16000)
    wave, orig_sr = decode_audio(encode(x, 16000, subtype="FLOAT"), target_sr=16000)
    assert orig_sr == 16000
    np.testing.assert_array_equal(wave, x)


def test_decode_upsamples_flac():
    wave, orig_sr = decode_audio(encode(tone(0.5, 8000), 8000, "FLAC"), target_sr=16000)
    assert orig_sr == 8000 and wave.shape[0] == 8000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_rejects_nan_and_inf_samples(bad):
    x = tone(0.5)
    x[100] = bad
    with pytest.raises(AudioError, match=r"1 of 8000 samples are NaN or infinite"):
        decode_audio(encode(x, 16000, subtype="FLOAT"), target_sr=16000, name="bad.wav")


def test_nan_is_caught_before_resampling():
    x = tone(0.5, 44100)
    x[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        decode_audio(encode(x, 44100, subtype="FLOAT"), target_sr=16000)


def test_decode_rejects_empty_bytes_with_name():
    with pytest.raises(AudioError, match=r"^x\.wav: empty file"):
        decode_audio(b"", target_sr=16000, name="x.wav")


def test_decode_rejects_garbage():
    with pytest.raises(AudioError, match="unreadable audio"):
        decode_audio(b"this is not audio at all" * 10, target_sr=16000)


def test_decode_rejects_truncated_wav():
    data = encode(tone(1.0), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="truncated WAV"):
        decode_audio(data[: len(data) // 2], target_sr=16000)


def test_decode_rejects_truncated_flac():
    data = encode(tone(1.0), 16000, "FLAC")
    with pytest.raises(AudioError, match="unreadable|truncated"):
        decode_audio(data[: len(data) // 2], target_sr=16000)


def test_zero_frame_wav_decodes_to_empty_and_fails_quality():
    wave, sr = decode_audio(encode(np.zeros(0, np.float32), 16000), target_sr=16000)
    assert wave.size == 0 and sr == 16000
    assert check_quality(wave, 16000, AudioConfig()).message == "zero-length clip (no audio samples)"


def test_read_native_keeps_channels():
    frames, sr = read_native(encode(np.zeros((800, 2), np.float32) + 0.1, 8000))
    assert frames.shape == (800, 2) and sr == 8000


# --------------------------------------------------------------------------- quality


def test_quality_accepts_a_normal_clip():
    assert check_quality(tone(4.5), 16000, AudioConfig()) is None


def test_quality_reports_short_clip_in_plain_words():
    reason = check_quality(tone(2.1), 16000, AudioConfig())
    assert reason.code == "too_short" and reason.message == "clip is 2.1 s, shorter than the 4.0 s window"


def test_quality_short_clip_just_under_the_window_is_not_shown_as_equal():
    reason = check_quality(tone(3.996), 16000, AudioConfig()).message
    assert reason == "clip is 3.996 s, shorter than the 4.0 s window"


def test_quality_reports_near_silence():
    reason = check_quality(tone(4.5, amp=1e-4), 16000, AudioConfig())  # peak -80 dBFS
    assert reason is not None and reason.code == "silent" and reason.message.startswith("near-silent clip: peak -80.0 dBFS")
    assert "near-silent" in check_quality(np.zeros(16000 * 5, np.float32), 16000, AudioConfig()).message


def test_quality_reports_clipping_fraction():
    x = np.clip(tone(4.5, amp=1.5), -1, 1)
    problem = check_quality(x, 16000, AudioConfig())
    expected = np.mean(np.abs(x) >= 0.999)
    assert problem is not None and problem.code == "clipped"
    reason = problem.message
    assert reason.startswith("clipped: ")
    assert f"{expected:.1%}" in reason


def test_quality_allows_clipping_below_the_limit():
    x = tone(4.5)
    x[:10] = 1.0  # 10 of 72000 samples: far below 1%
    assert check_quality(x, 16000, AudioConfig()) is None


def test_quality_sees_a_clipped_channel_in_stereo():
    left = np.clip(tone(4.5, amp=1.5), -1, 1)
    right = tone(4.5, amp=0.1)
    assert check_quality(np.stack([left, right], 1), 16000, AudioConfig()).message.startswith("clipped")


# --------------------------------------------------------------------------- preprocess


def test_preprocess_is_gain_invariant():
    x = speechlike(1.5)
    a = preprocess(x, 16000)
    b = preprocess(0.1 * x, 16000)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_preprocess_normalises_loudness_to_minus_20_dbfs():
    for gain in (0.01, 1.0, 3.0):
        y = preprocess(np.clip(gain * tone(1.0, amp=0.3), -1, 1), 16000)
        assert rms_db(y) == pytest.approx(-20.0, abs=0.1)


def test_preprocess_limits_peak_to_full_scale():
    x = np.zeros(16000, np.float32)
    x[::400] = 0.5  # sparse clicks: RMS normalisation alone would push the peak far above 1
    y = preprocess(x, 16000)
    assert np.max(np.abs(y)) <= 1.0
    assert np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)


def test_preprocess_trims_leading_and_trailing_silence():
    sr = 16000
    rng = np.random.default_rng(1)
    speech = speechlike(1.0, sr)
    hiss = (1e-5 * rng.standard_normal(sr)).astype(np.float32)  # ~-100 dBFS room tone
    padded = np.concatenate([hiss, speech, hiss[: sr // 2]])
    y = preprocess(padded, sr)
    reference = preprocess(speech, sr)
    # 2 s of silence removed; only the 0.1 s margins (plus one 20 ms frame) may remain.
    assert len(y) <= len(speech) + 2 * 1600 + 320
    assert len(y) >= len(reference)
    # Speech starts within the margin, not after a second of silence.
    onset = int(np.argmax(np.abs(y) > 0.01))
    assert 1600 - 320 <= onset <= 1600 + 400


def test_leading_silence_does_not_change_the_preprocessed_speech():
    sr = 16000
    speech = speechlike(1.0, sr, seed=3)
    with_pause = np.concatenate([np.zeros(2 * sr, np.float32), speech])
    a, b = preprocess(speech, sr), preprocess(with_pause, sr)
    # Same speech, same loudness: the tails line up sample for sample.
    n = min(len(a), len(b)) - 2000
    np.testing.assert_allclose(a[-n:], b[-n:], rtol=0.01, atol=1e-3)
    assert len(b) <= len(a) + 1600 + 320  # the 2 s pause itself is gone


def test_preprocess_leaves_silence_and_empty_alone():
    assert preprocess(np.zeros(0, np.float32), 16000).size == 0
    z = np.zeros(1000, np.float32)
    np.testing.assert_array_equal(preprocess(z, 16000), z)


# --------------------------------------------------------------------------- mix_at_snr


def measured_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    # When the mix was scaled down to stay in [-1, 1], recover that factor by projection.
    k = float(np.dot(mixed, clean) / np.dot(clean, clean))
    noise = mixed / k - clean
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 15.0])
def test_mix_hits_requested_snr(snr):
    rng = np.random.default_rng(0)
    clean = tone(1.0, amp=0.3)
    noise = (0.05 * rng.standard_normal(48000)).astype(np.float32)
    mixed = mix_at_snr(clean, noise, snr, np.random.default_rng(5))
    assert mixed.shape == clean.shape and mixed.dtype == np.float32
    assert measured_snr(clean, mixed) == pytest.approx(snr, abs=0.5)


def test_mix_loops_short_noise_and_stays_in_range():
    rng = np.random.default_rng(2)
    clean = tone(1.0, amp=0.95)
    noise = rng.standard_normal(3000).astype(np.float32)  # shorter than the clip
    mixed = mix_at_snr(clean, noise, 0.0, np.random.default_rng(1))
    assert mixed.shape == clean.shape
    assert np.max(np.abs(mixed)) <= 1.0
    assert measured_snr(clean, mixed) == pytest.approx(0.0, abs=0.5)


def test_mix_is_seeded():
    clean = tone(0.5)
    noise = np.random.default_rng(3).standard_normal(40000).astype(np.float32)
    a = mix_at_snr(clean, noise, 5.0, np.random.default_rng(9))
    b = mix_at_snr(clean, noise, 5.0, np.random.default_rng(9))
    c = mix_at_snr(clean, noise, 5.0, np.random.default_rng(10))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mix_rejects_empty_noise():
    with pytest.raises(ValueError, match="noise recording is empty"):
        mix_at_snr(tone(0.1), np.zeros(0, np.float32), 5.0, np.random.default_rng(0))


# --- bounded decoding: limits checked before or while decoding, never after ------------------------
import struct  # noqa: E402

from spira_lib.reasons import Reason  # noqa: E402


def _flac_claiming(frames: int) -> bytes:
    data = bytearray(encode(tone(0.5, sr=8000), 8000, fmt="FLAC"))
    word = int.from_bytes(data[18:26], "big")
    data[18:26] = ((word & ~((1 << 36) - 1)) | frames).to_bytes(8, "big")
    return bytes(data)


def test_a_header_claiming_days_of_audio_is_truncated_not_a_memory_error():
    with pytest.raises(AudioError) as info:
        read_native(_flac_claiming((1 << 36) - 1), max_seconds=60)
    assert info.value.code is Reason.TRUNCATED and "68719476735 frames" in str(info.value)


def test_decoding_stops_at_the_duration_limit():
    data = encode(tone(3.0, sr=8000), 8000, subtype="PCM_16")
    frames, _ = read_native(data, max_seconds=3.0)
    assert len(frames) == 24000
    with pytest.raises(AudioError, match=r"longer than the 2.5 s limit \(audio.max_clip_s\)") as info:
        read_native(data, max_seconds=2.5)
    assert info.value.code is Reason.TOO_LONG


@pytest.mark.parametrize("rate, phrase", [(0, "sample rate 0 Hz"), (1, "sample rate 1 Hz is below the 4000 Hz minimum")])
def test_a_damaged_sample_rate_is_named(rate, phrase):
    data = bytearray(encode(tone(0.5, sr=8000), 8000, subtype="PCM_16"))
    data[24:28] = struct.pack("<I", rate)
    with pytest.raises(AudioError, match=phrase) as info:
        read_native(bytes(data), min_sample_rate=4000)
    assert info.value.code is Reason.BAD_SAMPLE_RATE


@pytest.mark.parametrize("subtype", ["PCM_U8", "ULAW", "ALAW", "PCM_24", "DOUBLE"])
def test_odd_wav_encodings_decode(subtype):
    frames, sr = read_native(encode(tone(0.5, sr=8000), 8000, subtype=subtype), max_seconds=10, min_sample_rate=4000)
    assert sr == 8000 and frames.shape == (4000, 1)
    assert np.corrcoef(frames[:, 0], tone(0.5, sr=8000))[0, 1] > 0.99


def test_the_limits_are_config_fields_with_checked_values():
    from spira_lib.config import ConfigError, load_config

    cfg = AudioConfig()
    assert (cfg.max_file_mb, cfg.max_clip_s, cfg.min_sample_rate) == (200.0, 300.0, 4000)
    assert cfg.max_file_bytes == 200 * 2**20
    with pytest.raises(ConfigError, match="max_clip_s .* must be >= min_duration_s"):
        load_config(None, {"audio.max_clip_s": 1.0})
    with pytest.raises(ConfigError, match="audio.max_file_mb"):
        load_config(None, {"audio.max_file_mb": 0})


def test_stereo_channels_that_cancel_in_the_mono_mix_are_silent():
    left = speechlike(1.0)
    cfg = AudioConfig(min_duration_s=0.5)
    problem = check_quality(np.stack([left, -left], axis=1), 16000, cfg)
    assert problem is not None and problem.code.value == "silent" and "cancel out" in problem.message
    assert check_quality(np.stack([left, left * 0.5], axis=1), 16000, cfg) is None

"""Per-clip audio profile: what a recording chain did to a clip, measured on the RAW audio.

Drift in the recording chain (a new phone, a gain setting, a telephone line, a
noisier ward) must be seen before ``audio.preprocess`` hides part of it: that
step RMS-normalises and trims every clip, so level and lead/tail silence are
gone from the features the model sees. ``audio_profile`` therefore works on the
decoded frames at the file's own rate and channel count.

Every feature is a float; ``PROFILE_FEATURES`` documents the name, unit and
meaning. Spectral features use 0 .. min(Nyquist, 8 kHz), the band the model
sees at 16 kHz, so 16, 22.05 and 44.1 kHz recordings are comparable. Cost: numpy
only, a few milliseconds per clip (one framing pass for levels, one FFT pass
for spectrum and pitch).

Bump ``PROFILE_VERSION`` when a feature's definition changes: cached profiles
and stored references with another version are stale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spira_lib.audio import read_native

PROFILE_VERSION = 1

FLOOR_DB = -120.0  # dB values are floored here (digital silence would be -inf)
CLIP_LEVEL = 0.999  # |x| at or above this counts as clipped (as AudioConfig.clip_level)
_BLOCK_S = 0.010  # level blocks
_MIN_PAUSE_S = 0.15  # a silent run inside the speech span at least this long is a pause
_SPECTRUM_MAX_HZ = 8000.0
_ROLLOFF = 0.85
_F0_RANGE_HZ = (60.0, 400.0)
_F0_MAX_FRAMES = 80  # pitch from at most this many of the loudest frames
_VOICED_MIN_R = 0.45  # normalised autocorrelation peak for a frame to count as voiced
_TONAL_BAND_HZ = (50.0, 4000.0)  # where pause tonality looks (mains hum .. monitor beeps)
_TONAL_WINDOW_HZ = 250.0  # width of the running median a spectral peak is compared with


@dataclass(frozen=True)
class ProfileFeature:
    name: str
    unit: str
    description: str


PROFILE_FEATURES: tuple[ProfileFeature, ...] = (
    ProfileFeature("duration_s", "s", "clip length"),
    ProfileFeature("sample_rate_hz", "Hz", "the file's own sample rate"),
    ProfileFeature("channels", "count", "channels in the file"),
    ProfileFeature("rms_dbfs", "dBFS", "RMS over every sample of every channel (the recording gain)"),
    ProfileFeature("active_level_dbfs", "dBFS", "RMS of the speech (active) blocks of the mono mix"),
    ProfileFeature("peak_dbfs", "dBFS", "largest |sample| over all channels"),
    ProfileFeature("clipped_fraction", "fraction", f"time samples where any channel has |x| >= {CLIP_LEVEL}"),
    ProfileFeature("noise_floor_dbfs", "dBFS", "mean power of the quietest 10% of 10 ms blocks"),
    ProfileFeature("snr_db", "dB", "active level minus noise floor"),
    ProfileFeature("speech_ratio", "fraction", "active share of the span from the first to the last active block"),
    ProfileFeature("pause_count", "count", f"silent runs >= {_MIN_PAUSE_S * 1000:.0f} ms inside the speech span"),
    ProfileFeature("spectral_centroid_hz", "Hz", "power-weighted mean frequency of the active frames (<= 8 kHz)"),
    ProfileFeature("spectral_rolloff_hz", "Hz", f"frequency below which {_ROLLOFF:.0%} of that power lies"),
    ProfileFeature("low_band_db", "dB", "power below 300 Hz relative to all power <= 8 kHz"),
    ProfileFeature("high_band_db", "dB", "power above 4 kHz relative to all power <= 8 kHz"),
    ProfileFeature("f0_median_hz", "Hz", "median pitch of voiced frames (autocorrelation); NaN when none"),
    ProfileFeature(
        "pause_tonality_db", "dB",
        "strongest narrow peak of the pauses' spectrum (50 Hz - 4 kHz) above its running median: "
        "tonal background such as monitor beeps, mains hum or fan tones; NaN when there are no pauses",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in PROFILE_FEATURES)
UNITS: dict[str, str] = {f.name: f.unit for f in PROFILE_FEATURES}


def _db(power: float) -> float:
    return float(max(10.0 * np.log10(power), FLOOR_DB)) if power > 0 else FLOOR_DB


def _as_frames(audio: bytes | tuple[np.ndarray, int], name: str) -> tuple[np.ndarray, int]:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return read_native(bytes(audio), name=name)
    frames, sr = audio
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.ndim != 2 or int(sr) <= 0:
        raise ValueError(f"{name or 'audio'}: expected frames (n,) or (n, channels) and a positive rate, got {frames.shape}, {sr}")
    return frames, int(sr)


def _levels(frames: np.ndarray, mono: np.ndarray, sr: int) -> tuple[dict[str, float], np.ndarray, float]:
    """Level features, the per-block active mask and the activity threshold (dB)."""
    block = max(1, int(round(_BLOCK_S * sr)))
    n_blocks = max(1, len(mono) // block)
    power = np.mean(np.square(mono[: n_blocks * block].reshape(n_blocks, block), dtype=np.float64), axis=1)
    if len(power) >= 3:  # 30 ms smoothing so a zero crossing does not split a syllable
        power = np.convolve(power, np.ones(3) / 3.0, mode="same")
    energy = 10.0 * np.log10(np.maximum(power, 1e-12))
    floor_db, top_db = np.percentile(energy, [10, 95])
    # Relative to the clip's own levels: independent of gain, tolerant of a raised noise floor.
    # A stationary signal (no dynamic range) is all active.
    threshold = min(max(top_db - 30.0, floor_db + 0.4 * (top_db - floor_db)), top_db - 6.0)
    active = energy >= threshold
    quiet = power[energy <= floor_db]
    # Per-channel loops: numpy reductions over a short channel axis are slow.
    mag = np.abs(frames[:, 0])
    sum_sq = 0.0
    for c in range(frames.shape[1]):
        col = np.ascontiguousarray(frames[:, c], dtype=np.float64)
        sum_sq += float(np.einsum("i,i->", col, col))  # not np.dot: BLAS threads stall on a busy machine
        if c:
            np.maximum(mag, np.abs(frames[:, c]), out=mag)
    out = {
        "rms_dbfs": _db(sum_sq / max(1, frames.size)),
        "active_level_dbfs": _db(float(np.mean(power[active]))) if active.any() else FLOOR_DB,
        "peak_dbfs": _db(float(mag.max()) ** 2),
        "clipped_fraction": float(np.count_nonzero(mag >= CLIP_LEVEL)) / max(1, mag.size),
        "noise_floor_dbfs": _db(float(np.mean(quiet))) if quiet.size else FLOOR_DB,
    }
    out["snr_db"] = out["active_level_dbfs"] - out["noise_floor_dbfs"]
    out.update(_pauses(active))
    return out, active, float(threshold)


def _pauses(active: np.ndarray) -> dict[str, float]:
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return {"speech_ratio": 0.0, "pause_count": 0.0}
    span = active[idx[0] : idx[-1] + 1]
    # Run lengths of silence inside the span: boundaries where activity flips.
    flips = np.flatnonzero(np.diff(span.astype(np.int8)))
    starts = flips[span[flips]] + 1  # active -> silent
    ends = flips[~span[flips]] + 1  # silent -> active
    lengths = (ends - starts) * _BLOCK_S
    return {"speech_ratio": float(span.mean()), "pause_count": float(np.count_nonzero(lengths >= _MIN_PAUSE_S - 1e-9))}


def _spectral(mono: np.ndarray, sr: int, threshold_db: float) -> dict[str, float]:
    """Long-term spectrum of the active frames and pitch of the voiced ones, from one FFT pass."""
    n = 1 << int(np.ceil(np.log2(0.032 * sr)))  # ~32-46 ms frames, non-overlapping
    n_frames = len(mono) // n
    nan = float("nan")
    names = ("spectral_centroid_hz", "spectral_rolloff_hz", "low_band_db", "high_band_db", "f0_median_hz", "pause_tonality_db")
    empty = dict.fromkeys(names, nan)
    if n_frames == 0:
        return empty
    x = mono[: n_frames * n].reshape(n_frames, n).astype(np.float64)
    energy = 10.0 * np.log10(np.maximum(np.mean(x * x, axis=1), 1e-12))
    window = np.hanning(n)
    spec_all = np.abs(np.fft.rfft(x * window, n=2 * n, axis=1)) ** 2  # zero-padded: linear autocorrelation
    freqs = np.fft.rfftfreq(2 * n, 1.0 / sr)
    keep = energy >= threshold_db
    pause_tonality = _tonality(spec_all[~keep].mean(axis=0), freqs) if (~keep).any() else nan
    if not keep.any():
        return {**empty, "pause_tonality_db": pause_tonality}
    spec, energy = spec_all[keep], energy[keep]
    band = freqs <= min(_SPECTRUM_MAX_HZ, sr / 2.0)
    lts, f = spec[:, band].mean(axis=0), freqs[band]
    total = float(lts.sum())
    if total <= 0:
        return {**empty, "pause_tonality_db": pause_tonality}
    cum = np.cumsum(lts) / total
    out = {
        "spectral_centroid_hz": float((f * lts).sum() / total),
        "spectral_rolloff_hz": float(f[min(int(np.searchsorted(cum, _ROLLOFF)), f.size - 1)]),
        "low_band_db": _db(float(lts[f < 300.0].sum()) / total),
        "high_band_db": _db(float(lts[f > 4000.0].sum()) / total),
        "pause_tonality_db": pause_tonality,
    }
    loudest = np.argsort(energy)[::-1][:_F0_MAX_FRAMES]
    out["f0_median_hz"] = _f0_median(spec[loudest], window, sr, n)
    return out


def _tonality(lts: np.ndarray, freqs: np.ndarray) -> float:
    """Largest ratio (dB) of a spectrum to its running median over ``_TONAL_WINDOW_HZ``, within ``_TONAL_BAND_HZ``.

    Relative to the LOCAL median, so the tilt of broadband noise (pink room
    noise, breath) does not count: only narrow peaks - tones - do.
    """
    df = float(freqs[1] - freqs[0])
    half = max(2, int(round(_TONAL_WINDOW_HZ / df / 2)))
    padded = np.pad(lts, half, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    band = (freqs >= _TONAL_BAND_HZ[0]) & (freqs <= _TONAL_BAND_HZ[1])
    peak, base = lts[band], med[band]
    ok = base > 0
    if not ok.any():
        return 0.0
    return float(max(10.0 * np.log10(np.max(peak[ok] / base[ok])), 0.0))


def _f0_median(power: np.ndarray, window: np.ndarray, sr: int, n: int) -> float:
    """Median pitch over frames whose window-corrected autocorrelation has a clear peak (Boersma 1993)."""
    ac = np.fft.irfft(power, axis=1)[:, :n]
    w_ac = np.fft.irfft(np.abs(np.fft.rfft(window, n=2 * n)) ** 2)[:n]
    lo, hi = int(sr / _F0_RANGE_HZ[1]), min(int(sr / _F0_RANGE_HZ[0]), n // 2)
    if hi <= lo + 2:
        return float("nan")
    r0 = ac[:, :1]
    valid = r0[:, 0] > 0
    if not valid.any():
        return float("nan")
    r = ac[valid, lo:hi] / r0[valid] / (w_ac[lo:hi] / w_ac[0])
    best = r.max(axis=1)
    voiced = best >= _VOICED_MIN_R
    if not voiced.any():
        return float("nan")
    f0 = []
    for row, peak in zip(r[voiced], best[voiced]):
        # Shortest lag within 10% of the best peak (not 2T, an octave low), then
        # the local maximum after it, refined by a parabola through its neighbours.
        first = int(np.argmax(row >= 0.9 * peak))
        stop = min(row.size, first + max(3, (first + lo) // 2))
        k = first + int(np.argmax(row[first:stop]))
        shift = 0.0
        if 0 < k < row.size - 1:
            a, b, c = row[k - 1], row[k], row[k + 1]
            denom = a - 2.0 * b + c
            shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        f0.append(sr / (k + lo + shift))
    return float(np.median(f0))


def audio_profile(audio: bytes | tuple[np.ndarray, int], *, name: str = "") -> dict[str, float]:
    """Profile of one raw recording: ``{feature name: value}`` for every name in ``FEATURE_NAMES``.

    ``audio`` is the file's bytes (decoded with ``audio.read_native``; an
    ``AudioError`` says why it cannot be read) or ``(frames, sample_rate)`` with
    frames ``(n,)`` or ``(n, channels)`` float in [-1, 1] at the file's own rate.
    Analysis features use the channel average, as ``decode_audio`` does; gain,
    peak and clipping look at every channel. A clip with no samples gives NaN
    for everything but rate and channels.
    """
    frames, sr = _as_frames(audio, name)
    base = {"duration_s": frames.shape[0] / sr, "sample_rate_hz": float(sr), "channels": float(frames.shape[1])}
    if frames.shape[0] == 0:
        return {k: base.get(k, float("nan")) for k in FEATURE_NAMES}
    mono = frames[:, 0].astype(np.float64)
    for c in range(1, frames.shape[1]):
        mono += frames[:, c]
    mono /= frames.shape[1]
    levels, _, threshold = _levels(frames, mono, sr)
    out = {**base, **levels, **_spectral(mono, sr, threshold)}
    return {k: float(out[k]) for k in FEATURE_NAMES}

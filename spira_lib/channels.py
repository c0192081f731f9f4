"""Recording conditions for augmentation: SNR against active speech, random recording chains, synthetic noise.

A model that must not care about the room or the microphone is trained on
copies of each clip that differ in exactly those: ward noise at an SNR set
against the speech (not the pauses), telephone band, 8 kHz round trips,
microphone EQ, low-pass, and generic coloured background noise. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from spira_lib.audio import _FRAME_S, _HOP_S, TRIM_BELOW_PEAK_DB, _frame_energy_db, _resample, mix_at_snr


def active_rms(wave: np.ndarray, sr: int, trim_db: float = TRIM_BELOW_PEAK_DB) -> float:
    """RMS of the non-silent frames (the level ``preprocess`` normalises), 0.0 for silence."""
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.any(x):
        return 0.0
    frame = max(1, int(round(_FRAME_S * sr)))
    hop = max(1, int(round(_HOP_S * sr)))
    energy = _frame_energy_db(x, frame, hop)
    active = energy >= energy.max() - trim_db
    return float(np.sqrt(np.mean(10.0 ** (energy[active] / 10.0))))


def mix_at_active_snr(
    wave: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """``mix_at_snr`` with the SNR measured against the speech's ACTIVE level, not the clip RMS.

    The clip RMS counts pauses, so a patient (more, longer pauses) would get
    relatively quieter noise than a control at the same nominal SNR, and the
    noise level under speech would carry the label. Against the active level
    both classes get the same noise-to-speech ratio distribution.
    """
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    level = active_rms(x, sr)
    full = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if level == 0.0 or full == 0.0:
        return x.copy()
    # mix_at_snr scales against the clip RMS; shift its SNR so the result is snr_db re the active level.
    return mix_at_snr(x, noise, snr_db + 20.0 * float(np.log10(full / level)), rng)


def _fft_filter(x: np.ndarray, sr: int, gain) -> np.ndarray:
    n = x.size
    size = 1 << max(n - 1, 1).bit_length()
    spec = np.fft.rfft(x.astype(np.float64), n=size)
    spec *= gain(np.maximum(np.fft.rfftfreq(size, 1.0 / sr), 1.0))
    return np.fft.irfft(spec, n=size)[:n]


CHANNEL_KINDS = ("telephone", "resample8k", "mic_eq", "lowpass")


def random_channel(wave: np.ndarray, sr: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A random recording chain for augmentation; float32, peak <= 1.

    ``telephone``: band-pass with random edges around 300-3400 Hz; ``resample8k``:
    down to 8 kHz and back (nothing above 4 kHz survives); ``mic_eq``: random low
    and high shelves (+-10 dB) and a peak; ``lowpass``: a cheap microphone's
    roll-off between 3.5 and 7 kHz. The model sees the same speech through
    many chains, so spectral balance stops being a usable cue.
    """
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size == 0:
        return x.copy()
    kind = kind or CHANNEL_KINDS[int(rng.integers(len(CHANNEL_KINDS)))]
    if kind == "telephone":
        lo, hi, order = rng.uniform(200.0, 450.0), rng.uniform(3000.0, 3800.0), rng.uniform(4.0, 10.0)
        y = _fft_filter(x, sr, lambda f: 1.0 / np.sqrt((1 + (lo / f) ** order) * (1 + (f / hi) ** order)))
    elif kind == "resample8k":
        y = _resample(_resample(x, sr, 8000), 8000, sr)[: x.size].astype(np.float64)
        if y.size < x.size:
            y = np.pad(y, (0, x.size - y.size))
    elif kind == "mic_eq":
        lo_f, lo_g = rng.uniform(100.0, 500.0), rng.uniform(-10.0, 8.0)
        hi_f, hi_g = rng.uniform(1500.0, 5000.0), rng.uniform(-12.0, 8.0)
        pk_f, pk_g = float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0)))), rng.uniform(-9.0, 9.0)

        def eq(f: np.ndarray) -> np.ndarray:
            r_lo, r_hi = (f / lo_f) ** 2, (f / hi_f) ** 2
            g = lo_g / (1 + r_lo) + hi_g * r_hi / (1 + r_hi) + pk_g * np.exp(-0.5 * (np.log2(f / pk_f) / 0.5) ** 2)
            return 10.0 ** (g / 20.0)

        y = _fft_filter(x, sr, eq)
    elif kind == "lowpass":
        hi, order = rng.uniform(3500.0, 7000.0), rng.uniform(2.0, 6.0)
        y = _fft_filter(x, sr, lambda f: 1.0 / np.sqrt(1 + (f / hi) ** order))
    else:
        raise ValueError(f"unknown channel kind {kind!r}; expected one of {', '.join(CHANNEL_KINDS)}")
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        y = y / peak
    return y.astype(np.float32)


def synthetic_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS generic background noise, drawn fresh per call (not from any recording).

    A random mix of: coloured noise with a random spectral slope (-9..+3 dB per
    octave) and band; mains-like hum (random fundamental 45-200 Hz, random
    harmonic levels); a slowly amplitude-modulated band of noise (ventilation,
    traffic). Augmenting with noise that no recording bank defines teaches
    invariance to backgrounds in general, not to the few recorded ward noises.
    """
    t = np.arange(n) / sr
    size = 1 << max(n - 1, 1).bit_length()
    freqs = np.maximum(np.fft.rfftfreq(size, 1.0 / sr), 1.0)
    parts = []
    if rng.random() < 0.7:
        slope = rng.uniform(-9.0, 3.0)
        lo, hi = rng.uniform(20.0, 500.0), rng.uniform(1500.0, 0.5 * sr)
        g = 10.0 ** (slope * np.log2(freqs / 1000.0) / 20.0) / np.sqrt((1 + (lo / freqs) ** 4) * (1 + (freqs / hi) ** 4))
        x = np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) * g, n=size)[:n]
        if rng.random() < 0.5:
            x = x * (1.0 + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 6.3)))
        parts.append(x)
    if rng.random() < 0.4 or not parts:
        f0 = rng.uniform(45.0, 200.0)
        x = np.zeros(n)
        for h in range(1, 8):
            if h * f0 < 0.45 * sr:
                x += rng.uniform(0.0, 1.0) / h**0.5 * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3))
        parts.append(x)
    out = np.zeros(n)
    for x in parts:
        rms = float(np.sqrt(np.mean(x**2)))
        if rms > 0:
            out += x / rms * 10.0 ** (rng.uniform(-6.0, 0.0) / 20.0)
    rms = float(np.sqrt(np.mean(out**2)))
    return (out / rms if rms > 0 else out).astype(np.float32)

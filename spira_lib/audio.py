"""Audio decoding, per-clip quality checks, loudness/silence normalisation and noise mixing.

Everything here is a pure function over bytes or numpy arrays: no storage, no
config loading. ``decode_audio`` turns any WAV/FLAC/OGG recording (any sample
rate, mono or stereo) into float32 mono at the model's rate; ``check_quality``
says why a clip is unusable; ``preprocess`` removes the recording-chain effects
(gain, leading/trailing silence) the model must not learn from; ``mix_at_snr``
adds ward noise for augmentation and for the shortcut check.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from spira_lib.config import AudioConfig
from spira_lib.reasons import Problem, Reason

# Bump when preprocess() changes its output, so feature caches keyed on it go stale.
PREPROCESS_VERSION = 1

# preprocess() defaults (see its docstring for why).
TARGET_RMS_DBFS = -20.0
TRIM_BELOW_PEAK_DB = 45.0
TRIM_MARGIN_S = 0.1
_FRAME_S = 0.02
_HOP_S = 0.01


class AudioError(ValueError):
    """A recording cannot be used; the message is a plain reason, prefixed by the file name when known.

    ``code`` says which kind of problem it is (a ``reasons.Reason``), so callers never parse the message.
    """

    def __init__(self, message: str, code: Reason = Reason.UNREADABLE) -> None:
        super().__init__(message)
        self.code = code


def _fail(name: str, reason: str, code: Reason = Reason.UNREADABLE) -> AudioError:
    return AudioError(f"{name}: {reason}" if name else reason, code)


def _wav_truncation(data: bytes) -> str | None:
    """Reason when a RIFF/WAVE header promises more audio than the bytes hold.

    libsndfile silently shortens such files to what is present, so a half-uploaded
    WAV would otherwise pass as a shorter, valid clip.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if chunk_id == b"data":
            available = len(data) - (pos + 8)
            # 0 and 0xFFFFFFFF are placeholders left by streaming writers: length unknown, not truncated.
            if size not in (0, 0xFFFFFFFF) and size > available:
                return f"truncated WAV: header declares {size} bytes of audio but only {available} are present"
            return None
        pos += 8 + size + (size & 1)
    return None


def read_native(data: bytes, *, name: str = "") -> tuple[np.ndarray, int]:
    """Decode to float32 frames shaped (n, channels) at the file's own sample rate.

    Raises AudioError for empty, unreadable or truncated data and for NaN/inf samples.
    """
    if not data:
        raise _fail(name, "empty file (0 bytes)", Reason.EMPTY_FILE)
    truncated = _wav_truncation(data)
    if truncated:
        raise _fail(name, truncated, Reason.TRUNCATED)
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            sr = int(fh.samplerate)
            declared = int(fh.frames)
            frames = fh.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise _fail(name, f"unreadable audio ({getattr(exc, 'error_string', str(exc)).strip()})") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _fail(name, f"unreadable audio ({exc})") from None
    if sr <= 0:
        raise _fail(name, f"invalid sample rate {sr}")
    # Compressed formats (FLAC/OGG) cut short report the full length but decode less.
    if 0 < declared < (1 << 62) and len(frames) < declared:
        raise _fail(name, f"truncated audio: header declares {declared} frames but only {len(frames)} decode", Reason.TRUNCATED)
    bad = int(np.count_nonzero(~np.isfinite(frames)))
    if bad:
        raise _fail(name, f"{bad} of {frames.size} samples are NaN or infinite", Reason.NAN_SAMPLES)
    return frames, sr


def _resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    # Imported here: torchaudio costs ~2 s to import and is not needed when rates already match.
    import torch
    import torchaudio.functional as taf

    out = taf.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig_sr, target_sr)
    return out.numpy().astype(np.float32, copy=False)


def decode_audio(data: bytes, *, target_sr: int, name: str = "") -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG bytes to float32 mono at ``target_sr``.

    Returns ``(wave, original_sample_rate)``. Stereo is downmixed by averaging the
    channels. NaN/inf samples are rejected before resampling (a resampler would
    smear one bad sample over its whole filter length). A valid file with no
    frames decodes to an empty array; ``check_quality`` reports it.
    """
    frames, sr = read_native(data, name=name)
    wave = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sr != target_sr and len(wave):
        wave = _resample(wave, sr, target_sr)
    return wave, sr


def _dbfs(x: float) -> float:
    return 20.0 * float(np.log10(x)) if x > 0 else float("-inf")


def check_quality(wave: np.ndarray, sr: int, cfg: AudioConfig) -> Problem | None:
    """Why a clip is unusable, or None.

    ``wave`` is mono ``(n,)`` or multi-channel ``(n, channels)``; for the latter
    the peak and the clipping test look at every channel (a single clipped
    channel is still a damaged recording even when the mono mix is not).
    """
    wave = np.asarray(wave)
    n = wave.shape[0] if wave.ndim else 0
    if n == 0:
        return Problem(Reason.ZERO_LENGTH, "zero-length clip (no audio samples)")
    duration = n / sr
    if duration < cfg.min_duration_s:
        shown = f"{duration:.1f}"
        if shown == f"{cfg.min_duration_s:.1f}":
            shown = f"{duration:.3f}"  # "3.996 s", not a contradictory "4.0 s, shorter than 4.0 s"
        return Problem(Reason.TOO_SHORT, f"clip is {shown} s, shorter than the {cfg.min_duration_s:.1f} s window")
    mag = np.abs(wave) if wave.ndim == 1 else np.abs(wave).max(axis=1)
    peak = float(mag.max())
    peak_db = _dbfs(peak)
    if peak_db < cfg.silence_dbfs:
        shown = "-inf" if peak == 0 else f"{peak_db:.1f}"
        return Problem(Reason.SILENT, f"near-silent clip: peak {shown} dBFS is below {cfg.silence_dbfs:.1f} dBFS")
    clipped = float(np.count_nonzero(mag >= cfg.clip_level)) / n
    if clipped > cfg.max_clipped_fraction:
        return Problem(
            Reason.CLIPPED,
            f"clipped: {clipped:.1%} of samples at or above {cfg.clip_level:g} full scale "
            f"(limit {cfg.max_clipped_fraction:.1%})",
        )
    return None


def _frame_energy_db(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean-square energy per frame, in dB (frames start every ``hop`` samples)."""
    n_frames = 1 + max(0, len(wave) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    idx = np.minimum(idx, len(wave) - 1)
    power = np.mean(np.square(wave[idx], dtype=np.float64), axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power)


def preprocess(
    wave: np.ndarray,
    sr: int,
    *,
    target_dbfs: float = TARGET_RMS_DBFS,
    trim_db: float = TRIM_BELOW_PEAK_DB,
    margin_s: float = TRIM_MARGIN_S,
) -> np.ndarray:
    """Trim leading/trailing silence and normalise loudness; returns a new float32 array.

    Why: SPIRA's patients and controls were recorded on different phones, gains
    and in different rooms. If loudness or the length of the pause before
    speaking differed by class, the CNN could learn that instead of the voice.
    So every clip is made to start and end with speech and to have the same
    loudness before features are computed (training and inference alike).

    - Trimming: 20 ms frames every 10 ms; frames whose energy is more than
      ``trim_db`` below the loudest frame are silence. Everything before the
      first and after the last non-silent frame is cut, keeping ``margin_s`` on
      each side so word onsets are not clipped. The threshold is relative to the
      clip's own peak, so it does not depend on the recording gain.
    - Loudness: scaled so the RMS of the non-silent frames (the active level) is
      ``target_dbfs`` dBFS, but never so far that the peak exceeds 1.0 (then the
      peak sets the gain instead). Silent margins and pauses do not count, so
      they cannot change the gain.

    A silent or empty clip is returned unchanged (there is no level to match).
    Trimming may leave a clip shorter than one model window; feature extraction
    pads such clips.
    """
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.any(x):
        return x.copy()
    frame = max(1, int(round(_FRAME_S * sr)))
    hop = max(1, int(round(_HOP_S * sr)))
    energy = _frame_energy_db(x, frame, hop)
    active = energy >= energy.max() - trim_db
    loud = np.flatnonzero(active)
    margin = int(round(margin_s * sr))
    start = max(0, int(loud[0]) * hop - margin)
    stop = min(len(x), int(loud[-1]) * hop + frame + margin)
    x = x[start:stop]

    # Level of the active frames only, so the kept margins and pauses do not lower
    # the measured loudness (a clip with a long pause would otherwise be boosted).
    rms = float(np.sqrt(np.mean(10.0 ** (energy[active] / 10.0))))
    peak = float(np.max(np.abs(x)))
    if rms == 0.0 or peak == 0.0:
        return x.copy()
    gain = min(10.0 ** (target_dbfs / 20.0) / rms, 1.0 / peak)
    # float64 then clip: x * (1/peak) can round a hair above 1.0 in float32.
    return np.clip(x.astype(np.float64) * gain, -1.0, 1.0).astype(np.float32)


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add a random segment of ``noise`` to ``wave`` at ``snr_db`` (RMS ratio); result stays in [-1, 1].

    A noise recording shorter than the clip is looped. When the sum would exceed
    full scale, both parts are scaled down together, so the SNR is unchanged.
    A silent clip or silent noise segment comes back unchanged (no SNR to hit).
    """
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    noise = np.asarray(noise, dtype=np.float32).reshape(-1)
    if noise.size == 0:
        raise ValueError("mix_at_snr: the noise recording is empty")
    n = x.size
    if n == 0:
        return x.copy()
    if noise.size >= n:
        start = int(rng.integers(0, noise.size - n + 1))
        segment = noise[start : start + n]
    else:
        start = int(rng.integers(0, noise.size))
        reps = -(-(start + n) // noise.size)
        segment = np.tile(noise, reps)[start : start + n]
    wave_rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    noise_rms = float(np.sqrt(np.mean(np.square(segment, dtype=np.float64))))
    if wave_rms == 0.0 or noise_rms == 0.0:
        return x.copy()
    scale = wave_rms / (noise_rms * 10.0 ** (snr_db / 20.0))
    mixed = x.astype(np.float64) + scale * segment.astype(np.float64)
    peak = float(np.max(np.abs(mixed)))
    if peak > 1.0:
        mixed /= peak
    return mixed.astype(np.float32)

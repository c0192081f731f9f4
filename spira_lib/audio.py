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
# No audio interface records faster; a higher rate in a header is damage (and a resampling bomb).
MAX_SAMPLE_RATE = 768_000
# Frames decoded per read: memory grows with the audio actually there, not with what a header claims.
_BLOCK_FRAMES = 1 << 16


class AudioError(ValueError):
    """A recording cannot be used; the message is a plain reason, prefixed by the file name when known.

    ``code`` says which kind of problem it is (a ``reasons.Reason``), so callers never parse the message.
    """

    def __init__(self, message: str, code: Reason = Reason.UNREADABLE) -> None:
        super().__init__(message)
        self.code = code


def _fail(name: str, reason: str, code: Reason = Reason.UNREADABLE) -> AudioError:
    return AudioError(f"{name}: {reason}" if name else reason, code)


def _wav_header_problem(data: bytes) -> Problem | None:
    """What is wrong with a RIFF/WAVE header, read before libsndfile sees it.

    libsndfile silently shortens a WAV whose data chunk promises more bytes than
    the file holds (a half-uploaded file would pass as a shorter, valid clip), and
    reports a 0 Hz sample rate only as "SF_INFO struct incomplete".
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if chunk_id == b"fmt " and pos + 16 <= len(data):
            (rate,) = struct.unpack("<I", data[pos + 12 : pos + 16])
            if rate == 0:
                return Problem(Reason.BAD_SAMPLE_RATE, "invalid WAV header: sample rate 0 Hz")
        if chunk_id == b"data":
            available = len(data) - (pos + 8)
            # 0 and 0xFFFFFFFF are placeholders left by streaming writers: length unknown, not truncated.
            if size not in (0, 0xFFFFFFFF) and size > available:
                return Problem(Reason.TRUNCATED, f"truncated WAV: header declares {size} bytes of audio but only {available} are present")
            return None
        pos += 8 + size + (size & 1)
    return None


def _read_bounded(fh: sf.SoundFile, name: str, max_seconds: float | None) -> np.ndarray:
    """Decode block by block, so neither a header claiming days of audio nor a long clip can exhaust memory."""
    sr, declared = int(fh.samplerate), int(fh.frames)
    limit = None if max_seconds is None else int(max_seconds * sr)
    blocks: list[np.ndarray] = []
    n = 0
    while True:
        want = _BLOCK_FRAMES if limit is None else min(_BLOCK_FRAMES, limit + 1 - n)
        try:
            block = fh.read(want, dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:
            if not (0 < declared < (1 << 62) and n < declared):
                raise
            reason = getattr(exc, "error_string", str(exc)).strip()
            raise _fail(name, f"truncated or damaged audio: the header declares {declared} frames, but the data "
                        f"ends or breaks before that ({reason})", Reason.TRUNCATED) from None  # fmt: skip
        if not len(block):
            break
        blocks.append(block)
        n += len(block)
        if limit is not None and n > limit:
            claimed = f" (its header declares {declared / sr:.0f} s)" if 0 < declared < (1 << 62) else ""
            raise _fail(name, f"clip is longer than the {max_seconds:g} s limit (audio.max_clip_s){claimed}", Reason.TOO_LONG)
    if not blocks:
        return np.zeros((0, max(1, fh.channels)), dtype=np.float32)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def read_native(
    data: bytes, *, name: str = "", max_seconds: float | None = None, min_sample_rate: int = 1
) -> tuple[np.ndarray, int]:
    """Decode to float32 frames shaped (n, channels) at the file's own sample rate.

    Raises AudioError for empty, unreadable or truncated data, for NaN/inf
    samples, for a sample rate below ``min_sample_rate`` (checked before
    decoding) and, when ``max_seconds`` is given, for a clip longer than that
    (decoding stops there).
    """
    if not data:
        raise _fail(name, "empty file (0 bytes)", Reason.EMPTY_FILE)
    header = _wav_header_problem(data)
    if header:
        raise _fail(name, header.message, header.code)
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            sr = int(fh.samplerate)
            declared = int(fh.frames)
            if sr > MAX_SAMPLE_RATE:
                raise _fail(name, f"sample rate {sr} Hz is above {MAX_SAMPLE_RATE} Hz: a damaged header", Reason.BAD_SAMPLE_RATE)
            if sr < max(1, min_sample_rate):
                raise _fail(name, f"sample rate {sr} Hz is below the {min_sample_rate} Hz minimum (audio.min_sample_rate): "
                            "a damaged header, or not a speech recording", Reason.BAD_SAMPLE_RATE)  # fmt: skip
            frames = _read_bounded(fh, name, max_seconds)
    except sf.LibsndfileError as exc:
        raise _fail(name, f"unreadable audio ({getattr(exc, 'error_string', str(exc)).strip()})") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, AudioError):
            raise
        raise _fail(name, f"unreadable audio ({exc})") from None
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
    if wave.ndim == 2 and wave.shape[1] > 1:
        # The model hears the mono mix (decode_audio averages the channels).
        mix_db = _dbfs(float(np.abs(wave.mean(axis=1, dtype=np.float64)).max()))
        if mix_db < cfg.silence_dbfs:
            return Problem(Reason.SILENT, f"the channels cancel out when mixed to mono (mix peak {mix_db:.1f} dBFS): "
                           "one channel is the other inverted?")  # fmt: skip
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

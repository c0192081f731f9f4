"""Synthetic SPIRA-format demo dataset.

No real SPIRA recordings can ship with this repository, so the demo and the
tests run on speech-like audio synthesised here in pure numpy and written in
SPIRA's layout (CSV metadata + WAV/FLAC clips + a folder of ward noises).

What separates the classes is modelled on what the literature reports for
respiratory insufficiency (Casanova et al. 2021; Fernandes-Svartman et al.
2022): more and longer pauses, shorter breath groups, slower speech, breathier
voice and louder, more frequent inhalations. All of these are driven by one
per-speaker *severity* latent whose class-conditional distributions overlap,
plus independent per-speaker variation of each cue, so a model can learn the
task but not perfectly.

Cues that the real pipeline removes or that would be shortcuts are kept equal
across classes on purpose: overall loudness (clips are RMS-normalised),
leading/trailing silence (trimmed), clip duration, sample rate / channels /
container, hospital, and background ward noise (same kinds, same rate, same
SNR range for both classes).

Organisation: speaker profile -> utterance plan (timed segments) -> rendering
(source-filter synthesis) -> background noise -> writing.
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "CSV_COLUMNS",
    "NOISE_KINDS",
    "DemoSummary",
    "SpeakerProfile",
    "draw_profile",
    "generate_demo_dataset",
    "speaker_latents",
    "synth_clip",
    "synth_noise",
]

CSV_COLUMNS = ("file_path", "class", "sexo", "idade", "nivel_falta_de_ar", "speaker_id", "hospital")
NOISE_KINDS = ("babble", "beeps", "hum", "fan", "ward", "room")

# Every level below is relative to this RMS of voiced speech, before the
# per-clip recording gain is applied; it keeps SNRs and breath levels meaningful.
SPEECH_REF = 0.1

# F1..F4 (Hz) of Brazilian-Portuguese oral vowels for an adult male voice; 'N'
# is the murmur of a nasal onset (low F1, weak upper formants).
_VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (300, 2250, 3000, 3700),
    "e": (380, 2000, 2650, 3600),
    "E": (530, 1850, 2550, 3600),
    "a": (720, 1300, 2500, 3500),
    "O": (560, 950, 2450, 3400),
    "o": (410, 850, 2400, 3400),
    "u": (320, 800, 2350, 3300),
    "N": (260, 1100, 2300, 3300),
}
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])

# SPIRA's read sentence, syllabified as (onset, vowel): "O amor ao próximo
# ajuda a enfrentar essa fase com a força que a gente precisa". Onsets: ''
# none, 'p' stop, 'n' nasal, 's'/'S'/'f' fricatives (s, sh, f). Speakers who
# finish before the clip ends read it again, so duration is not tied to rate.
_SENTENCE: tuple[tuple[str, str], ...] = (
    ("", "u"), ("", "a"), ("n", "o"), ("", "a"), ("p", "O"), ("s", "i"), ("n", "u"),
    ("", "a"), ("S", "u"), ("p", "a"), ("", "a"), ("", "e"), ("f", "e"), ("p", "a"),
    ("", "E"), ("s", "a"), ("f", "a"), ("s", "i"), ("p", "o"), ("", "a"), ("f", "o"),
    ("s", "a"), ("p", "i"), ("", "a"), ("S", "e"), ("S", "i"), ("p", "e"), ("s", "i"),
    ("s", "a"),
)

# Fricative noise bands (lo, hi Hz) and levels (dB re SPEECH_REF).
_FRICATIVES = {"s": (3800.0, 7800.0, -8.0), "S": (2200.0, 5500.0, -9.0), "f": (1200.0, 7000.0, -20.0)}

HOSPITALS_MAIN = ("HC-SP", "ICESP")
HOSPITAL_B = "HU-B"

# Container/format schedule, shuffled per block of 16 clips: most clips are
# 16 kHz mono PCM16 WAV, and every block has each odd format at least once, so
# even a 16-speaker test set exercises resampling, downmixing and FLAC.
_FORMAT_BLOCK: tuple[tuple[int, int, str], ...] = (
    *((16000, 1, "WAV"),) * 11,
    (22050, 1, "WAV"),
    (44100, 1, "WAV"),
    (16000, 2, "WAV"),
    (16000, 1, "FLAC"),
    (22050, 2, "FLAC"),
)

VOICE_FAMILIES = ("source_filter", "harmonic")
CHANNELS = ("clean", "telephone", "8k", "gain", "mic_eq", "mixed")
NOISE_PLACEMENTS = ("both", "patients", "none")

_WARD_NOISE_FRACTION = 0.4
_WARD_SNR_DB = (10.0, 25.0)
_ROOM_FLOOR_DB = (-60.0, -45.0)  # re SPEECH_REF
_NOISE_BANK_RATE = 16000
_BANK_SECONDS = 12.0  # longer than the longest clip (10 s)


# --------------------------------------------------------------------------
# Speaker profile
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeakerProfile:
    """Everything about a speaker that shapes their recording."""

    label: int
    severity: float  # latent in ~[0, 1]; drives every class cue
    sex: str  # "F" / "M"
    age: int
    f0_hz: float
    formant_scale: float
    syllable_rate: float  # syllables per second while speaking
    group_syllables: float  # mean syllables per breath group
    pause_s: float  # mean pause between breath groups
    hesitation_p: float  # chance of a short silent gap between syllables
    inhale_p: float  # chance that a pause holds an audible inhalation
    inhale_db: float  # inhalation level re SPEECH_REF
    breathiness: float  # 0 modal .. 1 very breathy
    jitter: float  # relative cycle-to-cycle period perturbation
    shimmer: float  # relative cycle-to-cycle amplitude perturbation

    @property
    def dyspnea_level(self) -> int:
        """nivel_falta_de_ar: 0 for controls, 1-4 for patients by severity."""
        if self.label == 0:
            return 0
        return 1 + int(np.searchsorted([0.42, 0.6, 0.76], self.severity))


# Class-conditional severity (mean, sd) of patients and controls. "default":
# overlapping, as in real data (mild patients look like controls and some
# controls - smokers, nervous readers - pause and breathe like patients).
# "clear": barely overlapping, for tests that need a model to learn the task
# in a handful of epochs on a few dozen speakers.
SEPARATIONS = {"default": ((0.66, 0.19), (0.18, 0.14)), "clear": ((0.85, 0.07), (0.08, 0.05))}


def _draw_severity(rng: np.random.Generator, label: int, separation: str = "default") -> float:
    patients, controls = SEPARATIONS[separation]
    mean, sd = patients if label == 1 else controls
    return float(np.clip(rng.normal(mean, sd), 0.0, 1.0))


def draw_profile(rng: np.random.Generator, label: int, severity: float | None = None, separation: str = "default") -> SpeakerProfile:
    """Draw a speaker of class ``label`` (1 patient, 0 control); ``severity`` overrides the latent."""
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (control) or 1 (patient), got {label!r}")
    s = _draw_severity(rng, label, separation) if severity is None else float(np.clip(severity, 0.0, 1.0))
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(round(rng.normal(56 if label else 44, 14)), 18, 90))
    if sex == "F":
        # Post-menopausal lowering of female F0.
        f0 = rng.normal(205, 18) - 0.6 * max(age - 50, 0)
        fscale = rng.normal(1.16, 0.035)
    else:
        f0 = rng.normal(118, 13) + 0.3 * max(age - 60, 0)
        fscale = rng.normal(1.0, 0.035)
    # Each cue = latent effect + its own speaker noise, so cues disagree with
    # each other and with the label now and then.
    n = rng.normal(size=9)
    return SpeakerProfile(
        label=label,
        severity=s,
        sex=sex,
        age=age,
        f0_hz=float(np.clip(f0, 75, 300)),
        formant_scale=float(fscale),
        syllable_rate=float(np.clip(5.6 - 2.2 * s + 0.35 * n[0], 2.6, 7.5)),
        group_syllables=float(np.clip(13.0 - 10.0 * s + 1.2 * n[1], 2.5, 16.0)),
        pause_s=float(np.clip((0.2 + 0.9 * s) * math.exp(0.2 * n[2]), 0.15, 1.8)),
        hesitation_p=float(np.clip(0.01 + 0.1 * s + 0.02 * n[3], 0.0, 0.25)),
        inhale_p=float(np.clip(0.2 + 0.8 * s + 0.15 * n[4], 0.0, 1.0)),
        inhale_db=float(-38.0 + 24.0 * s + 3.0 * n[5]),
        breathiness=float(np.clip(0.1 + 0.8 * s + 0.12 * n[6], 0.0, 1.0)),
        jitter=float(np.clip(0.006 + 0.008 * s + 0.002 * n[7], 0.002, 0.03)),
        shimmer=float(np.clip(0.05 + 0.07 * s + 0.02 * n[8], 0.01, 0.2)),
    )


# --------------------------------------------------------------------------
# Utterance plan
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seg:
    kind: str  # "vowel" | "nasal" | "fric" | "burst" | "inhale"
    start: float  # seconds
    end: float
    amp: float
    sound: str = ""  # vowel key for vowel/nasal, fricative key for fric
    f0_mult: float = 1.0  # intonation (declination + accent) for voiced segments


@dataclass(frozen=True)
class _OnsetShape:
    """Timing of a syllable's consonant onset, per voice family (seconds, or fractions of the syllable)."""

    closure_max: float
    closure_frac: float
    burst: float
    fric: tuple[float, float, float]  # fraction of the syllable, clipped to [lo, hi]
    fric_gain: tuple[float, float]
    nasal: tuple[float, float, float]
    nasal_amp: float


_ONSET_SF = _OnsetShape(0.045, 0.25, 0.012, (0.35, 0.05, 0.12), (0.8, 1.2), (0.3, 0.04, 0.08), 0.35)
_ONSET_H = _OnsetShape(0.05, 0.3, 0.01, (0.3, 0.04, 0.13), (0.7, 1.3), (0.25, 0.04, 0.09), 0.3)


def _onset(segs: list, onset: str, t: float, dur: float, amp: float, f0: float, rng: np.random.Generator,
           shape: _OnsetShape, fricatives: dict) -> float:
    """Append the onset's segment (plosive burst, fricative or nasal); returns where the vowel starts."""
    if onset == "p":
        closure = min(shape.closure_max, shape.closure_frac * dur)
        segs.append(_Seg("burst", t + closure, t + closure + shape.burst, 1.0))
        return t + closure + shape.burst
    if onset in fricatives:
        end = t + float(np.clip(shape.fric[0] * dur, shape.fric[1], shape.fric[2]))
        segs.append(_Seg("fric", t, end, rng.uniform(*shape.fric_gain), onset))
        return end
    if onset == "n":
        end = t + float(np.clip(shape.nasal[0] * dur, shape.nasal[1], shape.nasal[2]))
        segs.append(_Seg("nasal", t, end, shape.nasal_amp * amp, "N", f0))
        return end
    return t


def _plan_utterance(rng: np.random.Generator, prof: SpeakerProfile, duration_s: float) -> list[_Seg]:
    """Lay out breath groups, syllables, pauses and inhalations over ``duration_s``.

    Lead and tail silences are drawn independently of the class: the pipeline
    trims them, so they must not carry the label.
    """
    segs: list[_Seg] = []
    # Short helper clips (synth_clip) get proportionally shorter margins so
    # they still hold speech.
    margin = min(1.0, duration_s / 5.0)
    t = rng.uniform(0.15, 0.6) * margin
    speech_end = duration_s - rng.uniform(0.15, 0.6) * margin
    syl = 0  # index into the (repeated) sentence
    s = prof.severity

    # Many speakers inhale right before starting; patients more often/louder.
    if t > 0.4 and rng.random() < 0.6 * prof.inhale_p:
        d = min(t - 0.1, rng.uniform(0.25, 0.5))
        segs.append(_Seg("inhale", t - 0.05 - d, t - 0.05, _db(prof.inhale_db + rng.normal(0, 3))))

    while t < speech_end:
        # Breath groups vary around the speaker's habit, but less than a
        # Poisson would: a reader's breathing rhythm is fairly regular.
        n_group = max(1, int(round(rng.normal(prof.group_syllables, 0.25 * prof.group_syllables))))
        base_amp = rng.uniform(0.85, 1.1)
        k = 0
        while k < n_group:
            onset, vowel = _SENTENCE[syl % len(_SENTENCE)]
            sentence_end = syl % len(_SENTENCE) == len(_SENTENCE) - 1
            last = k == n_group - 1 or sentence_end
            pos = k / max(n_group - 1, 1)
            dur = rng.lognormal(0.0, 0.18) / prof.syllable_rate
            if last:
                dur *= 1.35  # phrase-final lengthening
            if t + dur > speech_end:
                t = speech_end
                break
            # Patients run out of air: intensity sags more across a long group.
            amp = base_amp * rng.uniform(0.85, 1.12) * (1.0 - (0.15 + 0.3 * s) * pos)
            accent = 0.06 if rng.random() < 0.3 else 0.0
            f0_mult = (1.08 - 0.16 * pos) * (1.0 + accent)
            c_end = _onset(segs, onset, t, dur, amp, f0_mult, rng, _ONSET_SF, _FRICATIVES)
            v_end = max(t + dur, c_end + 0.05)
            segs.append(_Seg("vowel", c_end, v_end, amp, vowel, f0_mult))
            t = v_end
            syl += 1
            k += 1
            if last:
                break
            if rng.random() < prof.hesitation_p:
                t += rng.uniform(0.08, 0.25)  # silent hesitation, no breath taken
        if t >= speech_end:
            break
        # Breath-group boundary: a pause, often with an audible inhalation.
        pause = max(0.12, prof.pause_s * rng.lognormal(0.0, 0.25))
        if syl % len(_SENTENCE) == 0:
            pause *= 1.3
        if pause >= 0.25 and rng.random() < prof.inhale_p:
            d = min(pause - 0.08, rng.uniform(0.25, 0.55))
            end = t + pause - 0.03
            segs.append(_Seg("inhale", end - d, end, _db(prof.inhale_db + rng.normal(0, 3))))
        t += pause
    return [g for g in segs if g.end <= duration_s]


def _db(x: float) -> float:
    return float(10.0 ** (x / 20.0))


# --------------------------------------------------------------------------
# Rendering (source-filter synthesis)
# --------------------------------------------------------------------------


def _fade(n: int, rise: int, fall: int) -> np.ndarray:
    """Unit envelope of ``n`` samples with sin^2 onset/offset ramps."""
    env = np.ones(n)
    rise, fall = min(rise, n // 2), min(fall, n // 2)
    if rise > 0:
        env[:rise] = np.sin(0.5 * np.pi * (np.arange(rise) + 0.5) / rise) ** 2
    if fall > 0:
        env[n - fall :] = np.sin(0.5 * np.pi * (np.arange(fall, 0, -1) - 0.5) / fall) ** 2
    return env


def _stft_sizes(sr: int) -> tuple[int, int]:
    """Analysis window (~32 ms at 16 kHz, a power of two) and hop (half of it)."""
    win = 2 ** int(round(math.log2(0.032 * sr)))
    return win, win // 2


def _ola_filter(x: np.ndarray, gains: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Time-varying filtering by windowed overlap-add.

    Frame ``j`` is centred on sample ``j*hop`` and multiplied in the frequency
    domain by ``gains[j]`` (length ``win+1`` for an FFT of ``2*win``; the zero
    padding keeps the filters' short impulse responses from wrapping around).
    Periodic Hann windows at half overlap sum to one, so a flat gain returns
    ``x`` unchanged. Frames whose input is silent are skipped, which makes the
    pause-heavy patient clips no slower than controls.
    """
    n = x.size
    n_frames = gains.shape[0]
    # With hop = win/2, frame j is hop-blocks j and j+1 of the padded input;
    # building frames from blocks is ~10x faster than gathering a strided view.
    padded = np.zeros((n_frames + 1) * hop)
    padded[hop : hop + n] = x
    blocks_in = padded.reshape(n_frames + 1, hop)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    block_live = np.abs(blocks_in).max(axis=1) > 0
    active = np.flatnonzero(block_live[:-1] | block_live[1:])
    out = np.zeros((n_frames + 3, hop))
    if active.size:
        frames = np.zeros((active.size, 2 * win))
        frames[:, :hop] = blocks_in[active] * window[:hop]
        frames[:, hop:win] = blocks_in[active + 1] * window[hop:]
        spec = np.fft.rfft(frames, axis=1)
        spec *= gains[active]
        filtered = np.fft.irfft(spec, n=2 * win, axis=1).reshape(active.size, 4, hop)
        # Each filtered frame spans four hops; within one slab q the target
        # rows active+q are distinct, so fancy-index += is exact.
        for q in range(4):
            out[active + q] += filtered[:, q, :]
    return out.ravel()[hop : hop + n]


def _resonance_power(freqs: np.ndarray, fc: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """|H|^2 of second-order resonators (rows) over ``freqs``; unity gain at DC."""
    fc2 = (fc**2)[:, None]
    f2 = (freqs**2)[None, :]
    return fc2**2 / ((fc2 - f2) ** 2 + (bw[:, None] * freqs[None, :]) ** 2)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFTs of clip lengths with big prime factors are ~50x slower."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, gain_of_f) -> np.ndarray:
    """White noise coloured by ``gain_of_f(freqs)`` (amplitude), unit RMS."""
    size = _fast_len(n)
    spec = np.fft.rfft(rng.standard_normal(size))
    spec *= gain_of_f(np.fft.rfftfreq(size, 1.0 / sr))
    out = np.fft.irfft(spec, n=size)[:n]
    rms = np.sqrt(np.mean(out**2))
    return out / rms if rms > 0 else out


def _band(lo: float, hi: float, order: float = 4.0):
    """Smooth band-pass magnitude response (Butterworth-like skirts)."""

    def gain(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 1e-3)
        return 1.0 / np.sqrt((1 + (lo / f) ** order) * (1 + (f / hi) ** order))

    return gain


def _breath_gain(f: np.ndarray) -> np.ndarray:
    # Inhalation: turbulence through an open glottis and a neutral tract, so
    # broad resonances near a schwa's formants on a 300 Hz - 6 kHz band.
    res = np.sqrt(_resonance_power(f, np.array([650.0, 1600.0, 2700.0]), np.array([400.0, 500.0, 600.0])))
    return _band(300.0, 6000.0, 2.0)(f) * (0.3 + res.prod(axis=0) ** 0.5)


def _render_speech(rng: np.random.Generator, prof: SpeakerProfile, plan: list[_Seg], sr: int, n: int) -> np.ndarray:
    """Render the plan to a mono signal whose voiced parts have RMS ``SPEECH_REF``."""
    win, hop = _stft_sizes(sr)
    voiced = [g for g in plan if g.kind in ("vowel", "nasal")]
    out = np.zeros(n)
    if voiced:
        out += _render_voice(rng, prof, voiced, sr, n, win, hop)
    rise = int(0.01 * sr)
    for g in plan:
        a, b = int(g.start * sr), min(int(g.end * sr), n)
        if b - a < 8:
            continue
        m = b - a
        if g.kind == "fric":
            lo, hi, level = _FRICATIVES[g.sound]
            noise = _shaped_noise(rng, m, sr, _band(lo * prof.formant_scale, min(hi, 0.45 * sr)))
            out[a:b] += noise * _fade(m, rise, rise) * g.amp * SPEECH_REF * _db(level)
        elif g.kind == "burst":
            noise = _shaped_noise(rng, m, sr, _band(500.0, min(6000.0, 0.45 * sr), 2.0))
            out[a:b] += noise * _fade(m, int(0.001 * sr), m // 2) * SPEECH_REF * _db(-4.0)
        elif g.kind == "inhale":
            noise = _shaped_noise(rng, m, sr, _breath_gain)
            # Inhalations swell and stop fairly abruptly as phonation restarts.
            env = _fade(m, int(0.6 * m), int(0.25 * m))
            out[a:b] += noise * env * g.amp * SPEECH_REF
    return out


def _voicing_envelope(voiced: list[_Seg], sr: int, n: int, rise_s: float, fall_s: float) -> np.ndarray:
    """Sample-level voicing envelope: each voiced segment's amplitude with faded edges (one loop over ~50 syllables)."""
    env = np.zeros(n)
    rise, fall = int(rise_s * sr), int(fall_s * sr)
    for g in voiced:
        a, e = int(g.start * sr), min(int(g.end * sr), n)
        if e > a:
            env[a:e] = np.maximum(env[a:e], g.amp * _fade(e - a, rise, fall))
    return env


def _segment_per_frame(voiced: list[_Seg], sr: int, n: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame centres in seconds, index of the voiced segment that drives each frame's control targets).

    The last voiced segment started at or before a frame's centre supplies its targets (held
    through gaps, where the voicing envelope is zero anyway); callers smooth them for coarticulation.
    """
    n_frames = n // hop + 2
    centres = np.arange(n_frames) * hop / sr
    starts = np.array([g.start for g in voiced])
    return centres, np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(voiced) - 1)


def _render_voice(
    rng: np.random.Generator, prof: SpeakerProfile, voiced: list[_Seg], sr: int, n: int, win: int, hop: int
) -> np.ndarray:
    """Glottal pulses + aspiration noise through time-varying formant filters."""
    b = prof.breathiness
    env = _voicing_envelope(voiced, sr, n, 0.015, 0.03)
    centres, idx = _segment_per_frame(voiced, sr, n, hop)
    n_frames = len(centres)

    f0_targets = prof.f0_hz * np.array([g.f0_mult for g in voiced])
    f0_frames = _smooth(f0_targets[idx], 5)
    # Slow random drift of a few percent keeps the contour from looking stepped.
    drift = _smooth(rng.normal(0.0, 0.02, n_frames), 9) * 2.0
    f0_frames = f0_frames * (1.0 + drift)
    f0 = np.interp(np.arange(n) / sr, centres, f0_frames)

    # Glottal pulses at fractional positions, with jitter and shimmer.
    phase = np.cumsum(f0 / sr)
    cyc = np.floor(phase)
    at = np.flatnonzero(np.diff(cyc)) + 1
    period = sr / f0[at]
    pos = at - (phase[at] - cyc[at]) * period + prof.jitter * period * rng.standard_normal(at.size)
    amps = np.maximum(1.0 + prof.shimmer * rng.standard_normal(at.size), 0.2)
    keep = (pos >= 0) & (pos < n - 1)
    pos, amps = pos[keep], amps[keep]
    i0 = pos.astype(np.int64)
    w = pos - i0
    pulses = np.bincount(i0, amps * (1 - w), minlength=n)[:n] + np.bincount(i0 + 1, amps * w, minlength=n + 1)[:n]

    # Aspiration: noise bursts in the open phase of each cycle, pre-emphasised
    # so it stays flat-ish after the source tilt; breathier voices have more.
    asp = rng.standard_normal(n + 1)
    asp = asp[1:] - 0.9 * asp[:-1]
    asp *= 0.55 + 0.45 * np.cos(2 * np.pi * phase)
    asp_db = -32.0 + 30.0 * b
    excitation = (pulses + asp * np.sqrt(f0 / sr) * _db(asp_db)) * env

    # Vocal-tract filter per voiced segment (formants jittered per syllable),
    # then per frame; smoothing the frame gains gives formant transitions.
    targets = np.array([_VOWELS[g.sound] for g in voiced]) * prof.formant_scale
    targets *= 1.0 + 0.03 * rng.standard_normal(targets.shape)
    bws = np.broadcast_to(_BANDWIDTHS * prof.formant_scale, targets.shape).copy()
    bws[:, 0] *= 1.0 + 1.2 * b  # breathy voice: damped F1, weaker low harmonics
    freqs = np.fft.rfftfreq(2 * win, 1.0 / sr)
    power = np.ones((len(voiced), freqs.size))
    for k in range(targets.shape[1]):
        power *= _resonance_power(freqs, targets[:, k], bws[:, k])
    # Source spectral tilt: -6 dB/oct modal, steeper when breathy.
    alpha = 1.0 + 1.2 * b
    tilt = (1.0 + (freqs / 250.0) ** 2) ** (-alpha / 2.0)
    seg_gain = np.sqrt(power) * tilt
    frame_gain = _smooth(seg_gain[idx], 3)
    voice = _ola_filter(excitation, frame_gain, win, hop)

    active = env > 0.3 * env.max() if env.max() > 0 else env > 0
    rms = np.sqrt(np.mean(voice[active] ** 2)) if active.any() else 0.0
    return voice * (SPEECH_REF / rms) if rms > 0 else voice


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along axis 0, edges held."""
    if width <= 1 or x.shape[0] < 2:
        return x
    pad = width // 2
    padded = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], width - 1 - pad, axis=0)])
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    return (c[width:] - c[:-width]) / width


# --------------------------------------------------------------------------
# Second voice family: harmonic-plus-noise synthesis (benchmark sets only)
# --------------------------------------------------------------------------
#
# The same speaker profile (severity -> pauses, breath groups, rate,
# breathiness, inhalations, jitter/shimmer) rendered by a different production
# model, so a benchmark can test whether a model learnt the respiratory cues or
# the synthesiser: another text, gamma-distributed timing, a hat-pattern
# intonation, filled (voiced) hesitations, and a voice made of a sum of
# harmonics under a Gaussian-peak spectral envelope whose breathiness is a
# harmonics-to-noise ratio, not aspiration pulses through all-pole resonators.

# F1..F4 (Hz) for the harmonic family: a different speaker population's table.
_VOWELS_H: dict[str, tuple[float, float, float, float]] = {
    "i": (280, 2350, 2950, 3800),
    "e": (400, 2100, 2700, 3650),
    "E": (560, 1800, 2600, 3650),
    "a": (760, 1350, 2600, 3600),
    "O": (590, 1000, 2500, 3500),
    "o": (430, 900, 2450, 3450),
    "u": (330, 820, 2400, 3350),
    "N": (250, 1200, 2250, 3200),
    "@": (500, 1500, 2500, 3500),  # schwa of a filled pause
}
# "Voce precisa respirar bem fundo antes de ler este texto com calma e atencao"
_SENTENCE_H: tuple[tuple[str, str], ...] = (
    ("f", "o"), ("s", "e"), ("p", "e"), ("s", "i"), ("s", "a"), ("", "e"), ("s", "i"), ("p", "i"),
    ("", "a"), ("p", "e"), ("n", "u"), ("f", "u"), ("", "o"), ("", "a"), ("n", "i"), ("p", "e"),
    ("", "e"), ("", "e"), ("s", "e"), ("p", "e"), ("s", "o"), ("n", "o"), ("p", "a"), ("", "a"),
    ("", "e"), ("", "a"), ("s", "a"), ("", "o"),
)
_FRICATIVES_H = {"s": (4500.0, 0.35, -10.0), "S": (3200.0, 0.4, -11.0), "f": (2500.0, 0.9, -22.0)}


def _plan_utterance_harmonic(rng: np.random.Generator, prof: SpeakerProfile, duration_s: float) -> list[_Seg]:
    """Like _plan_utterance but with its own text, timing laws and intonation."""
    segs: list[_Seg] = []
    margin = min(1.0, duration_s / 5.0)
    t = rng.uniform(0.1, 0.7) * margin
    speech_end = duration_s - rng.uniform(0.1, 0.7) * margin
    syl = 0
    s = prof.severity
    if t > 0.4 and rng.random() < 0.5 * prof.inhale_p:
        d = min(t - 0.1, rng.uniform(0.2, 0.45))
        segs.append(_Seg("inhale", t - 0.05 - d, t - 0.05, _db(prof.inhale_db + rng.normal(0, 4))))
    while t < speech_end:
        n_group = max(1, int(round(rng.gamma(6.0, prof.group_syllables / 6.0))))
        base_amp = rng.uniform(0.8, 1.15)
        k = 0
        while k < n_group:
            onset, vowel = _SENTENCE_H[syl % len(_SENTENCE_H)]
            last = k == n_group - 1
            pos = k / max(n_group - 1, 1)
            dur = rng.gamma(9.0, 1.0 / (9.0 * prof.syllable_rate))
            if last:
                dur *= 1.5
            if t + dur > speech_end:
                t = speech_end
                break
            amp = base_amp * rng.uniform(0.8, 1.15) * (1.0 - (0.1 + 0.35 * s) * pos**1.5)
            # Hat pattern: rise over the first syllables, slow plateau, final fall.
            hat = min(1.0, (k + 1) / 2.0) * 0.12 + 1.0 - 0.05 * pos - (0.14 if last else 0.0)
            c_end = _onset(segs, onset, t, dur, amp, hat, rng, _ONSET_H, _FRICATIVES_H)
            v_end = max(t + dur, c_end + 0.05)
            segs.append(_Seg("vowel", c_end, v_end, amp, vowel, hat))
            t = v_end
            syl += 1
            k += 1
            if last:
                break
            if rng.random() < prof.hesitation_p:
                if rng.random() < 0.5:  # filled pause ("ahn"), low and flat
                    d = rng.uniform(0.12, 0.3)
                    segs.append(_Seg("vowel", t + 0.03, t + 0.03 + d, 0.45 * amp, "@", 0.92))
                    t += d + 0.06
                else:
                    t += rng.uniform(0.06, 0.22)
        if t >= speech_end:
            break
        pause = max(0.1, rng.gamma(4.0, prof.pause_s / 4.0))
        if pause >= 0.22 and rng.random() < prof.inhale_p:
            d = min(pause - 0.06, rng.uniform(0.2, 0.6))
            end = t + pause - 0.04
            segs.append(_Seg("inhale", end - d, end, _db(prof.inhale_db + 2.0 + rng.normal(0, 4))))
        t += pause
    return [g for g in segs if g.end <= duration_s]


def _gauss_envelope(freqs: np.ndarray, fmts: np.ndarray, widths: np.ndarray, tilt_db_oct: np.ndarray) -> np.ndarray:
    """Amplitude envelope [frames, len(freqs)]: Gaussian formant peaks on a tilted floor."""
    gains = np.array([1.0, 0.55, 0.3, 0.18])
    f = freqs[None, None, :]
    peaks = (gains[None, :, None] * np.exp(-0.5 * ((f - fmts[:, :, None]) / widths[:, :, None]) ** 2)).sum(axis=1)
    octs = np.log2(np.maximum(freqs, 150.0) / 150.0)
    return (0.04 + peaks) * 10.0 ** (-(tilt_db_oct[:, None] * octs[None, :]) / 20.0)


def _render_harmonic(rng: np.random.Generator, prof: SpeakerProfile, plan: list[_Seg], sr: int, n: int) -> np.ndarray:
    """Harmonic-plus-noise rendering of a plan; voiced parts at RMS ``SPEECH_REF``."""
    win, hop = _stft_sizes(sr)
    b = prof.breathiness
    voiced = [g for g in plan if g.kind in ("vowel", "nasal")]
    out = np.zeros(n)
    if voiced:
        env = _voicing_envelope(voiced, sr, n, 0.025, 0.02)
        centres, idx = _segment_per_frame(voiced, sr, n, hop)
        n_frames = len(centres)
        f0_frames = _smooth(prof.f0_hz * np.array([g.f0_mult for g in voiced])[idx], 7)
        # Jitter as fast F0 perturbation, drift as a slow one.
        f0_frames = f0_frames * (1.0 + _smooth(rng.normal(0.0, 0.015, n_frames), 15) * 2.5)
        f0 = np.interp(np.arange(n) / sr, centres, f0_frames)
        f0 = f0 * (1.0 + prof.jitter * 1.5 * np.repeat(rng.standard_normal(n // 64 + 1), 64)[:n])
        phase = 2 * np.pi * np.cumsum(f0 / sr)
        cycle = np.floor(phase / (2 * np.pi)).astype(np.int64)
        shim = np.maximum(1.0 + prof.shimmer * rng.standard_normal(int(cycle[-1]) + 2), 0.2)[cycle]

        fmts = np.array([_VOWELS_H[g.sound] for g in voiced]) * prof.formant_scale * 1.02
        fmts = fmts * (1.0 + 0.04 * rng.standard_normal(fmts.shape))
        fmt_frames = _smooth(fmts[idx], 5)
        widths = np.broadcast_to(np.array([70.0, 90.0, 130.0, 180.0]), fmt_frames.shape).copy()
        widths[:, 0] *= 1.0 + 1.5 * b
        tilt = np.full(n_frames, 9.0 + 8.0 * b)
        k_max = int(min(0.45 * sr, 6000.0) / max(prof.f0_hz * 0.8, 60.0))
        voice = np.zeros(n)
        # Linear interpolation frame -> sample, shared by every harmonic.
        pos = np.arange(n) / hop
        i0 = np.minimum(pos.astype(np.int64), n_frames - 2)
        w = pos - i0
        gains = np.array([1.0, 0.55, 0.3, 0.18])
        # sin(k*phase) by the Chebyshev recurrence: one multiply-add per harmonic.
        s_prev, s_cur, c2 = np.zeros(n), np.sin(phase), 2.0 * np.cos(phase)
        for k in range(1, k_max + 1):
            fk = k * f0_frames
            fk_c = np.minimum(fk, 0.48 * sr)
            peaks = (gains[None, :] * np.exp(-0.5 * ((fk_c[:, None] - fmt_frames) / widths) ** 2)).sum(axis=1)
            octs = np.log2(np.maximum(fk_c, 150.0) / 150.0)
            a_frames = (0.04 + peaks) * 10.0 ** (-(tilt * octs) / 20.0)
            # Breathy voices lose their upper harmonics into noise.
            a_frames = a_frames / (1.0 + b * (fk_c / 1800.0) ** 2)
            a_frames = np.where(fk < 0.48 * sr, a_frames, 0.0)
            voice += (a_frames[i0] * (1.0 - w) + a_frames[i0 + 1] * w) * s_cur
            s_prev, s_cur = s_cur, c2 * s_cur - s_prev
        voice *= shim
        # Noise part: white noise under the same envelope, pulsed at F0.
        freqs = np.fft.rfftfreq(2 * win, 1.0 / sr)
        nenv = _gauss_envelope(freqs, fmt_frames, widths * 1.5, tilt * 0.6)
        noise = _ola_filter(rng.standard_normal(n) * (0.6 + 0.4 * np.cos(phase)), nenv, win, hop)
        hnr_db = 24.0 - 26.0 * b
        v_rms = np.sqrt(np.mean(voice[env > 0] ** 2)) if (env > 0).any() else 1.0
        n_rms = np.sqrt(np.mean(noise[env > 0] ** 2)) if (env > 0).any() else 1.0
        if n_rms > 0:
            voice += noise * (v_rms / n_rms) * _db(-hnr_db)
        voice *= env
        active = env > 0.3 * env.max() if env.max() > 0 else env > 0
        rms = np.sqrt(np.mean(voice[active] ** 2)) if active.any() else 0.0
        out += voice * (SPEECH_REF / rms) if rms > 0 else voice
    rise = int(0.008 * sr)
    for g in plan:
        a, e = int(g.start * sr), min(int(g.end * sr), n)
        if e - a < 8:
            continue
        m = e - a
        if g.kind == "fric":
            centre, rel_bw, level = _FRICATIVES_H[g.sound]
            c = min(centre * prof.formant_scale, 0.4 * sr)
            shape = lambda f, c=c, w=rel_bw: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / c) / w) ** 2)
            out[a:e] += _shaped_noise(rng, m, sr, shape) * _fade(m, rise, rise) * g.amp * SPEECH_REF * _db(level)
        elif g.kind == "burst":
            noise = _shaped_noise(rng, m, sr, _band(800.0, min(5000.0, 0.45 * sr), 3.0))
            out[a:e] += noise * _fade(m, int(0.001 * sr), m // 3) * SPEECH_REF * _db(-6.0)
        elif g.kind == "inhale":
            noise = _shaped_noise(rng, m, sr, _band(400.0, min(4500.0, 0.45 * sr), 3.0))
            env_i = np.sin(np.pi * (np.arange(m) + 0.5) / m) ** 1.5
            out[a:e] += noise * env_i * g.amp * SPEECH_REF
    return out


# --------------------------------------------------------------------------
# Recording chain (channel) options (benchmark sets only)
# --------------------------------------------------------------------------


def _fft_gain(x: np.ndarray, sr: int, gain_of_f) -> np.ndarray:
    """Zero-phase filtering of a mono or [n, 2] signal by an amplitude response."""
    size = _fast_len(x.shape[0])
    spec = np.fft.rfft(x, n=size, axis=0)
    g = gain_of_f(np.fft.rfftfreq(size, 1.0 / sr))
    spec *= g[:, None] if x.ndim == 2 else g
    return np.fft.irfft(spec, n=size, axis=0)[: x.shape[0]]


def _resample_fft(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling by FFT truncation/padding (axis 0)."""
    n_out = int(round(x.shape[0] * sr_out / sr_in))
    spec = np.fft.rfft(x, axis=0)
    m = n_out // 2 + 1
    if spec.shape[0] >= m:
        spec = spec[:m]
    else:
        pad = [(0, m - spec.shape[0])] + [(0, 0)] * (x.ndim - 1)
        spec = np.pad(spec, pad)
    return np.fft.irfft(spec, n=n_out, axis=0) * (n_out / x.shape[0])


def _shelf(f: np.ndarray, fc: float, gain_db: float, high: bool) -> np.ndarray:
    r = (f / fc) ** 2
    w = r / (1 + r) if high else 1 / (1 + r)
    return 10.0 ** (gain_db * w / 20.0)


def _apply_channel(rng: np.random.Generator, x: np.ndarray, sr: int, channel: str) -> tuple[np.ndarray, int, str]:
    """Recording chain applied to an assembled clip: (signal, sample rate, channel used)."""
    if channel == "mixed":
        channel = ("clean", "telephone", "8k", "gain", "mic_eq")[int(rng.integers(5))]
    if channel == "telephone":
        x = _fft_gain(x, sr, _band(300.0, 3400.0, 8.0))
        x = np.tanh(3.0 * x / max(np.max(np.abs(x)), 1e-9)) / 3.0 * max(np.max(np.abs(x)), 1e-9)  # mild codec/amp compression
    elif channel == "8k":
        x = _resample_fft(x, sr, 8000)
        sr = 8000
    elif channel == "gain":
        x = x * _db(rng.uniform(-20.0, 10.0))
    elif channel == "mic_eq":
        lo_f, lo_g = rng.uniform(120.0, 400.0), rng.uniform(-12.0, 6.0)
        hi_f, hi_g = rng.uniform(1500.0, 5000.0), rng.uniform(-14.0, 6.0)
        pk_f, pk_g = math.exp(rng.uniform(math.log(300.0), math.log(4000.0))), rng.uniform(-9.0, 9.0)

        def eq(f: np.ndarray) -> np.ndarray:
            peak = 10.0 ** (pk_g * np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / pk_f) / 0.5) ** 2) / 20.0)
            return _shelf(np.maximum(f, 1.0), lo_f, lo_g, False) * _shelf(np.maximum(f, 1.0), hi_f, hi_g, True) * peak

        x = _fft_gain(x, sr, eq)
    elif channel != "clean":
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    return x, sr, channel


# --------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------


def _pink(rng: np.random.Generator, n: int, sr: int, lo: float = 20.0) -> np.ndarray:
    return _shaped_noise(rng, n, sr, lambda f: 1.0 / np.sqrt(np.maximum(f, lo)))


def _babble(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    # Distant conversations on the ward: several synthetic talkers of random
    # sex and severity, muffled by distance (high frequencies rolled off).
    out = np.zeros(n)
    for _ in range(int(rng.integers(5, 9))):
        prof = draw_profile(rng, int(rng.integers(0, 2)), severity=rng.uniform(0, 1))
        # Talkers of 4-7 s looped at different lengths: with several summed
        # the loops are inaudible, and rendering stays cheap for long noises.
        m = min(n, int(rng.uniform(4.0, 7.0) * sr))
        voice = _render_speech(rng, prof, _plan_utterance(rng, prof, m / sr), sr, m)
        voice = np.resize(voice, n)
        out += np.roll(voice, int(rng.integers(0, n))) * _db(rng.uniform(-4, 2))
    size = _fast_len(n)
    spec = np.fft.rfft(out, n=size)
    spec *= _band(100.0, 2000.0, 4.0)(np.fft.rfftfreq(size, 1.0 / sr))
    return np.fft.irfft(spec, n=size)[:n]


def _beeps(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    # Patient monitor: a short tone every heartbeat, now and then a triple alarm.
    t = np.arange(n) / sr
    out = 0.02 * _pink(rng, n, sr)
    tone = rng.choice([880.0, 960.0, 1000.0, 1200.0])
    interval = rng.uniform(0.6, 1.3)
    start = rng.uniform(0, interval)
    while start < t[-1]:
        count, gap = (3, 0.18) if rng.random() < 0.08 else (1, 0.0)
        for j in range(count):
            a = int((start + j * gap) * sr)
            m = min(int(rng.uniform(0.08, 0.15) * sr), n - a)
            if m <= 16:
                continue
            tt = t[a : a + m]
            wave = np.sin(2 * np.pi * tone * tt) + 0.3 * np.sin(2 * np.pi * 2 * tone * tt)
            out[a : a + m] += wave * _fade(m, int(0.005 * sr), int(0.005 * sr))
        start += interval * rng.uniform(0.97, 1.03)
    return out


def _hum(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    # Brazilian mains is 60 Hz; ballasts and transformers add odd harmonics.
    t = np.arange(n) / sr
    base = 60.0 * (1.0 + 0.002 * rng.standard_normal())
    wobble = 1.0 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
    out = np.zeros(n)
    for h, level in ((1, 1.0), (2, 0.5), (3, 0.6), (5, 0.3), (7, 0.15)):
        if h * base < 0.45 * sr:
            out += level * rng.uniform(0.6, 1.2) * np.sin(2 * np.pi * h * base * t + rng.uniform(0, 2 * np.pi))
    return out * wobble + 0.05 * _pink(rng, n, sr)


def _fan(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    # Ventilation: low-passed broadband airflow plus blade-pass tones, slowly
    # fluctuating in level.
    t = np.arange(n) / sr
    air = _shaped_noise(rng, n, sr, _band(40.0, rng.uniform(800, 2000), 2.0))
    blade = rng.uniform(70.0, 160.0)
    tones = sum(0.3 / h * np.sin(2 * np.pi * h * blade * t + rng.uniform(0, 6.3)) for h in (1, 2, 3))
    am = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return (air + tones) * am


def synth_noise(rng: np.random.Generator, kind: str, sample_rate: int, duration_s: float) -> np.ndarray:
    """Hospital-ward-like noise, float32 mono, RMS about -26 dBFS, peak below 0.95.

    ``kind``: ``babble`` (distant talkers), ``beeps`` (patient monitor), ``hum``
    (60 Hz mains), ``fan`` (ventilation), ``ward`` (a random mix of those) or
    ``room`` (a quiet pink floor).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    if sample_rate <= 0 or duration_s <= 0:
        raise ValueError(f"sample_rate and duration_s must be positive (got {sample_rate}, {duration_s})")
    n = max(int(round(duration_s * sample_rate)), 1)
    makers = {"babble": _babble, "beeps": _beeps, "hum": _hum, "fan": _fan}
    if kind in makers:
        out = _unit(makers[kind](rng, sample_rate, n))
    elif kind == "room":
        out = _unit(_pink(rng, n, sample_rate))
    else:
        parts = list(makers)
        chosen = [p for p in parts if rng.random() < 0.6] or [parts[int(rng.integers(len(parts)))]]
        out = sum(_unit(makers[p](rng, sample_rate, n)) * _db(rng.uniform(-8, 0)) for p in chosen)
        out = _unit(out)
    out = out * 0.05
    peak = np.max(np.abs(out))
    if peak > 0.95:
        out *= 0.95 / peak
    return out.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


# --------------------------------------------------------------------------
# Clip assembly
# --------------------------------------------------------------------------


def _resample_linear(x: np.ndarray, sr_in: int, sr_out: int, n_out: int) -> np.ndarray:
    # Only used to bring 16 kHz bank noise up to 22.05/44.1 kHz clips; linear
    # interpolation is adequate for noise that is already band-limited.
    if sr_in == sr_out:
        return x[:n_out]
    t_out = np.arange(n_out) / sr_out
    return np.interp(t_out, np.arange(x.size) / sr_in, x)


def _assemble(
    rng: np.random.Generator,
    prof: SpeakerProfile,
    sr: int,
    duration_s: float,
    background: np.ndarray | None,
    snr_db: float,
    channels: int,
    voice: str = "source_filter",
) -> np.ndarray:
    """Speech + room floor (+ ward background at ``snr_db``), recording gain, channels."""
    n = int(round(duration_s * sr))
    if voice == "harmonic":
        plan = _plan_utterance_harmonic(rng, prof, duration_s)
        x = _render_harmonic(rng, prof, plan, sr, n)
    else:
        plan = _plan_utterance(rng, prof, duration_s)
        x = _render_speech(rng, prof, plan, sr, n)
    x += _pink(rng, n, sr) * SPEECH_REF * _db(rng.uniform(*_ROOM_FLOOR_DB))
    if background is not None:
        # SNR is set against the voiced-speech level, not the clip RMS, so the
        # noise sits at the same level under patients' and controls' speech.
        x += _unit(background) * SPEECH_REF * _db(-snr_db)
    if channels == 2:
        # A second mic a little further away: delayed, quieter, own floor.
        delay = int(rng.integers(1, 24))
        right = np.concatenate([np.zeros(delay), x[:-delay]]) * rng.uniform(0.7, 0.95)
        right += _pink(rng, n, sr) * SPEECH_REF * _db(-55)
        x = np.stack([x, right], axis=1)
    # Recording gain varies by device; the pipeline RMS-normalises anyway.
    x = x * (_db(rng.uniform(-30.0, -18.0)) / SPEECH_REF)
    peak = np.max(np.abs(x))
    if peak > 0.95:
        x *= 0.95 / peak
    return x.astype(np.float32)


def synth_clip(
    rng: np.random.Generator,
    label: int,
    sample_rate: int = 16000,
    duration_s: float = 6.0,
    severity: float | None = None,
) -> np.ndarray:
    """One speech-like clip of class ``label`` (float32 mono in [-1, 1]).

    Only a quiet room floor is added (no ward noise); ``severity`` in [0, 1]
    overrides the speaker's latent (0 = healthy-sounding, 1 = severe).
    """
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz for speech, got {sample_rate}")
    if duration_s < 0.5:
        raise ValueError(f"duration_s must be at least 0.5 s, got {duration_s}")
    prof = draw_profile(rng, label, severity)
    return _assemble(rng, prof, sample_rate, duration_s, None, 0.0, 1)


# --------------------------------------------------------------------------
# Dataset writing
# --------------------------------------------------------------------------


@dataclass
class DemoSummary:
    """What :func:`generate_demo_dataset` wrote."""

    out_dir: str
    seed: int
    n_clips: int
    n_patients: int
    n_controls: int
    csv_paths: list[str]
    noise_dir: str
    noise_paths: list[str]
    sample_rates: dict[int, int] = field(default_factory=dict)  # rate -> clip count
    n_stereo: int = 0
    n_flac: int = 0
    n_ward_noise: int = 0  # clips with ward background noise
    ward_noise_by_class: dict[int, int] = field(default_factory=dict)  # label -> noisy clips
    audio_seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        # JSON object keys must be strings.
        d["sample_rates"] = {str(k): v for k, v in sorted(self.sample_rates.items())}
        d["ward_noise_by_class"] = {str(k): v for k, v in sorted(self.ward_noise_by_class.items())}
        return d


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def speaker_latents(speakers: int = 200, seed: int = 0, *, speaker_prefix: str | None = None, separation: str = "default") -> dict[str, dict]:
    """Per speaker id: label and latent severity of ``generate_demo_dataset(speakers, seed)``.

    Recomputed from the same random streams (nothing is read or written), so
    it holds for every voice/channel/noise option. Used to measure how well the
    latent itself separates the classes on a split (the task's ceiling).
    """
    prefix = f"s{seed}-" if speaker_prefix is None else speaker_prefix
    labels = np.random.default_rng([seed, 0]).permutation(np.arange(speakers) % 2)
    out = {}
    for i in range(speakers):
        prof = draw_profile(np.random.default_rng([seed, 1, i]), int(labels[i]), separation=separation)
        out[f"{prefix}{i:04d}"] = {"label": int(labels[i]), "severity": prof.severity}
    return out


def generate_demo_dataset(
    out_dir: str | Path,
    speakers: int = 200,
    seed: int = 0,
    *,
    noise_files: int = 6,
    speaker_prefix: str | None = None,
    voice: str = "source_filter",
    channel: str = "clean",
    noise_placement: str = "both",
    separation: str = "default",
) -> DemoSummary:
    """Write a SPIRA-format synthetic dataset of one clip per speaker under ``out_dir``.

    Layout: ``metadata.csv`` + ``audio/`` (about two thirds of the speakers, HC-SP
    and ICESP), ``hospital_b/metadata.csv`` + ``hospital_b/audio/`` (the rest,
    HU-B), ``noises/ward_XX.wav`` (16 kHz ward noise for augmentation). Each
    CSV's ``file_path`` is relative to that CSV's folder. The same arguments
    give byte-identical files. Speaker ids are ``{speaker_prefix}{index:04d}``;
    the default prefix ``s{seed}-`` keeps datasets with different seeds
    speaker-disjoint when they are combined.

    Benchmark options (the defaults give the demo set, byte for byte):

    * ``voice``: ``source_filter`` (default) or ``harmonic``, a second voice
      family with its own text, timing laws, intonation and a
      harmonic-plus-noise voice (same speakers and severities for the same seed);
    * ``channel``: recording chain after mixing: ``clean`` (default),
      ``telephone`` (300-3400 Hz band, mild compression), ``8k`` (files
      resampled to and written at 8 kHz), ``gain`` (-20..+10 dB before the
      recorder's peak limit), ``mic_eq`` (random shelves and a peak, per clip)
      or ``mixed`` (one of those per clip, drawn from its own stream);
    * ``noise_placement``: ward background in ``both`` classes (default, 40% of
      clips), ``patients`` only (80% of patients, no control) or ``none``.
    """
    if voice not in VOICE_FAMILIES:
        raise ValueError(f"unknown voice family {voice!r}; expected one of {', '.join(VOICE_FAMILIES)}")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    if noise_placement not in NOISE_PLACEMENTS:
        raise ValueError(f"unknown noise_placement {noise_placement!r}; expected one of {', '.join(NOISE_PLACEMENTS)}")
    if separation not in SEPARATIONS:
        raise ValueError(f"unknown separation {separation!r}; expected one of {', '.join(SEPARATIONS)}")
    if isinstance(speakers, bool) or not isinstance(speakers, int) or speakers < 2:
        raise ValueError(f"speakers must be an integer >= 2 (one clip each, both classes), got {speakers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(noise_files, bool) or not isinstance(noise_files, int) or noise_files < 0:
        raise ValueError(f"noise_files must be a non-negative integer, got {noise_files!r}")
    out = Path(out_dir)
    prefix = f"s{seed}-" if speaker_prefix is None else speaker_prefix

    # Dataset-level draws (labels, hospitals, formats) come from their own
    # stream; each speaker has its own stream so clips don't depend on order.
    ds_rng = np.random.default_rng([seed, 0])
    labels = ds_rng.permutation(np.arange(speakers) % 2)
    in_b = np.zeros(speakers, dtype=bool)
    in_b[ds_rng.permutation(speakers)[: round(speakers / 3)]] = True
    formats: list[tuple[int, int, str]] = []
    while len(formats) < speakers:
        block = list(_FORMAT_BLOCK)
        formats.extend(block[i] for i in ds_rng.permutation(len(block)))

    # Background recordings of the wards the clips were made in: the same
    # kinds of noise as noises/, but different takes.
    bank_kinds = ("babble", "beeps", "hum", "fan", "ward", "ward", "ward", "ward")
    bank = [
        synth_noise(np.random.default_rng([seed, 2, k]), kind, _NOISE_BANK_RATE, _BANK_SECONDS).astype(np.float64)
        for k, kind in enumerate(bank_kinds)
    ]

    rows_main: list[dict] = []
    rows_b: list[dict] = []
    summary = DemoSummary(
        out_dir=str(out),
        seed=seed,
        n_clips=speakers,
        n_patients=int(labels.sum()),
        n_controls=int(speakers - labels.sum()),
        csv_paths=[],
        noise_dir=str(out / "noises"),
        noise_paths=[],
    )
    for i in range(speakers):
        rng = np.random.default_rng([seed, 1, i])
        label = int(labels[i])
        prof = draw_profile(rng, label, separation=separation)
        sr, channels, fmt = formats[i]
        duration = float(rng.uniform(5.0, 10.0))
        background = None
        snr = 0.0
        # Drawn independently of the label: ward noise must not be a class cue
        # (except in the "patients" placement, a deliberate confound).
        u = rng.random()
        if noise_placement == "both":
            noisy = u < _WARD_NOISE_FRACTION
        elif noise_placement == "patients":
            noisy = label == 1 and u < 2 * _WARD_NOISE_FRACTION
        else:
            noisy = False
        if noisy:
            src = bank[int(rng.integers(len(bank)))]
            need = int(math.ceil(duration * _NOISE_BANK_RATE)) + 2
            start = int(rng.integers(0, src.size - need))
            background = _resample_linear(src[start : start + need], _NOISE_BANK_RATE, sr, int(round(duration * sr)))
            snr = float(rng.uniform(*_WARD_SNR_DB))
            summary.n_ward_noise += 1
            summary.ward_noise_by_class[label] = summary.ward_noise_by_class.get(label, 0) + 1
        audio = _assemble(rng, prof, sr, duration, background, snr, channels, voice)
        if channel != "clean":
            audio, sr, _used = _apply_channel(np.random.default_rng([seed, 4, i]), audio.astype(np.float64), sr, channel)
            peak = np.max(np.abs(audio))
            if peak > 0.95:
                audio = audio * (0.95 / peak)
            audio = audio.astype(np.float32)

        speaker_id = f"{prefix}{i:04d}"
        ext = "flac" if fmt == "FLAC" else "wav"
        rel = f"audio/{speaker_id}.{ext}"
        root = out / "hospital_b" if in_b[i] else out
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, audio, sr, subtype="PCM_16", format=fmt)
        hospital = HOSPITAL_B if in_b[i] else HOSPITALS_MAIN[int(rng.integers(len(HOSPITALS_MAIN)))]
        row = {
            "file_path": rel,
            "class": label,
            "sexo": prof.sex,
            "idade": prof.age,
            "nivel_falta_de_ar": prof.dyspnea_level,
            "speaker_id": speaker_id,
            "hospital": hospital,
        }
        (rows_b if in_b[i] else rows_main).append(row)
        summary.sample_rates[sr] = summary.sample_rates.get(sr, 0) + 1
        summary.n_stereo += channels == 2
        summary.n_flac += fmt == "FLAC"
        summary.audio_seconds += audio.shape[0] / sr

    for path, rows in ((out / "metadata.csv", rows_main), (out / "hospital_b" / "metadata.csv", rows_b)):
        if rows:
            _write_csv(path, rows)
            summary.csv_paths.append(str(path))

    noise_dir = out / "noises"
    noise_dir.mkdir(parents=True, exist_ok=True)
    file_kinds = ("babble", "beeps", "hum", "fan", "ward")
    for k in range(noise_files):
        rng = np.random.default_rng([seed, 3, k])
        kind = file_kinds[k] if k < len(file_kinds) else "ward"
        noise = synth_noise(rng, kind, 16000, float(rng.uniform(10.0, 20.0)))
        path = noise_dir / f"ward_{k:02d}.wav"
        sf.write(path, noise, 16000, subtype="PCM_16", format="WAV")
        summary.noise_paths.append(str(path))
    summary.audio_seconds = round(summary.audio_seconds, 3)
    return summary

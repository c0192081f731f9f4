"""Validated configuration for the whole pipeline.

Every knob lives here as a pydantic model with SPIRA's published defaults
(Casanova et al. 2021). Configs are loaded from YAML and/or dotted overrides;
a bad value fails early with a message that names the field, e.g.
``config field 'training.lr': Input should be greater than 0 (got -1)``.

``extra="forbid"`` everywhere: a typo in a YAML key is an error, not a silently
ignored setting.

Why this module is long: it is the one place every knob of the pipeline lives,
one section per step, each field with the comment that says why its default is
what it is; scattering the sections over modules would make the whole config
harder to read than the length does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spira_lib.hashing import stable_hash


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioConfig(_Section):
    """How raw recordings are decoded and which ones are rejected."""

    sample_rate: int = Field(16000, gt=0, description="target rate after resampling")
    # A clip shorter than one model window cannot be scored in windowed mode.
    min_duration_s: float = Field(4.0, gt=0)
    # Peak below this (dBFS) counts as near-silent: nothing to learn from.
    silence_dbfs: float = Field(-50.0, le=0)
    # Fraction of samples at |x| >= clip_level that marks a clip as clipped.
    clip_level: float = Field(0.999, gt=0, le=1.0)
    max_clipped_fraction: float = Field(0.01, ge=0, le=1)
    # Limits on hostile or odd input. A file (audio or metadata CSV) larger than
    # max_file_mb is refused from its listed size, without being read; decoding
    # stops after max_clip_s seconds of audio (a longer clip is quarantined), so a
    # header that claims days of audio cannot exhaust memory; a sample rate below
    # min_sample_rate (a corrupt header, e.g. 1 Hz) is not speech.
    max_file_mb: float = Field(200.0, gt=0)
    max_clip_s: float = Field(300.0, gt=0)
    min_sample_rate: int = Field(4000, gt=0)

    @model_validator(mode="after")
    def _check_limits(self) -> "AudioConfig":
        if self.max_clip_s < self.min_duration_s:
            raise ValueError(f"max_clip_s ({self.max_clip_s}) must be >= min_duration_s ({self.min_duration_s})")
        return self

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


class FeatureConfig(_Section):
    """Acoustic front end (torchaudio)."""

    kind: Literal["mfcc", "mel", "spectrogram"] = "mfcc"
    sample_rate: int = Field(16000, gt=0)
    # 20, not SPIRA's 40: chosen by bench/quality.py (docs/quality.md). With the same recipe, 20 coefficients
    # hold up better on another voice and recording chain (ROC-AUC 0.930 vs 0.900, 3 seeds) and train faster;
    # configs/spira-v2.yaml keeps 40.
    n_mfcc: int = Field(20, gt=0)
    n_mels: int = Field(40, gt=0)
    n_fft: int = Field(1200, gt=0)
    hop_length: int = Field(160, gt=0)
    win_length: int = Field(400, gt=0)
    log_mels: bool = False

    @model_validator(mode="after")
    def _check(self) -> "FeatureConfig":
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})")
        return self

    @property
    def n_features(self) -> int:
        """Feature dimension of one frame."""
        if self.kind == "mfcc":
            return self.n_mfcc
        if self.kind == "mel":
            return self.n_mels
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


class AugmentConfig(_Section):
    """Noise mixing, applied to BOTH classes.

    SPIRA's patients were recorded in noisy hospital wards and controls mostly
    were not; a model trained on clean controls learns "noise means patient".
    Adding ward noise to every class removes that shortcut.
    """

    # Folder (relative to the dataset root, or an absolute URI) with noise recordings.
    noise_dir: str = "noises"
    # Noisy copies made per training clip, on top of the clean one.
    noisy_copies: int = Field(4, ge=0)
    # SNR range of the augmentation copies (dB, against snr_reference).
    snr_db_min: float = -5.0
    snr_db_max: float = 20.0
    # Fraction of the noise recordings (chosen by content hash, so the same
    # files whatever their names or order) kept OUT of augmentation and used
    # only by the shortcut check, so that check measures noise the model never
    # heard. 0 = one bank for both (the old, optimistic check).
    holdout_noise_fraction: float = Field(0.34, ge=0, lt=1)
    # Each noisy copy gets ward noise with this probability ...
    noise_prob: float = Field(0.8, ge=0, le=1)
    # SNR reference for augmentation: "clip" = the clip's RMS (pauses count, so
    # patients get relatively quieter noise under their speech), "active" = the
    # level of the speech frames (same noise-to-speech ratio for both classes).
    snr_reference: Literal["clip", "active"] = "active"
    # Share of the noisy copies whose noise is generic synthetic background
    # (spira_lib.audio.synthetic_noise: coloured noise, hum, modulated bands)
    # instead of a bank recording: invariance beyond the few recorded noises.
    synthetic_noise_prob: float = Field(0.5, ge=0, le=1)
    # ... and, with this probability, a random recording chain (telephone band,
    # 8 kHz resampling, microphone EQ or a low-pass; see
    # spira_lib.audio.random_channel), for invariance to phones and microphones.
    channel_prob: float = Field(0.5, ge=0, le=1)
    specaugment: bool = False
    time_mask_frames: int = Field(40, ge=0)
    freq_mask_bins: int = Field(6, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "AugmentConfig":
        if self.snr_db_min > self.snr_db_max:
            raise ValueError(f"snr_db_min ({self.snr_db_min}) must be <= snr_db_max ({self.snr_db_max})")
        return self


class ModelConfig(_Section):
    """SpiraConv v2 and how a file is cut into model inputs."""

    # spiraconv_v2: SPIRA's time-only 2-D CNN over a 1-channel [T, F] image.
    # convstats: 1-D CNN over time with the coefficients as channels + mean/std
    # pooling (spira_lib.model.ConvStatsNet); ~20x cheaper on CPU.
    arch: Literal["spiraconv_v2", "convstats"] = "convstats"
    # Hidden units of the dense head (SPIRA's SpiraConv v2 used 100).
    fc_hidden: int = Field(64, gt=0)
    # convstats only: conv width and dropout inside the conv blocks.
    channels: int = Field(32, gt=0, multiple_of=8)
    conv_dropout: float = Field(0.1, ge=0, lt=1)
    # "window": standardise each feature coefficient over the window's frames
    # before the convs (see spira_lib.model.normalize_window); "window_mean":
    # subtract each coefficient's window mean only (cepstral mean normalisation);
    # "none": SPIRA's raw input.
    input_norm: Literal["window", "window_mean", "none"] = "window"
    # Dropout before the output layer (SPIRA's SpiraConv v2: 0.7, after every block too).
    dropout: float = Field(0.5, ge=0, lt=1)
    # windowed: 4 s windows with 1 s step, outputs averaged per file (SPIRA).
    # padded: the whole file zero-padded to max_duration_s.
    mode: Literal["windowed", "padded"] = "windowed"
    window_s: float = Field(4.0, gt=0)
    step_s: float = Field(1.0, gt=0)
    max_duration_s: float = Field(12.0, gt=0)


class TrainingConfig(_Section):
    epochs: int = Field(30, gt=0)
    # Small batches: on CPU the cost is per window, so 16 gives twice the
    # optimiser steps of 32 for the same compute on a few hundred clips.
    batch_size: int = Field(16, gt=0)
    # Peak learning rate (onecycle) or Noam's peak.
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    # Noam warm-up in optimiser steps. Noam decays as sqrt(warmup/step) after
    # the peak, so a longer warm-up also keeps the rate higher later; with a
    # few hundred clips, 20 steps left the model underfitting at 30 epochs.
    warmup_steps: int = Field(100, ge=0)
    # noam: the warm-up above, then lr * sqrt(warmup / step) (SPIRA).
    # onecycle: linear warm-up over warmup_fraction of all steps to lr, then
    # cosine annealing to lr / 1000 at the last step (epochs * batches).
    schedule: Literal["noam", "onecycle"] = "onecycle"
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    # Mixup (Zhang et al. 2018) of windows and labels, Beta(alpha, alpha); 0 = off.
    mixup_alpha: float = Field(0.4, ge=0)
    # Keep the epoch with the lowest validation loss (True) or the last one
    # (False: an annealed schedule's end point, less noisy than picking on ~30 clips).
    restore_best: bool = False
    # Validation loss sits on a plateau for several epochs before the model
    # starts to separate the classes; a short patience stops it there.
    early_stopping_patience: int = Field(10, gt=0)
    # Training windows per clip and epoch, at random offsets (0 = every window
    # on the model.step_s grid, as in SPIRA). Evaluation always uses the grid.
    windows_per_clip: int = Field(4, ge=0)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Mixed precision is used on CUDA only; CPU stays fp32 for determinism.
    mixed_precision: bool = True
    num_workers: int = Field(0, ge=0)
    # Torch intra-op threads on CPU (0 = torch default).
    threads: int = Field(0, ge=0)


class SplitConfig(_Section):
    """Speaker-disjoint split, stratified by class, used when the CSV has no `split` column."""

    eval_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 1234

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        if self.eval_fraction + self.test_fraction >= 0.9:
            raise ValueError("eval_fraction + test_fraction must leave at least 10% for training")
        return self


class ValidationConfig(_Section):
    """When a dataset is good enough to train on after quarantining bad rows."""

    min_clips: int = Field(20, ge=1)
    min_clips_per_class: int = Field(5, ge=1)
    # Fail the run if more than this fraction of rows is quarantined.
    max_quarantined_fraction: float = Field(0.5, ge=0, le=1)
    min_age: float = 0
    max_age: float = 120


class EvaluationConfig(_Section):
    threshold: float = Field(0.5, gt=0, lt=1)
    bootstrap_samples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    age_bands: list[float] = Field(default_factory=lambda: [0, 40, 60, 200])
    min_slice_size: int = Field(5, ge=1)
    # Shortcut check: noise added to controls only, at this SNR range.
    shortcut_snr_db_min: float = 0.0
    shortcut_snr_db_max: float = 10.0
    seed: int = 7


class GateConfig(_Section):
    """Champion/challenger promotion rules."""

    # Reject when AUC(challenger) - AUC(champion), paired on the same test clips,
    # is below -auc_margin (the bootstrap interval is reported with the decision).
    auc_margin: float = Field(0.02, ge=0)
    # Absolute floors a first model (and every challenger) must pass.
    min_roc_auc: float = Field(0.7, ge=0, le=1)
    min_balanced_accuracy: float = Field(0.6, ge=0, le=1)
    # No slice with at least evaluation.min_slice_size files may fall below this balanced accuracy.
    slice_floor: float = Field(0.5, ge=0, le=1)
    # Accuracy with noisy controls may drop at most this much below clean accuracy.
    # Measured with held-out noise (augment.holdout_noise_fraction > 0).
    max_shortcut_drop: float = Field(0.05, ge=0, le=1)
    # Shadow evidence before a challenger replaces a champion (0 = promote at once): the challenger is
    # held, scores batches in shadow, and is promoted once it has scored this many clips with at least
    # min_shadow_agreement of its decisions equal to the champion's.
    min_shadow_clips: int = Field(0, ge=0)
    min_shadow_agreement: float = Field(0.9, ge=0, le=1)


class PrivacyConfig(_Section):
    """What people other than the data owners may read in logs, artifacts and reports."""

    # False (default): file names and speaker ids appear as keyed pseudonyms (p-1a2b...).
    # True: raw names, for local debugging on your own data only.
    show_raw_names: bool = False


class RuntimeConfig(_Section):
    """How the work is spread out; never changes results, so not part of any training key."""

    # Clips per feature-extraction task when the flow fans the stage out.
    feature_chunk_clips: int = Field(256, gt=0)
    # Threads decoding/extracting inside one feature task.
    feature_workers: int = Field(2, gt=0)


class DriftConfig(_Section):
    """Drift monitoring: new clips compared with the reference the champion keeps (spira_lib.monitoring)."""

    # Off: no reference is stored at registration and no batch is tested.
    enabled: bool = True
    # False-discovery rate of one batch's tests (every feature, the embedding test and each category, BH together).
    alpha: float = Field(0.01, gt=0, lt=1)
    # Fewer profiled clips than this in a batch: the report says so instead of testing.
    min_clips: int = Field(20, ge=5)
    # Concept drift (retrain runs): the champion's ROC-AUC on new labelled clips needs this many of each class.
    min_clips_per_class: int = Field(10, ge=2)
    # Also compare the champion's embeddings of the clips (model.embed) with those of its training clips.
    embeddings: bool = True
    # Severity "major": a moved feature shifted by this many reference spreads (Wasserstein / robust scale),
    # a category mix moved by this total variation, or this many tests moved.
    major_wasserstein_norm: float = Field(0.5, gt=0)
    major_tv: float = Field(0.2, gt=0, le=1)
    major_count: int = Field(3, ge=1)


class SpiraConfig(_Section):
    audio: AudioConfig = AudioConfig()
    features: FeatureConfig = FeatureConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig = GateConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    drift: DriftConfig = DriftConfig()

    @model_validator(mode="after")
    def _cross_check(self) -> "SpiraConfig":
        if self.features.sample_rate != self.audio.sample_rate:
            raise ValueError(
                f"features.sample_rate ({self.features.sample_rate}) must equal audio.sample_rate ({self.audio.sample_rate})"
            )
        if self.model.mode == "windowed" and self.audio.min_duration_s < self.model.window_s:
            raise ValueError(
                f"audio.min_duration_s ({self.audio.min_duration_s}) must be >= model.window_s ({self.model.window_s})"
            )
        return self

    def digest(self, *sections: str) -> str:
        """Stable sha256 of the whole config, or of the named sections only."""
        data = self.model_dump(mode="json")
        if sections:
            data = {name: data[name] for name in sections}
        return stable_hash(data)


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        detail = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        lines.append(f"config field '{loc}': {msg}{detail}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config field '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'training.epochs=5' -> ('training.epochs', 5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def build_config(data: dict | None = None, overrides: dict[str, Any] | None = None) -> SpiraConfig:
    """Validate a config tree plus dotted overrides ({'training.epochs': 5})."""
    tree: dict = json.loads(json.dumps(data or {}))  # deep copy, JSON-able only
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    try:
        return SpiraConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SpiraConfig:
    """Load YAML (or the defaults when path is None) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    return build_config(data, overrides)

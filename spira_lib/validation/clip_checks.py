"""Per-clip audio checks: a pure function of the bytes and the audio config, cacheable by content hash."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from spira_lib.audio import AudioError, check_quality, read_native
from spira_lib.config import AudioConfig
from spira_lib.hashing import stable_hash
from spira_lib.reasons import Reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipCheck:
    """Outcome of the per-clip audio checks. ``audio_config`` is the digest of the AudioConfig used."""

    ok: bool
    reason: str | None
    duration_s: float | None
    orig_sample_rate: int | None
    audio_config: str = ""
    code: str | None = None  # a reasons.Reason value when not ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipCheck":
        return cls(
            ok=bool(data["ok"]),
            reason=data.get("reason"),
            duration_s=data.get("duration_s"),
            orig_sample_rate=data.get("orig_sample_rate"),
            audio_config=str(data.get("audio_config", "")),
            code=data.get("code"),
        )

    def usable_as_cache(self, audio_digest: str) -> bool:
        """Made under the same audio settings, and complete (older entries lack the reason code)."""
        return self.audio_config == audio_digest and (self.ok or self.code is not None)


def audio_config_digest(cfg: AudioConfig) -> str:
    """Short digest of the audio checks' settings; cached ClipChecks made under other settings are ignored."""
    return stable_hash(cfg.model_dump(mode="json"))[:16]


def check_clip(data: bytes, audio_cfg: AudioConfig, *, name: str = "") -> ClipCheck:
    """Decode ``data`` at its own sample rate and run the quality checks.

    Bounded by the config's limits: a file over ``max_file_mb`` is not decoded,
    decoding stops after ``max_clip_s`` seconds, and a sample rate below
    ``min_sample_rate`` is refused before decoding.

    The reason never contains ``name`` (only used for logging): results are
    cached per content hash and shared by every file with the same bytes.
    Checks run at the native rate so clipping is judged on the recorded samples,
    before resampling filters blur them.
    """
    digest = audio_config_digest(audio_cfg)
    if len(data) > audio_cfg.max_file_bytes:
        reason = f"file is {len(data) / 2**20:.0f} MB, larger than the {audio_cfg.max_file_mb:g} MB limit (audio.max_file_mb)"
        return ClipCheck(False, reason, None, None, digest, Reason.TOO_LARGE.value)
    try:
        frames, sr = read_native(data, max_seconds=audio_cfg.max_clip_s, min_sample_rate=audio_cfg.min_sample_rate)
    except AudioError as exc:
        log.debug("clip %s rejected: %s", name, exc)
        return ClipCheck(False, str(exc), None, None, digest, exc.code.value)
    duration = frames.shape[0] / sr
    wave = frames[:, 0] if frames.shape[1] == 1 else frames
    problem = check_quality(wave, sr, audio_cfg)
    if problem is None:
        return ClipCheck(True, None, duration, sr, digest)
    return ClipCheck(False, problem.message, duration, sr, digest, problem.code.value)

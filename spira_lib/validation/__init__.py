"""Validation with quarantine: per-clip audio checks (``clip_checks``) and the row checks (``validate``)."""
from spira_lib.validation.clip_checks import ClipCheck, audio_config_digest, check_clip
from spira_lib.validation.validate import QuarantineEntry, ValidationResult, validate

__all__ = ["ClipCheck", "QuarantineEntry", "ValidationResult", "audio_config_digest", "check_clip", "validate"]

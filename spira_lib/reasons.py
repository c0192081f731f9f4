"""Why a metadata row or a recording cannot be used: a short code plus a sentence for people.

Readers (CSV parsing, the audio decoder, the quality checks) return a
``Problem``; validation files the row under ``problem.code`` and shows
``problem.message``. Nothing downstream parses message text.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Reason(str, Enum):
    # metadata rows
    MISSING_FILE = "missing_file"
    UNREADABLE = "unreadable"
    BAD_LABEL = "bad_label"
    BAD_AGE = "bad_age"
    BAD_PATH = "bad_path"
    BAD_SPLIT = "bad_split"
    METADATA = "metadata"
    # recordings
    EMPTY_FILE = "empty_file"
    TRUNCATED = "truncated"
    NAN_SAMPLES = "nan_samples"
    ZERO_LENGTH = "zero_length"
    TOO_SHORT = "too_short"
    SILENT = "silent"
    CLIPPED = "clipped"
    CHANGED = "changed"
    # across rows
    LABEL_CONFLICT = "label_conflict"
    DUPLICATE = "duplicate"
    SPEAKER_LEAK = "speaker_leak"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Problem:
    """One reason a row or a recording is unusable."""

    code: Reason
    message: str

    def __str__(self) -> str:
        return self.message


def join_problems(problems: list[Problem]) -> Problem | None:
    """Several problems of one row as one: the first one's code, every message."""
    if not problems:
        return None
    return Problem(problems[0].code, "; ".join(p.message for p in problems))

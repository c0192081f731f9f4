"""Why a metadata row or a recording cannot be used: a short code plus a sentence for people.

Readers (CSV parsing, the audio decoder, the quality checks) return a
``Problem``; validation files the row under ``problem.code`` and shows
``problem.message``. Nothing downstream parses message text.

A store that refuses an object for a reason a person can fix (a broken symbolic
link, a folder or a named pipe where a file should be) raises
:class:`UnusableObject`, a ``StoreError`` that carries its ``Problem``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from spira_lib.ports import StoreError


class Reason(str, Enum):
    # metadata rows
    MISSING_FILE = "missing_file"
    UNREADABLE = "unreadable"
    BAD_LABEL = "bad_label"
    BAD_AGE = "bad_age"
    BAD_PATH = "bad_path"
    BAD_SPLIT = "bad_split"
    BAD_VALUE = "bad_value"  # a cell outside its vocabulary, formula-looking, control characters, too long
    BAD_ROW = "bad_row"  # more cells than the header has columns
    METADATA = "metadata"
    # files
    SYMLINK = "symlink"  # a broken or looping symbolic link
    NOT_A_FILE = "not_a_file"  # a folder, named pipe, socket or device
    TOO_LARGE = "too_large"  # over audio.max_file_mb, refused without reading
    # recordings
    EMPTY_FILE = "empty_file"
    TRUNCATED = "truncated"
    TOO_LONG = "too_long"  # over audio.max_clip_s
    BAD_SAMPLE_RATE = "bad_sample_rate"
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


class UnusableObject(StoreError):
    """A store refuses an object because of what it is (a broken link, a folder, a FIFO); ``problem`` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def problem_of(exc: StoreError, default: Reason, prefix: str = "") -> Problem:
    """The problem a store error stands for: its own when it carries one, else ``default`` with its text."""
    problem = getattr(exc, "problem", None)
    if isinstance(problem, Problem):
        return problem
    return Problem(default, f"{prefix}{exc}")

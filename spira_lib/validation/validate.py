"""Data validation with quarantine: bad rows are set aside with a reason, the rest go on.

``validate`` never raises on bad data. Each unusable metadata row becomes a
:class:`QuarantineEntry` (file, plain reason, reason code, CSV and row, so a
person can fix it) and the run continues with the good rows, unless too little
is left, in which case ``ok`` is False and ``message`` says why.

Checks, in order (a row is quarantined for the first one it fails):
read-time row problems (missing file, broken link, bad label, non-numeric age,
formula-looking or out-of-vocabulary cell, ...), a file over
``audio.max_file_mb`` (from its size, unread), age outside
``validation.min_age..max_age``, the audio itself (unreadable,
truncated, NaN, zero-length, too short, near-silent, clipped), identical audio
under conflicting labels (all copies), identical audio with the same label
(all but one copy), and a speaker found in two different given splits (all of
that speaker's rows).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from spira_lib.config import SpiraConfig
from spira_lib.dataset import REQUIRED_COLUMNS, Snapshot
from spira_lib.hashing import sha256_hex
from spira_lib.ports import ObjectNotFound, ObjectStore
from spira_lib.reasons import Problem, Reason, UnusableObject, problem_of
from spira_lib.validation.clip_checks import ClipCheck, audio_config_digest, check_clip

_CLASS_NAMES = {0: "control", 1: "patient"}


@dataclass(frozen=True)
class QuarantineEntry:
    """One metadata row set aside. ``kind`` is its reason code (e.g. ``too_short``) for summaries."""

    file: str | None
    reason: str
    csv: str
    row: int
    kind: str = "metadata"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    good: pl.DataFrame
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    ok: bool = True
    message: str = ""

    def quarantine_table(self) -> pl.DataFrame:
        """The quarantine as a DataFrame (file, reason, csv, row, kind), e.g. to save as CSV."""
        schema = {"file": pl.String, "reason": pl.String, "csv": pl.String, "row": pl.Int64, "kind": pl.String}
        return pl.DataFrame([q.to_dict() for q in self.quarantine], schema=schema, orient="row")


@dataclass
class _Rows:
    """The manifest's columns as lists, and the rows rejected so far (index -> problem)."""

    m: pl.DataFrame
    rejected: dict[int, Problem] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("key", "sha256", "size", "label", "age", "problem_code", "problem", "speaker_id", "split", "source_csv", "row"):
            setattr(self, name, self.m[name].to_list())

    def alive(self) -> list[int]:
        return [i for i in range(self.m.height) if i not in self.rejected]


def _check_metadata(rows: _Rows, cfg: SpiraConfig) -> None:
    """Problems found while reading, and ages outside the accepted range."""
    v = cfg.validation
    for i in range(rows.m.height):
        if rows.problem[i]:
            rows.rejected[i] = Problem(Reason(rows.problem_code[i] or Reason.METADATA), rows.problem[i])
        elif rows.sha256[i] is None:
            rows.rejected[i] = Problem(Reason.MISSING_FILE, f"audio file not found: {rows.key[i]}")
        elif rows.size[i] is not None and rows.size[i] > cfg.audio.max_file_bytes:
            rows.rejected[i] = Problem(
                Reason.TOO_LARGE, f"audio file is {rows.size[i] / 2**20:.0f} MB, larger than the "
                f"{cfg.audio.max_file_mb:g} MB limit (audio.max_file_mb); it was not read",
            )  # fmt: skip
        elif rows.age[i] is not None and not (v.min_age <= rows.age[i] <= v.max_age):
            rows.rejected[i] = Problem(Reason.BAD_AGE, f"age {rows.age[i]:g} is outside the accepted range {v.min_age:g}-{v.max_age:g}")


def _check_audio(rows: _Rows, store: ObjectStore, cfg: SpiraConfig, clip_cache: dict | None, workers: int) -> dict[str, ClipCheck]:
    """Audio checks, once per distinct content (cached by content hash)."""
    audio_digest = audio_config_digest(cfg.audio)
    first_key: dict[str, str] = {}
    for i in rows.alive():
        first_key.setdefault(rows.sha256[i], rows.key[i])
    checks: dict[str, ClipCheck] = {}
    to_check = []
    for sha, key in first_key.items():
        cached = (clip_cache or {}).get(sha)
        check = ClipCheck.from_dict(cached) if cached is not None else None
        if check is not None and check.usable_as_cache(audio_digest):
            checks[sha] = check
        else:
            to_check.append((sha, key))

    def run_check(item: tuple[str, str]) -> tuple[str, ClipCheck | Problem]:
        sha, key = item
        try:
            data = store.get(key)
        except ObjectNotFound:
            return sha, Problem(Reason.MISSING_FILE, f"audio file disappeared after the snapshot: {key}")
        # The store's verdict on the object itself; any other storage error fails the run (a retry
        # may succeed), so a passing fault never quarantines a good clip.
        except UnusableObject as exc:
            return sha, problem_of(exc, Reason.UNREADABLE, "cannot read audio file: ")
        if sha256_hex(data) != sha:
            return sha, Problem(Reason.CHANGED, "file changed since the snapshot (content hash differs); take a new snapshot")
        return sha, check_clip(data, cfg.audio, name=key)

    failures: dict[str, Problem] = {}
    if to_check:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_check)))) as pool:
            for sha, outcome in pool.map(run_check, to_check):
                if isinstance(outcome, ClipCheck):
                    checks[sha] = outcome
                    if clip_cache is not None:
                        clip_cache[sha] = outcome.to_dict()
                else:
                    failures[sha] = outcome
    for i in rows.alive():
        sha = rows.sha256[i]
        if sha in failures:
            rows.rejected[i] = failures[sha]
        elif not checks[sha].ok:
            check = checks[sha]
            rows.rejected[i] = Problem(Reason(check.code or Reason.UNREADABLE), check.reason or "failed the audio checks")
    return checks


def _check_duplicates(rows: _Rows) -> None:
    """Identical audio: conflicting labels reject every copy, agreeing labels all but one.

    Label conflicts look at every labelled copy, even ones already rejected for
    other reasons: the content's label is then untrustworthy.
    """
    labels_of: dict[str, set[int]] = defaultdict(set)
    keys_of: dict[str, set[str]] = defaultdict(set)
    for i in range(rows.m.height):
        if rows.sha256[i] is not None and rows.label[i] is not None:
            labels_of[rows.sha256[i]].add(int(rows.label[i]))
            keys_of[rows.sha256[i]].add(rows.key[i])
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i in rows.alive():
        by_sha[rows.sha256[i]].append(i)
    for sha, members in by_sha.items():
        if len(labels_of[sha]) > 1:
            for i in members:
                others = sorted(k for k in keys_of[sha] if k != rows.key[i]) or [rows.key[i]]
                shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
                labels = " vs ".join(map(str, sorted(labels_of[sha])))
                rows.rejected[i] = Problem(Reason.LABEL_CONFLICT, f"same audio as {shown} but the labels disagree ({labels})")
        elif len(members) > 1:
            keep = min(members, key=lambda i: (rows.key[i], rows.source_csv[i], rows.row[i]))
            for i in members:
                if i != keep:
                    where = f" (also listed in {rows.source_csv[keep]} row {rows.row[keep]})" if rows.key[i] == rows.key[keep] else ""
                    rows.rejected[i] = Problem(Reason.DUPLICATE, f"duplicate of {rows.key[keep]}{where}")


def _check_speaker_leaks(rows: _Rows) -> None:
    """A speaker in two given splits would inflate eval/test scores: all of its rows go."""
    given: dict[str, set[str]] = defaultdict(set)
    for i in rows.alive():
        if rows.speaker_id[i] is not None and rows.split[i] is not None:
            given[rows.speaker_id[i]].add(rows.split[i])
    leaking = {s: v for s, v in given.items() if len(v) > 1}
    for i in rows.alive():
        if rows.speaker_id[i] in leaking:
            splits = ", ".join(sorted(leaking[rows.speaker_id[i]]))
            rows.rejected[i] = Problem(Reason.SPEAKER_LEAK, f"speaker {rows.speaker_id[i]!r} appears in more than one split ({splits})")


def validate(
    store: ObjectStore, snapshot: Snapshot, cfg: SpiraConfig, *, clip_cache: dict[str, dict] | None = None, workers: int = 4
) -> ValidationResult:
    """Quarantine bad rows of ``snapshot.manifest`` and decide whether enough good data is left.

    ``clip_cache`` maps sha256 -> ``ClipCheck.to_dict()``; it is read and updated
    in place, and entries made under a different AudioConfig are recomputed.
    """
    rows = _Rows(snapshot.manifest)
    _check_metadata(rows, cfg)
    checks = _check_audio(rows, store, cfg, clip_cache, workers)
    _check_duplicates(rows)
    _check_speaker_leaks(rows)
    good_idx = rows.alive()
    good = rows.m[good_idx] if good_idx else rows.m.clear()
    good = good.with_columns(
        pl.Series("duration_s", [checks[rows.sha256[i]].duration_s for i in good_idx], dtype=pl.Float64),
        pl.Series("orig_sample_rate", [checks[rows.sha256[i]].orig_sample_rate for i in good_idx], dtype=pl.Int64),
    )
    ordered = sorted(rows.rejected.items(), key=lambda kv: (rows.source_csv[kv[0]], rows.row[kv[0]]))
    quarantine = [
        QuarantineEntry(file=rows.key[i], reason=p.message, csv=rows.source_csv[i], row=int(rows.row[i]), kind=p.code.value)
        for i, p in ordered
    ]
    ok, message = _verdict(good, quarantine, rows.m.height, cfg)
    if not snapshot.csvs and rows.m.height == 0:
        message = (f"no metadata rows found: there is no metadata CSV in {store.uri} (the dataset needs at least one "
                   f"CSV file with the columns {','.join(REQUIRED_COLUMNS)})")  # fmt: skip
    return ValidationResult(good=good, quarantine=quarantine, ok=ok, message=message)


def _verdict(good: pl.DataFrame, quarantine: list[QuarantineEntry], n_total: int, cfg: SpiraConfig) -> tuple[bool, str]:
    vcfg = cfg.validation
    per_class = Counter(int(v) for v in good["label"].to_list())
    kinds = Counter(q.kind for q in quarantine)
    breakdown = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.most_common())
    quarantined = f"{len(quarantine)} quarantined ({breakdown})" if quarantine else "none quarantined"
    classes = ", ".join(f"class {c} ({_CLASS_NAMES[c]}): {per_class[c]}" for c in (0, 1))
    if n_total == 0:
        return False, "no metadata rows found: the dataset has no CSV rows to train on"
    failures = []
    if good.height < vcfg.min_clips:
        failures.append(f"only {good.height} of {n_total} clips passed validation (need {vcfg.min_clips})")
    for c in (0, 1):
        if per_class[c] < vcfg.min_clips_per_class:
            failures.append(f"class {c} ({_CLASS_NAMES[c]}) has {per_class[c]} good clips (need {vcfg.min_clips_per_class})")
    fraction = len(quarantine) / n_total
    if fraction > vcfg.max_quarantined_fraction:
        failures.append(f"{fraction:.0%} of rows were quarantined (limit {vcfg.max_quarantined_fraction:.0%})")
    if failures:
        return False, f"{failures[0]}: " + "; ".join([*failures[1:], quarantined, classes])
    return True, f"{good.height} of {n_total} clips passed validation ({classes}); {quarantined}"

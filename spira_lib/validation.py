"""Data validation with quarantine: bad rows are set aside with a reason, the rest go on.

``validate`` never raises on bad data. Each unusable metadata row becomes a
:class:`QuarantineEntry` (file, plain reason, CSV and row, so a person can fix
it) and the run continues with the good rows, unless too little is left, in
which case ``ok`` is False and ``message`` says why.

Per-clip audio checks live in :func:`check_clip`, a pure function of the bytes
and the audio config, so results can be cached by content hash across runs.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from spira_lib.audio import AudioError, check_quality, read_native
from spira_lib.config import AudioConfig, SpiraConfig, stable_hash
from spira_lib.dataset import Snapshot
from spira_lib.ports import ObjectNotFound, ObjectStore, StoreError

log = logging.getLogger(__name__)

_CLASS_NAMES = {0: "control", 1: "patient"}


@dataclass(frozen=True)
class ClipCheck:
    """Outcome of the per-clip audio checks. ``audio_config`` is the digest of the AudioConfig used."""

    ok: bool
    reason: str | None
    duration_s: float | None
    orig_sample_rate: int | None
    audio_config: str = ""

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
        )


@dataclass(frozen=True)
class QuarantineEntry:
    """One metadata row set aside. ``kind`` is a short category (e.g. ``too_short``) for summaries."""

    file: str | None
    reason: str
    csv: str
    row: int
    kind: str = "other"

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


def audio_config_digest(cfg: AudioConfig) -> str:
    """Short digest of the audio checks' settings; cached ClipChecks made under other settings are ignored."""
    return stable_hash(cfg.model_dump(mode="json"))[:16]


def check_clip(data: bytes, audio_cfg: AudioConfig, *, name: str = "") -> ClipCheck:
    """Decode ``data`` at its own sample rate and run the quality checks.

    The reason never contains ``name`` (only used for logging): results are
    cached per content hash and shared by every file with the same bytes.
    Checks run at the native rate so clipping is judged on the recorded samples,
    before resampling filters blur them.
    """
    digest = audio_config_digest(audio_cfg)
    try:
        frames, sr = read_native(data)
    except AudioError as exc:
        log.debug("clip %s rejected: %s", name, exc)
        return ClipCheck(False, str(exc), None, None, digest)
    duration = frames.shape[0] / sr
    wave = frames[:, 0] if frames.shape[1] == 1 else frames
    reason = check_quality(wave, sr, audio_cfg)
    return ClipCheck(reason is None, reason, duration, sr, digest)


def _problem_kind(problem: str) -> str:
    """Category of a read-time row problem (the first one when several are joined)."""
    first = problem.split("; ", 1)[0]
    for needle, kind in (
        ("not found", "missing_file"),
        ("cannot read", "unreadable"),
        ("label", "bad_label"),
        ("age", "bad_age"),
        ("file_path", "bad_path"),
        ("split", "bad_split"),
    ):
        if needle in first:
            return kind
    return "metadata"


def _clip_kind(reason: str) -> str:
    for needle, kind in (
        ("empty file", "empty_file"),
        ("truncated", "truncated"),
        ("NaN", "nan_samples"),
        ("zero-length", "zero_length"),
        ("shorter than", "too_short"),
        ("near-silent", "silent"),
        ("clipped", "clipped"),
    ):
        if needle in reason:
            return kind
    return "unreadable"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate(
    store: ObjectStore,
    snapshot: Snapshot,
    cfg: SpiraConfig,
    *,
    clip_cache: dict[str, dict] | None = None,
    workers: int = 4,
) -> ValidationResult:
    """Quarantine bad rows of ``snapshot.manifest`` and decide whether enough good data is left.

    Checks, in order (a row is quarantined for the first one it fails):
    read-time row problems (missing file, bad label, non-numeric age, ...), age
    outside ``cfg.validation.min_age..max_age``, the audio itself
    (:func:`check_clip`: unreadable, truncated, NaN, zero-length, too short,
    near-silent, clipped), identical audio under conflicting labels (all copies),
    identical audio with the same label (all but one copy), and a speaker found
    in two different given splits (all of that speaker's rows).

    ``clip_cache`` maps sha256 -> ``ClipCheck.to_dict()``; it is read and updated
    in place, and entries made under a different AudioConfig are recomputed.
    """
    m = snapshot.manifest
    n_total = m.height
    vcfg = cfg.validation
    audio_digest = audio_config_digest(cfg.audio)

    keys = m["key"].to_list()
    shas = m["sha256"].to_list()
    labels = m["label"].to_list()
    ages = m["age"].to_list()
    problems = m["problem"].to_list()
    speakers = m["speaker_id"].to_list()
    splits = m["split"].to_list()
    csvs = m["source_csv"].to_list()
    rows = m["row"].to_list()

    rejected: dict[int, tuple[str, str]] = {}  # row index -> (kind, reason)

    def alive() -> list[int]:
        return [i for i in range(n_total) if i not in rejected]

    # 1. Metadata problems found while reading, and ages outside the accepted range.
    for i in range(n_total):
        if problems[i]:
            rejected[i] = (_problem_kind(problems[i]), problems[i])
        elif shas[i] is None:
            rejected[i] = ("missing_file", f"audio file not found: {keys[i]}")
        elif ages[i] is not None and not (vcfg.min_age <= ages[i] <= vcfg.max_age):
            rejected[i] = ("bad_age", f"age {ages[i]:g} is outside the accepted range {vcfg.min_age:g}-{vcfg.max_age:g}")

    # 2. Audio checks, once per distinct content.
    first_key: dict[str, str] = {}
    for i in alive():
        first_key.setdefault(shas[i], keys[i])
    checks: dict[str, ClipCheck] = {}
    per_sha_failure: dict[str, tuple[str, str]] = {}
    to_check: list[tuple[str, str]] = []
    for sha, key in first_key.items():
        cached = (clip_cache or {}).get(sha)
        if cached is not None and str(cached.get("audio_config", "")) == audio_digest:
            checks[sha] = ClipCheck.from_dict(cached)
        else:
            to_check.append((sha, key))

    def run_check(item: tuple[str, str]) -> tuple[str, ClipCheck | tuple[str, str]]:
        sha, key = item
        try:
            data = store.get(key)
        except ObjectNotFound:
            return sha, ("missing_file", f"audio file disappeared after the snapshot: {key}")
        except StoreError as exc:
            return sha, ("unreadable", f"cannot read audio file: {exc}")
        if _sha256(data) != sha:
            return sha, ("changed", "file changed since the snapshot (content hash differs); take a new snapshot")
        return sha, check_clip(data, cfg.audio, name=key)

    if to_check:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_check)))) as pool:
            for sha, outcome in pool.map(run_check, to_check):
                if isinstance(outcome, ClipCheck):
                    checks[sha] = outcome
                    if clip_cache is not None:
                        clip_cache[sha] = outcome.to_dict()
                else:
                    per_sha_failure[sha] = outcome

    for i in alive():
        if shas[i] in per_sha_failure:
            rejected[i] = per_sha_failure[shas[i]]
            continue
        check = checks[shas[i]]
        if not check.ok:
            reason = check.reason or "failed the audio checks"
            rejected[i] = (_clip_kind(reason), reason)

    # 3. Duplicated content. Label conflicts look at every labelled copy, even ones
    #    already rejected for other reasons: the content's label is then untrustworthy.
    labels_of: dict[str, set[int]] = defaultdict(set)
    keys_of: dict[str, set[str]] = defaultdict(set)
    for i in range(n_total):
        if shas[i] is not None and labels[i] is not None:
            labels_of[shas[i]].add(int(labels[i]))
            keys_of[shas[i]].add(keys[i])
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i in alive():
        by_sha[shas[i]].append(i)
    for sha, members in by_sha.items():
        if len(labels_of[sha]) > 1:
            for i in members:
                others = sorted(k for k in keys_of[sha] if k != keys[i]) or [keys[i]]
                shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
                rejected[i] = (
                    "label_conflict",
                    f"same audio as {shown} but the labels disagree ({' vs '.join(map(str, sorted(labels_of[sha])))})",
                )
        elif len(members) > 1:
            keep = min(members, key=lambda i: (keys[i], csvs[i], rows[i]))
            for i in members:
                if i == keep:
                    continue
                where = f" (also listed in {csvs[keep]} row {rows[keep]})" if keys[i] == keys[keep] else ""
                rejected[i] = ("duplicate", f"duplicate of {keys[keep]}{where}")

    # 4. Speaker leakage between given splits (would inflate eval/test scores).
    given: dict[str, set[str]] = defaultdict(set)
    for i in alive():
        if speakers[i] is not None and splits[i] is not None:
            given[speakers[i]].add(splits[i])
    leaking = {s: v for s, v in given.items() if len(v) > 1}
    for i in alive():
        if speakers[i] in leaking:
            rejected[i] = (
                "speaker_leak",
                f"speaker {speakers[i]!r} appears in more than one split ({', '.join(sorted(leaking[speakers[i]]))})",
            )

    good_idx = alive()
    durations = [checks[shas[i]].duration_s for i in good_idx]
    rates = [checks[shas[i]].orig_sample_rate for i in good_idx]
    good = m[good_idx] if good_idx else m.clear()
    good = good.with_columns(
        pl.Series("duration_s", durations, dtype=pl.Float64),
        pl.Series("orig_sample_rate", rates, dtype=pl.Int64),
    )
    quarantine = [
        QuarantineEntry(file=keys[i], reason=reason, csv=csvs[i], row=int(rows[i]), kind=kind)
        for i, (kind, reason) in sorted(rejected.items(), key=lambda kv: (csvs[kv[0]], rows[kv[0]]))
    ]
    ok, message = _verdict(good, quarantine, n_total, cfg)
    return ValidationResult(good=good, quarantine=quarantine, ok=ok, message=message)


def _verdict(good: pl.DataFrame, quarantine: list[QuarantineEntry], n_total: int, cfg: SpiraConfig) -> tuple[bool, str]:
    vcfg = cfg.validation
    n_good = good.height
    per_class = Counter(int(v) for v in good["label"].to_list())
    kinds = Counter(q.kind for q in quarantine)
    breakdown = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.most_common())
    quarantined = f"{len(quarantine)} quarantined ({breakdown})" if quarantine else "none quarantined"
    classes = ", ".join(f"class {c} ({_CLASS_NAMES[c]}): {per_class[c]}" for c in (0, 1))

    if n_total == 0:
        return False, "no metadata rows found: the dataset has no CSV rows to train on"
    failures = []
    if n_good < vcfg.min_clips:
        failures.append(f"only {n_good} of {n_total} clips passed validation (need {vcfg.min_clips})")
    for c in (0, 1):
        if per_class[c] < vcfg.min_clips_per_class:
            failures.append(
                f"class {c} ({_CLASS_NAMES[c]}) has {per_class[c]} good clips (need {vcfg.min_clips_per_class})"
            )
    fraction = len(quarantine) / n_total
    if fraction > vcfg.max_quarantined_fraction:
        failures.append(
            f"{fraction:.0%} of rows were quarantined (limit {vcfg.max_quarantined_fraction:.0%})"
        )
    if failures:
        return False, f"{failures[0]}: " + "; ".join([*failures[1:], quarantined, classes])
    return True, f"{n_good} of {n_total} clips passed validation ({classes}); {quarantined}"


__all__ = [
    "ClipCheck",
    "QuarantineEntry",
    "ValidationResult",
    "audio_config_digest",
    "check_clip",
    "validate",
]

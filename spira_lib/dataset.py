"""Dataset snapshot: metadata CSVs + audio objects -> one canonical manifest.

A dataset is an ObjectStore holding metadata CSVs with SPIRA's columns
(``file_path,class,sexo,idade,nivel_falta_de_ar``; optional ``speaker_id``,
``hospital``, ``split``) and the audio they point to. ``file_path`` is relative
to the folder of its CSV, so several CSVs (one per hospital, say) can live side
by side. Nothing here writes to the dataset store: raw data is never modified.

The manifest has one row per metadata row. Rows that cannot be used are kept,
with a ``problem`` text, so validation can quarantine them with the file and
CSV row a person needs to fix them.

The snapshot's ``digest`` identifies the dataset by content and labels, not by
paths: renaming files or reordering CSV rows keeps it, relabelling a clip or
adding one changes it. Retraining is keyed on this digest.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

import polars as pl

from spira_lib.config import SplitConfig
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, StoreError, join_key

REQUIRED_COLUMNS = ("file_path", "class", "sexo", "idade", "nivel_falta_de_ar")
OPTIONAL_COLUMNS = ("speaker_id", "hospital", "split")
SPLITS = ("train", "eval", "test")

# Spellings seen in hand-made CSVs (English and Portuguese) for the three splits.
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "treino": "train",
    "eval": "eval", "val": "eval", "valid": "eval", "validation": "eval", "dev": "eval",
    "validacao": "eval", "validação": "eval",
    "test": "test", "testing": "test", "teste": "test",
}  # fmt: skip
_SEX_ALIASES = {
    "m": "M", "male": "M", "masculino": "M", "masc": "M", "h": "M", "homem": "M",
    "f": "F", "female": "F", "feminino": "F", "fem": "F", "mulher": "F",
}  # fmt: skip
# Cells that spreadsheet/pandas exports use for "no value".
_MISSING = {"", "nan", "none", "null", "na", "n/a"}

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "sha256": pl.String(),
    "size": pl.Int64(),
    "label": pl.Int8(),
    "sex": pl.String(),
    "age": pl.Float64(),
    "dyspnea": pl.String(),
    "speaker_id": pl.String(),
    # True when speaker_id was not given and comes from the file stem; such ids
    # are path-derived, so the digest and the split hash use the content instead.
    "speaker_derived": pl.Boolean(),
    "hospital": pl.String(),
    "split": pl.String(),
    "source_csv": pl.String(),
    "row": pl.Int64(),
    "problem": pl.String(),
}


class DatasetError(ValueError):
    """The dataset's structure is unusable (e.g. a CSV lacks required columns); names the file."""


@dataclass(frozen=True)
class Snapshot:
    """What a dataset store held at one moment: the manifest, its content digest and the CSVs read."""

    manifest: pl.DataFrame
    digest: str
    csvs: list[str] = field(default_factory=list)


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST_SCHEMA)


# --------------------------------------------------------------------------- CSV discovery and parsing


def _is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def find_metadata_csvs(store: ObjectStore, *, noise_dir: str = "noises") -> list[str]:
    """Keys of the metadata CSVs in ``store``, sorted.

    CSVs under ``noise_dir`` (relative to the store root) and under hidden
    folders/files (``.ipynb_checkpoints``, editor backups) are not metadata. An
    absolute ``noise_dir`` (``/path`` or ``s3://...``) lies outside the store and
    excludes nothing.
    """
    return _metadata_keys(store.list(""), noise_dir)


def _metadata_keys(infos: Iterable[ObjectInfo], noise_dir: str) -> list[str]:
    noise_prefix = ""
    if noise_dir and "://" not in noise_dir and not noise_dir.startswith("/"):
        noise_prefix = join_key(noise_dir) + "/"
    found = []
    for info in infos:
        key = info.key
        if not key.lower().endswith(".csv") or _is_hidden(key):
            continue
        if noise_prefix and key.startswith(noise_prefix):
            continue
        found.append(key)
    return sorted(found)


def _decode_text(raw: bytes) -> str:
    # Spreadsheets exported on Brazilian Windows machines are often cp1252, not UTF-8.
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _sniff_separator(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda s: counts[s])
    # Excel in pt-BR saves "CSV" with ';' because ',' is the decimal mark.
    return best if counts[best] > counts[","] else ","


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _MISSING else text


def _resolve_key(csv_dir: str, file_path: str) -> tuple[str | None, str | None]:
    """(store key, problem) for a file_path relative to the CSV's folder."""
    path = file_path.replace("\\", "/")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None, f"file_path {file_path!r} is absolute; it must be relative to the CSV's folder"
    joined = posixpath.normpath(posixpath.join(csv_dir, path)) if csv_dir else posixpath.normpath(path)
    if joined in (".", "") or joined == ".." or joined.startswith("../"):
        return None, f"file_path {file_path!r} points outside the dataset"
    return joined, None


def _parse_label(raw: str | None) -> tuple[int | None, str | None]:
    if raw is None:
        return None, "missing label in column 'class'"
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        value = math.nan
    if value in (0.0, 1.0):
        return int(value), None
    return None, f"invalid label {raw!r} in column 'class' (expected 0 or 1)"


def _parse_age(raw: str | None) -> tuple[float | None, str | None]:
    if raw is None:
        return None, None
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return None, f"non-numeric age {raw!r} in column 'idade'"
    return value, None


def _parse_split(raw: str | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    split = _SPLIT_ALIASES.get(raw.lower())
    if split is None:
        return None, f"unknown split {raw!r} in column 'split' (expected train, eval or test)"
    return split, None


def _stem(key: str) -> str:
    return posixpath.splitext(posixpath.basename(key))[0]


def read_metadata(store: ObjectStore, csv_key: str) -> pl.DataFrame:
    """Parse one metadata CSV into canonical manifest rows (``sha256``/``size`` still empty).

    Every cell is read as text first and parsed per row, so one bad cell becomes
    that row's ``problem`` instead of failing the whole CSV. Raises DatasetError
    when the CSV cannot be parsed at all or lacks required columns.
    """
    try:
        raw = store.get(csv_key)
    except ObjectNotFound:
        raise DatasetError(f"metadata CSV {csv_key!r} does not exist in {store.uri}") from None
    text = _decode_text(raw)
    if not text.strip():
        raise DatasetError(f"metadata CSV {csv_key!r} is empty (no header row)")
    try:
        df = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=_sniff_separator(text),
            infer_schema=False,
            truncate_ragged_lines=True,
            raise_if_empty=True,
        )
    except Exception as exc:  # polars raises several error types for malformed CSVs
        raise DatasetError(f"metadata CSV {csv_key!r} cannot be parsed: {exc}") from None

    names = [c.strip().lstrip("\ufeff").lower() for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetError(f"metadata CSV {csv_key!r} has duplicate column(s): {', '.join(dupes)}")
    df.columns = names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DatasetError(
            f"metadata CSV {csv_key!r} is missing required column(s): {', '.join(missing)} "
            f"(found: {', '.join(names) or 'none'})"
        )

    csv_dir = posixpath.dirname(csv_key)
    out: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA}
    wanted = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names]
    for row_no, values in enumerate(df.select(wanted).iter_rows(named=True), start=1):
        cells = {c: _clean(values.get(c)) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        if all(v is None for v in cells.values()):
            continue  # blank line or an empty ",,,," row from a spreadsheet: not a record
        problems: list[str] = []

        key = None
        if cells["file_path"] is None:
            problems.append("file_path is empty")
        else:
            key, problem = _resolve_key(csv_dir, cells["file_path"])
            if problem:
                problems.append(problem)
        label, problem = _parse_label(cells["class"])
        if problem:
            problems.append(problem)
        age, problem = _parse_age(cells["idade"])
        if problem:
            problems.append(problem)
        split, problem = _parse_split(cells["split"])
        if problem:
            problems.append(problem)

        speaker, derived = cells["speaker_id"], False
        if speaker is None:
            source = key or (cells["file_path"] or "").replace("\\", "/")
            speaker, derived = (_stem(source) or None), True
        sex = cells["sexo"]
        if sex is not None:
            sex = _SEX_ALIASES.get(sex.lower(), sex)

        out["key"].append(key)
        out["sha256"].append(None)
        out["size"].append(None)
        out["label"].append(label)
        out["sex"].append(sex)
        out["age"].append(age)
        out["dyspnea"].append(cells["nivel_falta_de_ar"])
        out["speaker_id"].append(speaker)
        out["speaker_derived"].append(derived)
        out["hospital"].append(cells["hospital"])
        out["split"].append(split)
        out["source_csv"].append(csv_key)
        out["row"].append(row_no)
        out["problem"].append("; ".join(problems) or None)
    return pl.DataFrame(out, schema=MANIFEST_SCHEMA)


# --------------------------------------------------------------------------- snapshot


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(
    store: ObjectStore,
    *,
    noise_dir: str = "noises",
    hash_cache: dict[tuple[str, str], str] | None = None,
    workers: int = 8,
) -> Snapshot:
    """Read every metadata CSV and hash every referenced audio object.

    ``hash_cache`` maps ``(key, etag) -> sha256``. The etag comes from
    ``store.list`` (S3 ETag, mtime+size locally, md5 in memory) and changes
    whenever the object does, so a cache hit means the bytes are unchanged and
    need not be downloaded again. The dict is read and updated in place (only for
    objects with a non-empty etag); persist it between runs to make re-snapshots
    of a large, mostly unchanged bucket cheap. Stale entries are never consulted
    but are not pruned either.

    A referenced file that does not exist or cannot be read becomes that row's
    ``problem``; it does not stop the snapshot. ``workers`` threads download in
    parallel (network stores are latency-bound).
    """
    # One listing serves both CSV discovery and the etags (a bucket listing is paged and slow).
    listing: dict[str, ObjectInfo] = {info.key: info for info in store.list("")}
    csvs = _metadata_keys(listing.values(), noise_dir)
    frames = [read_metadata(store, key) for key in csvs]
    manifest = pl.concat(frames, how="vertical") if frames else empty_manifest()

    keys = sorted({k for k in manifest["key"].to_list() if k is not None})

    hashes: dict[str, tuple[str | None, int | None, str | None]] = {}
    to_read: list[str] = []
    for key in keys:
        info = listing.get(key)
        if info is None:
            hashes[key] = (None, None, f"audio file not found: {key}")
        elif hash_cache is not None and info.etag and (key, info.etag) in hash_cache:
            hashes[key] = (hash_cache[(key, info.etag)], info.size, None)
        else:
            to_read.append(key)

    def read(key: str) -> tuple[str, tuple[str | None, int | None, str | None]]:
        try:
            data = store.get(key)
        except ObjectNotFound:
            return key, (None, None, f"audio file not found: {key}")
        except StoreError as exc:
            return key, (None, None, f"cannot read audio file {key}: {exc}")
        return key, (_sha256(data), len(data), None)

    if to_read:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_read)))) as pool:
            for key, result in pool.map(read, to_read):
                hashes[key] = result
                etag = listing[key].etag
                if hash_cache is not None and etag and result[0] is not None:
                    hash_cache[(key, etag)] = result[0]

    shas, sizes, problems = [], [], []
    for key, problem in zip(manifest["key"].to_list(), manifest["problem"].to_list()):
        sha, size, file_problem = hashes.get(key, (None, None, None)) if key is not None else (None, None, None)
        shas.append(sha)
        sizes.append(size)
        problems.append("; ".join(p for p in (file_problem, problem) if p) or None)
    manifest = manifest.with_columns(
        pl.Series("sha256", shas, dtype=pl.String),
        pl.Series("size", sizes, dtype=pl.Int64),
        pl.Series("problem", problems, dtype=pl.String),
    )
    return Snapshot(manifest=manifest, digest=manifest_digest(manifest), csvs=csvs)


def manifest_digest(manifest: pl.DataFrame) -> str:
    """sha256 over (sha256, label, sex, age, dyspnea, speaker_id, hospital, split) of every row.

    Rows are sorted canonically, so CSV row order and file paths do not matter;
    speaker ids derived from file stems are left out for the same reason.
    """
    derived = (
        manifest["speaker_derived"].to_list()
        if "speaker_derived" in manifest.columns
        else [False] * manifest.height
    )
    cols = ["sha256", "label", "sex", "age", "dyspnea", "speaker_id", "hospital", "split"]
    rows = []
    for values, is_derived in zip(manifest.select(cols).iter_rows(), derived):
        values = list(values)
        if is_derived:
            values[5] = None
        if values[3] is not None:
            values[3] = repr(float(values[3]))  # 40 and 40.0 are the same age
        rows.append(json.dumps(values, separators=(",", ":")))
    rows.sort()
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- splits


def _unit_hash(seed: int, text: str) -> float:
    digest = hashlib.sha256(f"{seed}\x1f{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _bucket(u: float, cfg: SplitConfig) -> str:
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.eval_fraction:
        return "eval"
    return "train"


def _interval(split: str, cfg: SplitConfig) -> tuple[float, float]:
    t, e = cfg.test_fraction, cfg.eval_fraction
    return {"test": (0.0, t), "eval": (t, t + e), "train": (t + e, 1.0)}[split]


def assign_splits(manifest: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """Fill the ``split`` column: speaker-disjoint, stratified by class, seeded and stable.

    Rows that already have a split keep it (and so does the rest of their
    speaker). Every other speaker gets a number in [0, 1) from a seeded hash of
    its identity and lands in test / eval / train by comparing it with
    ``test_fraction`` and ``test_fraction + eval_fraction``. Because each
    speaker's placement depends only on itself, adding speakers never moves
    existing ones; stratification holds in expectation within each class (the
    speaker's majority label). Small datasets are then patched so that each
    split has at least one speaker of each class when the class has enough
    speakers; only that patch can move a speaker when the dataset grows.

    Identity is ``speaker_id``, except for stem-derived ids, where it is the
    clip's content hash, so renaming a file does not change its split.
    """
    if manifest.height == 0 or manifest["split"].null_count() == 0:
        return manifest
    derived = (
        manifest["speaker_derived"].to_list()
        if "speaker_derived" in manifest.columns
        else [False] * manifest.height
    )
    groups: dict[str, dict[str, Any]] = {}
    row_group: list[str] = []
    for i, (sid, label, split, sha, csv, row) in enumerate(
        manifest.select("speaker_id", "label", "split", "sha256", "source_csv", "row").iter_rows()
    ):
        gid = sid if sid is not None else f"\x00{csv}:{row}"
        row_group.append(gid)
        g = groups.setdefault(gid, {"labels": Counter(), "given": Counter(), "shas": [], "all_derived": True})
        if label is not None:
            g["labels"][int(label)] += 1
        if split is not None:
            g["given"][split] += 1
        if sha is not None:
            g["shas"].append(sha)
        g["all_derived"] = g["all_derived"] and bool(derived[i])

    placed: dict[str, str] = {}
    fixed: set[str] = set()
    by_class: dict[int, list[str]] = {}
    u_of: dict[str, float] = {}
    for gid, g in groups.items():
        labels: Counter = g["labels"]
        # Majority label; a tie (a speaker labelled both ways) counts as patient.
        cls = max(labels, key=lambda lab: (labels[lab], lab)) if labels else -1
        by_class.setdefault(cls, []).append(gid)
        if g["given"]:
            placed[gid] = max(sorted(g["given"]), key=lambda s: g["given"][s])
            fixed.add(gid)
            continue
        ident = min(g["shas"]) if g["all_derived"] and g["shas"] else gid
        u_of[gid] = _unit_hash(cfg.seed, ident)
        placed[gid] = _bucket(u_of[gid], cfg)

    for cls, members in sorted(by_class.items()):
        if cls < 0:
            continue
        for target in ("train", "test", "eval"):
            count = Counter(placed[g] for g in members)
            if count[target]:
                continue
            donors = [
                s for s in SPLITS if s != target and count[s] >= 2
                and any(placed[g] == s and g not in fixed for g in members)
            ]  # fmt: skip
            if not donors:
                continue
            donor = max(donors, key=lambda s: count[s])
            lo, hi = _interval(target, cfg)
            movable = sorted(g for g in members if placed[g] == donor and g not in fixed)
            chosen = min(movable, key=lambda g: (min(abs(u_of[g] - lo), abs(u_of[g] - hi)), g))
            placed[chosen] = target

    splits = [s if s is not None else placed[g] for s, g in zip(manifest["split"].to_list(), row_group)]
    # A speaker with a given split on some rows gets it on all of them.
    splits = [placed[g] if g in fixed else s for s, g in zip(splits, row_group)]
    return manifest.with_columns(pl.Series("split", splits, dtype=pl.String))


# --------------------------------------------------------------------------- summaries and persistence


def _counts(values: Iterable[Any], missing: str) -> dict[str, int]:
    counter = Counter(missing if v is None else str(v) for v in values)
    return {k: counter[k] for k in sorted(counter)}


def summarize(manifest: pl.DataFrame) -> dict:
    """Counts per class, split, sex and hospital (JSON-able, string keys)."""
    return {
        "n_clips": manifest.height,
        "n_speakers": manifest["speaker_id"].n_unique() if manifest.height else 0,
        "counts": {
            "class": _counts(manifest["label"].to_list(), "unknown"),
            "split": _counts(manifest["split"].to_list(), "unassigned"),
            "sex": _counts(manifest["sex"].to_list(), "unknown"),
            "hospital": _counts(manifest["hospital"].to_list(), "unknown"),
        },
    }


def manifest_to_bytes(df: pl.DataFrame) -> bytes:
    """Serialise a manifest (or any DataFrame derived from one) as parquet."""
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def manifest_from_bytes(data: bytes) -> pl.DataFrame:
    """Inverse of :func:`manifest_to_bytes`; DatasetError when the bytes are not a manifest."""
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise DatasetError(f"manifest bytes are not valid parquet: {exc}") from None
    missing = [c for c in MANIFEST_SCHEMA if c not in df.columns]
    if missing:
        raise DatasetError(f"manifest is missing column(s): {', '.join(missing)}")
    return df

"""Metadata CSVs: find them, and parse each row into a canonical manifest row.

A dataset holds metadata CSVs with SPIRA's columns
(``file_path,class,sexo,idade,nivel_falta_de_ar``; optional ``speaker_id``,
``hospital``, ``split``). ``file_path`` is relative to the folder of its CSV,
so several CSVs (one per hospital, say) can live side by side. Every cell is
read as text and parsed per row: a bad cell becomes that row's problem (a
reason code and a sentence), never a failure of the whole CSV.
"""
from __future__ import annotations

import io
import math
import posixpath
from typing import Any, Iterable

import polars as pl

from spira_lib.dataset.manifest import MANIFEST_SCHEMA, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, DatasetError
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, join_key
from spira_lib.reasons import Problem, Reason, join_problems

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

# Cells that spreadsheet/pandas exports use for "no value".
_MISSING = {"", "nan", "none", "null", "na", "n/a"}


def _is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def find_metadata_csvs(store: ObjectStore, *, noise_dir: str = "noises") -> list[str]:
    """Keys of the metadata CSVs in ``store``, sorted.

    CSVs under ``noise_dir`` (relative to the store root) and under hidden
    folders/files (``.ipynb_checkpoints``, editor backups) are not metadata. An
    absolute ``noise_dir`` (``/path`` or ``s3://...``) lies outside the store and
    excludes nothing.
    """
    return metadata_keys(store.list(""), noise_dir)


def metadata_keys(infos: Iterable[ObjectInfo], noise_dir: str) -> list[str]:
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


def _resolve_key(csv_dir: str, file_path: str) -> tuple[str | None, Problem | None]:
    """(store key, problem) for a file_path relative to the CSV's folder."""
    path = file_path.replace("\\", "/")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None, Problem(Reason.BAD_PATH, f"file_path {file_path!r} is absolute; it must be relative to the CSV's folder")
    joined = posixpath.normpath(posixpath.join(csv_dir, path)) if csv_dir else posixpath.normpath(path)
    if joined in (".", "") or joined == ".." or joined.startswith("../"):
        return None, Problem(Reason.BAD_PATH, f"file_path {file_path!r} points outside the dataset")
    return joined, None


def _number(raw: str) -> float:
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        return math.nan


def _parse_label(raw: str | None) -> tuple[int | None, Problem | None]:
    if raw is None:
        return None, Problem(Reason.BAD_LABEL, "missing label in column 'class'")
    value = _number(raw)
    if value in (0.0, 1.0):
        return int(value), None
    return None, Problem(Reason.BAD_LABEL, f"invalid label {raw!r} in column 'class' (expected 0 or 1)")


def _parse_age(raw: str | None) -> tuple[float | None, Problem | None]:
    if raw is None:
        return None, None
    value = _number(raw)
    if not math.isfinite(value):
        return None, Problem(Reason.BAD_AGE, f"non-numeric age {raw!r} in column 'idade'")
    return value, None


def _parse_split(raw: str | None) -> tuple[str | None, Problem | None]:
    if raw is None:
        return None, None
    split = _SPLIT_ALIASES.get(raw.lower())
    if split is None:
        return None, Problem(Reason.BAD_SPLIT, f"unknown split {raw!r} in column 'split' (expected train, eval or test)")
    return split, None


def _stem(key: str) -> str:
    return posixpath.splitext(posixpath.basename(key))[0]


def _read_frame(store: ObjectStore, csv_key: str) -> pl.DataFrame:
    """The CSV as all-text columns with normalised (lowercase, stripped) names."""
    try:
        raw = store.get(csv_key)
    except ObjectNotFound:
        raise DatasetError(f"metadata CSV {csv_key!r} does not exist in {store.uri}") from None
    text = _decode_text(raw)
    if not text.strip():
        raise DatasetError(f"metadata CSV {csv_key!r} is empty (no header row)")
    try:
        df = pl.read_csv(
            io.BytesIO(text.encode("utf-8")), separator=_sniff_separator(text), infer_schema=False,
            truncate_ragged_lines=True, raise_if_empty=True,
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
    return df


def _parse_row(cells: dict[str, str | None], csv_dir: str) -> dict[str, Any]:
    """One metadata row as manifest values (without sha256/size/source)."""
    problems: list[Problem] = []

    def take(parsed: tuple[Any, Problem | None]) -> Any:
        value, problem = parsed
        if problem is not None:
            problems.append(problem)
        return value

    key = None
    if cells["file_path"] is None:
        problems.append(Problem(Reason.BAD_PATH, "file_path is empty"))
    else:
        key = take(_resolve_key(csv_dir, cells["file_path"]))
    label, age, split = take(_parse_label(cells["class"])), take(_parse_age(cells["idade"])), take(_parse_split(cells["split"]))
    speaker, derived = cells["speaker_id"], False
    if speaker is None:
        source = key or (cells["file_path"] or "").replace("\\", "/")
        speaker, derived = (_stem(source) or None), True
    sex = cells["sexo"]
    if sex is not None:
        sex = _SEX_ALIASES.get(sex.lower(), sex)
    problem = join_problems(problems)
    return {
        "key": key, "sha256": None, "size": None, "label": label, "sex": sex, "age": age,
        "dyspnea": cells["nivel_falta_de_ar"], "speaker_id": speaker, "speaker_derived": derived,
        "hospital": cells["hospital"], "split": split,
        "problem_code": problem.code.value if problem else None, "problem": problem.message if problem else None,
    }


def read_metadata(store: ObjectStore, csv_key: str) -> pl.DataFrame:
    """Parse one metadata CSV into canonical manifest rows (``sha256``/``size`` still empty).

    Raises DatasetError when the CSV cannot be parsed at all or lacks required columns.
    """
    df = _read_frame(store, csv_key)
    csv_dir = posixpath.dirname(csv_key)
    out: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA}
    wanted = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in df.columns]
    for row_no, values in enumerate(df.select(wanted).iter_rows(named=True), start=1):
        cells = {c: _clean(values.get(c)) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        if all(v is None for v in cells.values()):
            continue  # blank line or an empty ",,,," row from a spreadsheet: not a record
        row = _parse_row(cells, csv_dir) | {"source_csv": csv_key, "row": row_no}
        for name in MANIFEST_SCHEMA:
            out[name].append(row[name])
    return pl.DataFrame(out, schema=MANIFEST_SCHEMA)

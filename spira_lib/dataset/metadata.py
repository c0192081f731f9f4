"""Metadata CSVs: find them, and parse each row into a canonical manifest row.

A dataset holds metadata CSVs with SPIRA's columns
(``file_path,class,sexo,idade,nivel_falta_de_ar``; optional ``speaker_id``,
``hospital``, ``split``). ``file_path`` is relative to the folder of its CSV,
so several CSVs (one per hospital, say) can live side by side. Every cell is
read as text and parsed per row: a bad cell becomes that row's problem (a
reason code and a sentence), never a failure of the whole CSV. Only a CSV that
cannot be read as a table at all (empty, binary, unparseable, over the size
limit, missing or duplicated columns) is a DatasetError that names the file.
Cells are checked first (``cells``): nothing formula-looking or outside its
vocabulary reaches the manifest.
"""
from __future__ import annotations

import csv
import io
import math
import posixpath
from typing import Any, Iterable

import polars as pl

from spira_lib.dataset.cells import cell_problem, decode_text, number, parse_dyspnea, parse_sex
from spira_lib.dataset.manifest import MANIFEST_SCHEMA, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, DatasetError
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, StoreError, join_key
from spira_lib.reasons import Problem, Reason, join_problems

# Spellings seen in hand-made CSVs (English and Portuguese) for the three splits.
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "treino": "train",
    "eval": "eval", "val": "eval", "valid": "eval", "validation": "eval", "dev": "eval",
    "validacao": "eval", "validação": "eval",
    "test": "test", "testing": "test", "teste": "test",
}  # fmt: skip
# Cells that spreadsheet/pandas exports (and people) use for "no value".
_MISSING = {"", "nan", "none", "null", "na", "n/a", "-", "--", "\u2014"}


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


def noise_prefix(noise_dir: str) -> str:
    """The key prefix of the noise folder inside the dataset ('' when it lies outside)."""
    if noise_dir and "://" not in noise_dir and not noise_dir.startswith("/") and join_key(noise_dir):
        return join_key(noise_dir) + "/"
    return ""


def metadata_keys(infos: Iterable[ObjectInfo], noise_dir: str) -> list[str]:
    noise = noise_prefix(noise_dir)
    found = []
    for info in infos:
        key = info.key
        if not key.lower().endswith(".csv") or _is_hidden(key):
            continue
        if noise and key.startswith(noise):
            continue
        found.append(key)
    return sorted(found)


def _excel_separator_line(text: str) -> tuple[str, str | None]:
    """Excel may write a first line ``sep=;`` naming the separator: (text without it, the separator)."""
    first, _, rest = text.lstrip("\ufeff").partition("\n")
    hint = first.strip()
    if hint.lower().startswith("sep=") and len(hint) == 5:
        return rest, hint[4]
    return text, None


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
    if "://" in path:
        return None, Problem(Reason.BAD_PATH, f"file_path {file_path!r} is a URL; it must be a path relative to the CSV's folder")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None, Problem(Reason.BAD_PATH, f"file_path {file_path!r} is absolute; it must be relative to the CSV's folder")
    joined = posixpath.normpath(posixpath.join(csv_dir, path)) if csv_dir else posixpath.normpath(path)
    if joined in (".", "") or joined == ".." or joined.startswith("../"):
        return None, Problem(Reason.BAD_PATH, f"file_path {file_path!r} points outside the dataset")
    return joined, None


def _parse_label(raw: str | None) -> tuple[int | None, Problem | None]:
    if raw is None:
        return None, Problem(Reason.BAD_LABEL, "missing label in column 'class'")
    value = number(raw)
    if value in (0.0, 1.0):
        return int(value), None
    return None, Problem(Reason.BAD_LABEL, f"invalid label {raw!r} in column 'class' (expected 0 or 1)")


def _parse_age(raw: str | None) -> tuple[float | None, Problem | None]:
    if raw is None:
        return None, None
    value = number(raw)
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


def _read_table(store: ObjectStore, csv_key: str, max_bytes: int | None, size: int | None) -> tuple[list[str], list[list[str]]]:
    """The CSV's normalised (lowercase, stripped) column names and its records (blank lines as [])."""
    if max_bytes is not None and size is not None and size > max_bytes:
        raise DatasetError(_too_large(csv_key, size, max_bytes))
    try:
        raw = store.get(csv_key)
    except ObjectNotFound:
        raise DatasetError(f"metadata CSV {csv_key!r} does not exist in {store.uri}") from None
    except StoreError as exc:
        raise DatasetError(f"metadata CSV {csv_key!r} cannot be read: {exc}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise DatasetError(_too_large(csv_key, len(raw), max_bytes))
    text = decode_text(raw, csv_key)
    if not text.strip():
        raise DatasetError(f"metadata CSV {csv_key!r} is empty (no header row): add the header and rows, or remove it")
    records = _records(text, csv_key)
    while records and not any(c.strip() for c in records[0]):
        records.pop(0)  # blank lines above the header
    if not records:
        raise DatasetError(f"metadata CSV {csv_key!r} is empty (no header row): add the header and rows, or remove it")
    names = [c.strip().lstrip("\ufeff").lower() for c in records[0]]
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise DatasetError(f"metadata CSV {csv_key!r} has duplicate column(s): {', '.join(dupes)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = ", ".join(repr(n[:40]) for n in names[:12] if n) or "none"
        raise DatasetError(f"metadata CSV {csv_key!r} is missing required column(s): {', '.join(missing)} (found: {found})")
    return names, records[1:]


def _records(text: str, csv_key: str) -> list[list[str]]:
    """The CSV's records; DatasetError when it is not a table, naming the line."""
    text, separator = _excel_separator_line(text)
    delimiter = separator or _sniff_separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records, start, end = [], 1, 0
    try:
        for record in reader:
            records.append(record)
            start, end = end + 1, reader.line_num
    except csv.Error as exc:
        raise DatasetError(f"metadata CSV {csv_key!r} cannot be parsed near line {reader.line_num}: {exc}") from None
    if records and any("\n" in c or "\r" in c for c in records[-1]):
        # The lenient reader lets a quote that is never closed swallow the rest of the file into one cell.
        tail = "".join(io.StringIO(text, newline="").readlines()[start - 1 :])
        try:
            list(csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True))
        except csv.Error:
            raise DatasetError(
                f"metadata CSV {csv_key!r} has a quote opened on line {start} that is never closed "
                "(the rest of the file would become one cell)"
            ) from None
    return records


def _too_large(key: str, size: int, limit: int) -> str:
    return f"metadata CSV {key!r} is {size / 2**20:.0f} MB, larger than the {limit / 2**20:g} MB limit (audio.max_file_mb)"


def _cells(names: list[str], record: list[str]) -> tuple[dict[str, str | None], Problem | None]:
    """The record's cells by column (missing trailing cells are blank) and a problem when it has too many."""
    extra = [c for c in record[len(names):] if c.strip()]
    values = {name: record[i] if i < len(record) else None for i, name in enumerate(names) if name}
    cells = {c: _clean(values.get(c)) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    if extra:
        return cells, Problem(
            Reason.BAD_ROW,
            f"row has {len(names) + len(extra)} cells but the header has {len(names)} columns "
            "(a separator inside an unquoted value?)",
        )
    return cells, None


def _parse_row(cells: dict[str, str | None], csv_dir: str, row_problem: Problem | None = None) -> dict[str, Any]:
    """One metadata row as manifest values (without sha256/size/source)."""
    problems: list[Problem] = [row_problem] if row_problem else []
    bad = {column: cell_problem(column, value) for column, value in cells.items() if value is not None}
    for column, problem in bad.items():
        if problem is not None:
            problems.append(problem)
            cells[column] = None  # a bad cell never reaches the manifest

    def take(parsed: tuple[Any, Problem | None]) -> Any:
        value, problem = parsed
        if problem is not None:
            problems.append(problem)
        return value

    key = None
    if cells["file_path"] is None:
        if bad.get("file_path") is None:
            problems.append(Problem(Reason.BAD_PATH, "file_path is empty"))
    else:
        key = take(_resolve_key(csv_dir, cells["file_path"]))
    label, age, split = take(_parse_label(cells["class"])), take(_parse_age(cells["idade"])), take(_parse_split(cells["split"]))
    sex, dyspnea = take(parse_sex(cells["sexo"])), take(parse_dyspnea(cells["nivel_falta_de_ar"]))
    speaker, derived = cells["speaker_id"], False
    if speaker is None:
        source = key or (cells["file_path"] or "").replace("\\", "/")
        speaker, derived = (_stem(source) or None), True
    problem = join_problems(problems)
    return {
        "key": key, "sha256": None, "size": None, "label": label, "sex": sex, "age": age,
        "dyspnea": dyspnea, "speaker_id": speaker, "speaker_derived": derived,
        "hospital": cells["hospital"], "split": split,
        "problem_code": problem.code.value if problem else None, "problem": problem.message if problem else None,
    }


def read_metadata(store: ObjectStore, csv_key: str, *, max_bytes: int | None = None, size: int | None = None) -> pl.DataFrame:
    """Parse one metadata CSV into canonical manifest rows (``sha256``/``size`` still empty).

    Raises DatasetError when the CSV cannot be parsed at all, lacks required
    columns, or is larger than ``max_bytes`` (judged from ``size``, its listed
    size, before reading when given).
    """
    names, records = _read_table(store, csv_key, max_bytes, size)
    csv_dir = posixpath.dirname(csv_key)
    out: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA}
    for row_no, record in enumerate(records, start=1):
        cells, row_problem = _cells(names, record)
        if row_problem is None and all(v is None for v in cells.values()):
            continue  # blank line or an empty ",,,," row from a spreadsheet: not a record
        if [c.strip().lower() for c in record if c.strip()] == [n for n in names if n]:
            continue  # the header again (CSVs concatenated with their headers): not a record
        row = _parse_row(cells, csv_dir, row_problem) | {"source_csv": csv_key, "row": row_no}
        for name in MANIFEST_SCHEMA:
            out[name].append(row[name])
    return pl.DataFrame(out, schema=MANIFEST_SCHEMA)

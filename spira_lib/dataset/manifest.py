"""The manifest: one canonical row per metadata row, its content digest, and its stored form.

The snapshot's ``digest`` identifies the dataset by content and labels, not by
paths: renaming files or reordering CSV rows keeps it, relabelling a clip or
adding one changes it. Retraining is keyed on this digest.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import polars as pl

from spira_lib.hashing import sha256_hex

REQUIRED_COLUMNS = ("file_path", "class", "sexo", "idade", "nivel_falta_de_ar")
OPTIONAL_COLUMNS = ("speaker_id", "hospital", "split")
SPLITS = ("train", "eval", "test")

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
    # Why the row cannot be used (None when it can): a reasons.Reason code and the sentence.
    "problem_code": pl.String(),
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
    return sha256_hex("\n".join(rows).encode("utf-8"))


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

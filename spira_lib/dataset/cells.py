"""Metadata text and cells: decode a CSV's bytes, and check each cell before it is parsed.

What reaches the manifest (and from there reports, model cards and slice
tables) is only a value from a known vocabulary or a number: ``sexo`` is M, F or
blank, ``nivel_falta_de_ar`` a number from 0 to 10 or blank, and no cell that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` at the start of a
non-numeric cell), that holds control characters, or that is absurdly long
passes. Such a row is quarantined with a ``bad_value`` reason that quotes the
cell (``repr``, shortened), never the bare cell.
"""
from __future__ import annotations

import math
import unicodedata

from spira_lib.dataset.manifest import DatasetError
from spira_lib.reasons import Problem, Reason

# Longer cells are pasted text or a broken export, not metadata.
MAX_CELL_CHARS = 1000
FORMULA_STARTS = ("=", "+", "-", "@")
DYSPNEA_RANGE = (0.0, 10.0)

_SEX_ALIASES = {
    "m": "M", "male": "M", "masculino": "M", "masc": "M", "masc.": "M", "h": "M", "homem": "M", "man": "M",
    "f": "F", "female": "F", "feminino": "F", "fem": "F", "fem.": "F", "mulher": "F", "woman": "F",
}  # fmt: skip
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def shown(value: str, limit: int = 60) -> str:
    """A cell as it may appear inside a message: quoted, escaped, shortened."""
    text = repr(value[:limit])
    return text if len(value) <= limit else f"{text[:-1]}...{text[-1]} ({len(value)} characters)"


def decode_text(raw: bytes, key: str) -> str:
    """A CSV's text: BOM-marked UTF-8/UTF-16, else UTF-8, else cp1252 (Brazilian Windows exports).

    A file with NUL bytes that is not UTF-16 is binary (a spreadsheet renamed .csv, a
    corrupted copy): DatasetError, rather than columns of garbage.
    """
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                break
    if b"\x00" in raw:
        text = _utf16_without_bom(raw)
        if text is None:
            raise DatasetError(
                f"metadata CSV {key!r} is not a text file: it contains NUL bytes "
                "(a binary file such as a spreadsheet renamed .csv, or a corrupted copy)"
            )
        return text
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _utf16_without_bom(raw: bytes) -> str | None:
    """UTF-16 text without a BOM (every other byte NUL, as ASCII looks in UTF-16), else None."""
    if len(raw) < 4 or len(raw) % 2:
        return None
    for encoding, zeros in (("utf-16-le", raw[1::2]), ("utf-16-be", raw[0::2])):
        if zeros.count(0) >= 0.9 * len(zeros):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                return None
            return text if "\x00" not in text else None
    return None


def number(raw: str) -> float:
    """A cell as a number ('45,5' is 45.5), NaN when it is not one."""
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        return math.nan


def cell_problem(column: str, value: str) -> Problem | None:
    """Why a (stripped, non-empty) cell must not reach the manifest, whatever its column."""
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return Problem(Reason.BAD_VALUE, f"value {shown(value)} in column {column!r} contains control characters")
    if len(value) > MAX_CELL_CHARS:
        return Problem(Reason.BAD_VALUE, f"value in column {column!r} is {len(value)} characters long (limit {MAX_CELL_CHARS})")
    if value.startswith(FORMULA_STARTS) and math.isnan(number(value)):
        return Problem(
            Reason.BAD_VALUE,
            f"value {shown(value)} in column {column!r} looks like a spreadsheet formula (starts with {value[0]!r})",
        )
    return None


def parse_sex(raw: str | None) -> tuple[str | None, Problem | None]:
    if raw is None:
        return None, None
    sex = _SEX_ALIASES.get(raw.lower())
    if sex is None:
        return None, Problem(Reason.BAD_VALUE, f"unknown value {shown(raw)} in column 'sexo' (expected M or F, or blank)")
    return sex, None


def parse_dyspnea(raw: str | None) -> tuple[str | None, Problem | None]:
    """The level as written (the digest keeps its spelling), when it is a number in range."""
    if raw is None:
        return None, None
    value = number(raw)
    lo, hi = DYSPNEA_RANGE
    if not (math.isfinite(value) and lo <= value <= hi):
        return None, Problem(
            Reason.BAD_VALUE,
            f"invalid value {shown(raw)} in column 'nivel_falta_de_ar' (expected a number from {lo:g} to {hi:g}, or blank)",
        )
    return raw, None

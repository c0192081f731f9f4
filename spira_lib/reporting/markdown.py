"""Markdown primitives: every table cell goes through :func:`md_cell`, so a '|' or a newline
in a file name or reason cannot break the table layout. Missing values render as "n/a"."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

NA = "n/a"


def md_cell(value: Any) -> str:
    """One table cell: floats to 3 decimals, None to n/a, '|' escaped, newlines flattened."""
    if value is None:
        text = NA
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = NA if value != value else f"{value:.3f}"
    else:
        text = str(value)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text.replace("|", "\\|") if text else " "


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table with a header separator."""
    lines = [
        "| " + " | ".join(md_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        cells = list(row) + [None] * (len(headers) - len(row))
        lines.append("| " + " | ".join(md_cell(c) for c in cells[: len(headers)]) + " |")
    return "\n".join(lines)


def inline(value: Any) -> str:
    """A value inside a sentence or code span; pipes escaped like in tables."""
    return md_cell(value)


def get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def round_value(value: Any, ndigits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, ndigits) if value == value else None
    return value


def pct(value: Any) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else NA


def details(summary: str, body: str) -> str:
    """A collapsed block (HTML <details>); the blank lines let markdown inside it render."""
    return f"<details><summary>{inline(summary)}</summary>\n\n{body.strip()}\n\n</details>"

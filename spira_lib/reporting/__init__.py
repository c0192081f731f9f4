"""Markdown and table renderings of evaluation reports (Prefect UI, model cards).

Pure functions over the JSON dicts produced by :mod:`spira_lib.metrics` and
:mod:`spira_lib.gate`: no I/O, no Prefect. Missing keys render as "n/a" rather
than raising, because a report that cannot be shown is worse than a report
with a hole in it.
"""
from spira_lib.reporting.documents import model_card_markdown, validation_report_markdown
from spira_lib.reporting.markdown import NA, md_cell, md_table
from spira_lib.reporting.tables import METRIC_LABELS, SLICE_COLUMNS, metrics_table, slices_table

__all__ = [
    "METRIC_LABELS",
    "NA",
    "SLICE_COLUMNS",
    "md_cell",
    "md_table",
    "metrics_table",
    "model_card_markdown",
    "slices_table",
    "validation_report_markdown",
]

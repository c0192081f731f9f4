"""Metrics per slice (sex, age band, hospital): a model can look fine on average and fail one group."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import polars as pl

from spira_lib.metrics.bootstrap import bootstrap_intervals
from spira_lib.metrics.point import UNKNOWN, binary_metrics


def _band_labels(edges: list[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def _check_bands(age_bands: list[float]) -> list[float]:
    edges = [float(e) for e in age_bands]
    if len(edges) < 2:
        raise ValueError(f"age_bands needs at least two edges (got {age_bands})")
    if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(f"age_bands must be strictly increasing (got {age_bands})")
    return edges


def _age_band_column(ages: pl.Series, edges: list[float]) -> list[str]:
    labels = _band_labels(edges)
    arr = ages.cast(pl.Float64, strict=False).to_numpy()
    # Bands are left-closed [lo, hi); null/NaN or out-of-range ages are "unknown".
    idx = np.searchsorted(np.asarray(edges), arr, side="right") - 1
    out = []
    for a, i in zip(arr, idx):
        if a is None or not np.isfinite(a) or i < 0 or i >= len(labels):
            out.append(UNKNOWN)
        else:
            out.append(labels[i])
    return out


def _string_column(series: pl.Series) -> list[str]:
    values = series.cast(pl.Utf8, strict=False).to_list()
    return [UNKNOWN if v is None or str(v).strip() == "" else str(v) for v in values]


def _slice_order(values: Iterable[str], preferred: list[str] | None = None) -> list[str]:
    present = set(values)
    if preferred is not None:
        ordered = [v for v in preferred if v in present]
    else:
        ordered = sorted(v for v in present if v != UNKNOWN)
    if UNKNOWN in present:
        ordered.append(UNKNOWN)
    return ordered


def require_columns(frame: pl.DataFrame, *names: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame is missing column(s) {missing} (has {frame.columns})")


def slice_metrics(
    frame: pl.DataFrame,
    *,
    threshold: float = 0.5,
    age_bands: list[float] | None = None,
    min_slice_size: int = 5,
    interval_samples: int = 0,
    confidence: float = 0.95,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """binary_metrics per sex, per age band and per hospital.

    With ``interval_samples > 0`` each entry also has ``intervals``
    (bootstrap intervals of its metrics, as in ``bootstrap_intervals``).

    Each entry is ``{"slice": "sex"|"age_band"|"hospital", "value": str,
    "n": int, "small": n < min_slice_size, **binary_metrics}``. A column that
    is absent is skipped; null values (and ages outside every band) are
    grouped under the value "unknown" so every file is accounted for. Age
    bands are left-closed: with edges [0, 40, 60, 200], age 40 is in "40-60".
    Empty bands are omitted. Order: sex, age_band, hospital; values sorted
    (bands in edge order), "unknown" last.
    """
    require_columns(frame, "label", "prob")
    edges = _check_bands(age_bands if age_bands is not None else [0, 40, 60, 200])
    y = frame["label"].to_numpy()
    p = frame["prob"].to_numpy()
    groups: list[tuple[str, list[str], list[str] | None]] = []
    if "sex" in frame.columns:
        groups.append(("sex", _string_column(frame["sex"]), None))
    if "age" in frame.columns:
        groups.append(("age_band", _age_band_column(frame["age"], edges), _band_labels(edges)))
    if "hospital" in frame.columns:
        groups.append(("hospital", _string_column(frame["hospital"]), None))

    out: list[dict[str, Any]] = []
    for name, column, preferred in groups:
        col = np.asarray(column, dtype=object)
        for value in _slice_order(column, preferred):
            mask = col == value
            n = int(mask.sum())
            entry: dict[str, Any] = {"slice": name, "value": value, "n": n, "small": n < min_slice_size}
            entry.update(binary_metrics(y[mask], p[mask], threshold))
            if interval_samples > 0:
                entry["intervals"] = bootstrap_intervals(
                    y[mask], p[mask], threshold=threshold, n_samples=interval_samples, confidence=confidence, seed=seed
                )
            out.append(entry)
    return out

"""Profiles of a batch (``ProfileTable``) and the compact, JSON-able reference a model keeps.

A registered model stores the ``ReferenceProfile`` of its training snapshot
(``drift_reference.json``): per profile feature the sorted values, or, above
``max_values`` clips, that many evenly spaced order statistics; the counts of
label / sex / age band / hospital; optionally a subsample of the model's own
clip embeddings (float16). A reference of 5,000 clips is about 150 kB.

Drift tests against a quantile-reduced reference treat it as a sample of
``len(values)`` clips: that is conservative (p-values a little too large,
never too small), and with a batch of 100 clips and 1,000 stored values the
effective sample size drops from 100 to 91.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from spira_lib.metrics.slices import _age_band_column, _check_bands, _string_column
from spira_lib.monitoring.profile import FEATURE_NAMES, PROFILE_VERSION

DEFAULT_MAX_VALUES = 1000
DEFAULT_MAX_EMBEDDINGS = 500
DEFAULT_AGE_BANDS = (0.0, 40.0, 60.0, 200.0)
CATEGORICAL_COLUMNS = ("label", "sex", "age_band", "hospital")


@dataclass(frozen=True)
class ProfileTable:
    """Profiles of a batch: one row per clip, column ``clip`` (an id, e.g. the sha256) + one Float64 column per feature."""

    frame: pl.DataFrame

    @classmethod
    def from_profiles(cls, profiles: Mapping[str, Mapping[str, float]] | Iterable[tuple[str, Mapping[str, float]]]) -> "ProfileTable":
        items = list(profiles.items()) if isinstance(profiles, Mapping) else list(profiles)
        data: dict[str, list] = {"clip": [str(k) for k, _ in items]}
        for name in FEATURE_NAMES:
            data[name] = [float(p.get(name, float("nan"))) for _, p in items]
        schema = {"clip": pl.String, **{n: pl.Float64 for n in FEATURE_NAMES}}
        return cls(pl.DataFrame(data, schema=schema))

    def __len__(self) -> int:
        return self.frame.height

    def values(self, name: str) -> np.ndarray:
        """Finite values of one feature (NaN, e.g. no voiced frame for f0, left out)."""
        arr = self.frame[name].to_numpy().astype(np.float64)
        return arr[np.isfinite(arr)]


def _robust_scale(x: np.ndarray) -> float:
    """IQR / 1.349 (the SD of a normal), else the SD, else 1: divides Wasserstein distances."""
    if x.size < 2:
        return 1.0
    q25, q75 = np.percentile(x, [25, 75])
    for s in ((q75 - q25) / 1.349, float(np.std(x))):
        if s > 1e-12:
            return float(s)
    return 1.0


def _round(x: np.ndarray, digits: int = 7) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in x]


class FeatureSample(BaseModel):
    """One feature's reference distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int  # clips with a finite value
    n_missing: int = 0
    values: list[float]  # sorted; all n values when exact, else len(values) evenly spaced order statistics
    exact: bool
    scale: float  # robust spread of the full reference (see _robust_scale)

    @classmethod
    def from_values(cls, x: np.ndarray, *, n_missing: int = 0, max_values: int = DEFAULT_MAX_VALUES) -> "FeatureSample":
        x = np.sort(np.asarray(x, dtype=np.float64))
        exact = x.size <= max_values
        kept = x if exact else x[((np.arange(max_values) + 0.5) * x.size / max_values).astype(np.int64)]
        return cls(n=int(x.size), n_missing=n_missing, values=_round(kept), exact=exact, scale=_robust_scale(x))

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)


class EmbeddingSample(BaseModel):
    """A (sub)sample of clip embeddings, float16, base64 in JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_total: int
    shape: tuple[int, int]
    data: str

    @classmethod
    def from_array(cls, emb: np.ndarray, *, max_rows: int = DEFAULT_MAX_EMBEDDINGS, seed: int = 0) -> "EmbeddingSample":
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be [clips, dims], got shape {emb.shape}")
        rows = emb
        if emb.shape[0] > max_rows:
            rows = emb[np.sort(np.random.default_rng(seed).choice(emb.shape[0], max_rows, replace=False))]
        raw = np.ascontiguousarray(rows, dtype="<f2").tobytes()
        return cls(n_total=int(emb.shape[0]), shape=(int(rows.shape[0]), int(rows.shape[1])), data=base64.b64encode(raw).decode("ascii"))

    def array(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.data), dtype="<f2").reshape(self.shape).astype(np.float32)


class ReferenceProfile(BaseModel):
    """What a registered model keeps to be compared with later batches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile_version: int = PROFILE_VERSION
    n_clips: int
    features: dict[str, FeatureSample]
    categorical: dict[str, dict[str, int]] = Field(default_factory=dict)
    embeddings: EmbeddingSample | None = None
    embedding_model: str | None = None  # what produced the embeddings (e.g. the checkpoint's sha256)

    @classmethod
    def build(
        cls,
        table: ProfileTable,
        *,
        categorical: Mapping[str, Mapping[str, int]] | None = None,
        embeddings: np.ndarray | None = None,
        embedding_model: str | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        max_embeddings: int = DEFAULT_MAX_EMBEDDINGS,
    ) -> "ReferenceProfile":
        feats = {}
        for name in FEATURE_NAMES:
            x = table.values(name)
            if x.size:
                feats[name] = FeatureSample.from_values(x, n_missing=len(table) - x.size, max_values=max_values)
        emb = None if embeddings is None else EmbeddingSample.from_array(embeddings, max_rows=max_embeddings)
        return cls(
            n_clips=len(table), features=feats, categorical={k: dict(v) for k, v in (categorical or {}).items()},
            embeddings=emb, embedding_model=embedding_model,
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> "ReferenceProfile":
        ref = cls.model_validate(json.loads(text))
        if ref.profile_version != PROFILE_VERSION:
            raise ValueError(
                f"reference profile version {ref.profile_version} != code version {PROFILE_VERSION}: recompute the reference"
            )
        return ref


def categorical_counts(frame: pl.DataFrame, *, age_bands: Sequence[float] = DEFAULT_AGE_BANDS) -> dict[str, dict[str, int]]:
    """Counts per value of label / sex / age band / hospital for the columns a manifest-like frame has.

    Missing values count as ``unknown``; ages use left-closed bands as the slice metrics do.
    """
    out: dict[str, dict[str, int]] = {}
    columns = {
        "label": lambda: _string_column(frame["label"]),
        "sex": lambda: _string_column(frame["sex"]),
        "age_band": lambda: _age_band_column(frame["age"], _check_bands(list(age_bands))),
        "hospital": lambda: _string_column(frame["hospital"]),
    }
    for name, values in columns.items():
        source = "age" if name == "age_band" else name
        if source in frame.columns:
            counts: dict[str, int] = {}
            for v in values():
                counts[v] = counts.get(v, 0) + 1
            out[name] = dict(sorted(counts.items()))
    return out

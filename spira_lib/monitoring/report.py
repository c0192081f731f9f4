"""One drift decision for a batch: every test in one false-discovery family, a severity, picture data.

The batch decision: the p-values of every test run (one KS test per profile
feature, the embedding MMD test when embeddings are given, one chi-square test
per categorical column given) are Benjamini-Hochberg adjusted TOGETHER; a test
whose adjusted p-value is below ``alpha`` has "moved", and the batch has
drifted when anything moved. When nothing drifted, BH rejecting anything is
Simes' global test, so the chance of a false alarm is at most ``alpha`` for
independent or positively dependent tests.

Severity: ``none`` (nothing moved), ``major`` (a moved feature shifted by at
least ``major_wasserstein_norm`` reference spreads, the embedding test moved,
i.e. the champion sees different inputs, a category mix moved by a total
variation of at least ``major_tv``, or at least ``major_count`` tests moved),
else ``minor``.

``DriftReport`` is JSON-able; ``pictures`` hold what a chart of reference vs
current needs for each moved feature, and ``event_payload()`` the body of the
``spira.drift.detected`` event the flow emits.
"""
from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spira_lib.monitoring.drift import CategoricalShift, EmbeddingDrift, FeatureDrift, bh_adjust, categorical_shift, embedding_mmd, feature_drift
from spira_lib.monitoring.profile import UNITS
from spira_lib.monitoring.reference import ProfileTable, ReferenceProfile

DRIFT_EVENT = "spira.drift.detected"
Severity = Literal["none", "minor", "major"]
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class DriftThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.01, gt=0, lt=1)
    major_wasserstein_norm: float = Field(0.5, gt=0)
    major_tv: float = Field(0.2, gt=0, le=1)
    major_count: int = Field(3, ge=1)


class Picture(BaseModel):
    """Reference vs current distribution of one feature: a shared-bin histogram and a few quantiles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    unit: str
    bin_edges: list[float]
    ref_fraction: list[float]  # share of the reference per bin (values beyond the edges go to the end bins)
    cur_fraction: list[float]
    quantiles: list[float]
    ref_quantiles: list[float]
    cur_quantiles: list[float]


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: str
    alpha: float
    severity: Severity
    drifted: bool
    moved: list[str]  # feature names, "embedding", categorical column names; most significant first
    n_ref: int
    n_cur: int
    features: list[FeatureDrift]
    embedding: EmbeddingDrift | None = None
    categorical: list[CategoricalShift] = Field(default_factory=list)
    pictures: list[Picture] = Field(default_factory=list)

    def event_payload(self) -> dict:
        """Body of the ``spira.drift.detected`` event (emit it only when ``drifted``)."""
        moved_features = [f for f in self.features if f.moved]
        return {
            "event": DRIFT_EVENT, "batch": self.batch, "severity": self.severity, "features": self.moved,
            "n_clips": self.n_cur, "alpha": self.alpha,
            "shifts": {f.name: {"ref_median": f.ref_median, "cur_median": f.cur_median, "unit": f.unit,
                                "p_adjusted": f.p_adjusted} for f in moved_features},
        }


def picture(feature: str, ref: np.ndarray, cur: np.ndarray, *, bins: int = 30) -> Picture:
    """Histogram data on shared bins over the pooled 1st..99th percentiles, plus quantiles of each side."""
    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    lo, hi = np.percentile(np.concatenate([ref, cur]), [1, 99])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def share(x: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(x, lo, hi), bins=edges)
        return [float(c) / max(1, x.size) for c in counts]

    return Picture(
        feature=feature, unit=UNITS.get(feature, ""), bin_edges=[float(e) for e in edges],
        ref_fraction=share(ref), cur_fraction=share(cur), quantiles=list(_QUANTILES),
        ref_quantiles=[float(v) for v in np.quantile(ref, _QUANTILES)],
        cur_quantiles=[float(v) for v in np.quantile(cur, _QUANTILES)],
    )


def _severity(features: list[FeatureDrift], embedding: EmbeddingDrift | None, cats: list[CategoricalShift], t: DriftThresholds) -> Severity:
    n_moved = sum(f.moved for f in features) + bool(embedding and embedding.moved) + sum(bool(c.moved) for c in cats)
    if n_moved == 0:
        return "none"
    big = (
        any(f.moved and f.wasserstein_norm >= t.major_wasserstein_norm for f in features)
        or bool(embedding and embedding.moved)
        or any(c.moved and c.tv_distance >= t.major_tv for c in cats)
        or n_moved >= t.major_count
    )
    return "major" if big else "minor"


def drift_report(
    reference: ReferenceProfile,
    current: ProfileTable,
    *,
    batch: str,
    cur_embeddings: np.ndarray | None = None,
    ref_embeddings: np.ndarray | None = None,
    cur_categorical: Mapping[str, Mapping[str, int]] | None = None,
    thresholds: DriftThresholds = DriftThresholds(),
    n_permutations: int | None = None,
    seed: int = 0,
) -> DriftReport:
    """Compare a batch with a model's reference (see the module doc for the decision and severity).

    Embeddings are tested when ``cur_embeddings`` is given and a reference
    sample exists (``ref_embeddings``, else the one stored in ``reference``).
    Categorical columns are tested when present on both sides. The MMD test
    uses ``n_permutations`` (default: enough that its smallest possible p-value,
    1 / (1 + n), passes the strictest BH threshold, alpha / number of tests).
    """
    alpha = thresholds.alpha
    feats = feature_drift(reference, current, alpha=alpha)
    cats = [
        categorical_shift(reference.categorical[name], counts, name=name, seed=seed)
        for name, counts in (cur_categorical or {}).items() if name in reference.categorical
    ]
    emb = None
    if cur_embeddings is not None:
        ref_emb = ref_embeddings if ref_embeddings is not None else (reference.embeddings.array() if reference.embeddings else None)
        if ref_emb is not None:
            n_tests = len(feats) + len(cats) + 1
            n_perm = n_permutations or max(1000, int(np.ceil(2.0 * n_tests / alpha)))
            emb = embedding_mmd(ref_emb, cur_embeddings, n_permutations=n_perm, seed=seed)
    p = [f.p_value for f in feats] + ([emb.p_value] if emb else []) + [c.p_value for c in cats]
    q = list(bh_adjust(p))
    feats = [f.model_copy(update={"p_adjusted": float(qi), "moved": bool(qi < alpha)}) for f, qi in zip(feats, q)]
    q = q[len(feats):]
    if emb is not None:
        emb = emb.model_copy(update={"p_adjusted": float(q[0]), "moved": bool(q[0] < alpha)})
        q = q[1:]
    cats = [c.model_copy(update={"p_adjusted": float(qi), "moved": bool(qi < alpha)}) for c, qi in zip(cats, q)]
    moved = sorted(
        [(f.p_value, f.name) for f in feats if f.moved] + ([(emb.p_value, "embedding")] if emb and emb.moved else [])
        + [(c.p_value, c.name) for c in cats if c.moved]
    )
    pictures = [picture(f.name, reference.features[f.name].array(), current.values(f.name)) for f in feats if f.moved]
    return DriftReport(
        batch=batch, alpha=alpha, severity=_severity(feats, emb, cats, thresholds), drifted=bool(moved),
        moved=[name for _, name in moved], n_ref=reference.n_clips, n_cur=len(current),
        features=feats, embedding=emb, categorical=cats, pictures=pictures,
    )

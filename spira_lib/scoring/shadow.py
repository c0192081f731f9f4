"""Shadow comparison: a challenger scores the same clips as the champion, and nobody sees its decisions.

The comparison says how far the two models agree on the clips in use (not on
a test set): agreement rate, Cohen's kappa, score correlations, a two-sample
test between the score distributions, and which clips would flip. A running
tally per challenger (``shadow/<model>/v<NNNN>.json``) accumulates the
decisions over batches, so a promotion can wait for enough shadow evidence.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from spira_lib.pipeline.contract import StepResult
from spira_lib.pipeline.layout import get_json, put_json
from spira_lib.pipeline.workspace import Workspace
from spira_lib.ports import join_key

MAX_FLIPS_SHOWN = 50


# Clips already in a tally, by the first characters of their sha256 (enough to tell recordings apart).
COUNTED_PREFIX = 16


def tally_key(model: str, version: int) -> str:
    return join_key("shadow", model, f"v{version:04d}.json")


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Agreement of two yes/no raters beyond chance; None when chance agreement is total."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.size == 0:
        return None
    observed = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    chance = pa * pb + (1 - pa) * (1 - pb)
    return None if chance >= 1.0 else (observed - chance) / (1.0 - chance)


class ShadowReport(StepResult):
    model: str
    champion: int
    challenger: int
    n_clips: int
    agreement: float | None
    kappa: float | None
    pearson: float | None
    spearman: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    flips: list[dict[str, Any]]  # {"clip": pseudonym, "champion": p, "challenger": p}
    tally: dict[str, Any]

    def describe(self) -> str:
        if not self.n_clips:
            return f"shadow v{self.challenger}: no clips in common with champion v{self.champion}"
        return (f"shadow v{self.challenger} vs champion v{self.champion} on {self.n_clips} clips: agreement "
                f"{self.agreement:.3f}, kappa {self.kappa if self.kappa is None else round(self.kappa, 3)}, "
                f"{len(self.flips)} flip(s); running agreement {self.tally['agreement']:.3f} over {self.tally['n']} clips")


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def compare(champion: pl.DataFrame, challenger: pl.DataFrame, pseudonym, threshold: float) -> dict[str, Any]:
    """The statistics of one batch: champion and challenger predictions joined on the clip."""
    both = champion.select("sha256", "file", pl.col("probability").alias("p_old")).join(
        challenger.select("sha256", pl.col("probability").alias("p_new")), on="sha256")
    old, new = both["p_old"].to_numpy(), both["p_new"].to_numpy()
    d_old, d_new = old >= threshold, new >= threshold
    out: dict[str, Any] = {"n_clips": both.height, "agreement": None, "kappa": None, "pearson": None, "spearman": None,
                           "ks_statistic": None, "ks_pvalue": None, "flips": [], "decisions": [[0, 0], [0, 0]],
                           "per_clip": []}
    if both.height == 0:
        return out
    varied = old.std() > 0 and new.std() > 0
    ks = stats.ks_2samp(old, new)
    flips = both.filter(pl.Series((d_old != d_new).tolist()))
    out.update({
        "agreement": float(np.mean(d_old == d_new)), "kappa": cohen_kappa(d_old, d_new),
        "pearson": _finite(stats.pearsonr(old, new).statistic) if varied and both.height > 1 else None,
        "spearman": _finite(stats.spearmanr(old, new).statistic) if varied and both.height > 1 else None,
        "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
        "flips": [{"clip": pseudonym(f), "champion": round(a, 4), "challenger": round(b, 4)}
                  for f, a, b in flips.select("file", "p_old", "p_new").iter_rows()][:MAX_FLIPS_SHOWN],
        "decisions": [[int(np.sum(~d_old & ~d_new)), int(np.sum(~d_old & d_new))],
                      [int(np.sum(d_old & ~d_new)), int(np.sum(d_old & d_new))]],
        "per_clip": [(sha, int(a), int(b)) for sha, a, b in zip(both["sha256"].to_list(), d_old, d_new)],
    })
    return out


def update_tally(ws: Workspace, model: str, champion: int, challenger: int, batch_id: str,
                 per_clip: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Add the decisions (champion, challenger) on clips not counted before to the challenger's running tally.

    Each recording counts once per challenger, by content: a scoring run compares every clip both models
    have scored, and a rerun, a retried flow or a re-upload must not add the same evidence again (a held
    challenger is promoted on this count).
    """
    key = tally_key(model, challenger)
    tally = get_json(ws.store, key) or {"model": model, "challenger": challenger, "batches": [], "decisions": [[0, 0], [0, 0]]}
    counted = set(tally.get("clips", []))
    fresh = [(sha, a, b) for sha, a, b in per_clip if sha[:COUNTED_PREFIX] not in counted]
    if fresh:
        tally["batches"].append(batch_id)
        for sha, a, b in fresh:
            tally["decisions"][a][b] += 1
            counted.add(sha[:COUNTED_PREFIX])
        tally["champion"] = champion
    tally["clips"] = sorted(counted)
    n = sum(map(sum, tally["decisions"]))
    agree = tally["decisions"][0][0] + tally["decisions"][1][1]
    tally["n"], tally["agreement"] = n, (agree / n if n else 0.0)
    old = np.repeat([0, 0, 1, 1], [tally["decisions"][0][0], tally["decisions"][0][1], tally["decisions"][1][0], tally["decisions"][1][1]])
    new = np.repeat([0, 1, 0, 1], [tally["decisions"][0][0], tally["decisions"][0][1], tally["decisions"][1][0], tally["decisions"][1][1]])
    tally["kappa"] = cohen_kappa(old, new)
    put_json(ws.store, key, tally)
    return tally

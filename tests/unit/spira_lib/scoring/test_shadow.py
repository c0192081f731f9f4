"""Shadow comparison: the challenger scores the same clips; agreement, kappa, flips, a running tally."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from spira_lib.scoring import run_scoring
from spira_lib.scoring.shadow import cohen_kappa, compare
from tests.unit.spira_lib.scoring._helpers import setup, wav


def test_cohen_kappa_known_values():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(a, 1 - a) == pytest.approx(-1.0)
    assert cohen_kappa(np.ones(4), np.ones(4)) is None  # total chance agreement: undefined


def test_compare_counts_agreement_and_names_flips_by_pseudonym():
    old = pl.DataFrame({"sha256": list("abcd"), "file": ["w/a.wav", "w/b.wav", "w/c.wav", "w/d.wav"], "probability": [0.1, 0.9, 0.4, 0.6]})
    new = pl.DataFrame({"sha256": list("abcd"), "probability": [0.2, 0.8, 0.7, 0.55]})
    out = compare(old, new, lambda f: "p-" + f[2], threshold=0.5)
    assert out["n_clips"] == 4 and out["agreement"] == 0.75
    assert out["flips"] == [{"clip": "p-c", "champion": 0.4, "challenger": 0.7}]
    assert out["decisions"] == [[1, 1], [0, 2]]  # champion rows x challenger columns


def test_challenger_scores_the_same_batch_in_shadow_and_the_tally_runs():
    spec = setup(6, challenger=True)
    first = run_scoring(spec)
    report = first.shadow
    assert report is not None and (report.champion, report.challenger, report.n_clips) == (1, 2, 6)
    assert 0.0 <= report.agreement <= 1.0 and report.tally["n"] == 6
    assert first.promoted_challenger is None  # no shadow requirement, and v2 was not held
    spec.workspace().data.put("batch/more.wav", wav(50))
    second = run_scoring(spec)
    assert second.champion.n_scored == 1 and second.shadow.n_clips == 7  # compared on the whole batch it saw
    assert second.shadow.tally["n"] == 7 and len(second.shadow.tally["batches"]) == 2  # each recording counts once
    third = run_scoring(spec)  # nothing new: the same evidence is not counted again
    assert third.champion.n_scored == 0 and third.shadow.tally["n"] == 7 and len(third.shadow.tally["batches"]) == 2


def test_a_held_challenger_is_promoted_once_its_shadow_evidence_suffices():
    spec = setup(4, challenger=True, overrides={"gate.min_shadow_clips": 6, "gate.min_shadow_agreement": 0.0})
    reg = spec.workspace().registry
    reg.hold("spira", 2, reason="gate passed; waits for shadow")
    assert run_scoring(spec).promoted_challenger is None  # 4 clips: not enough yet
    for i in range(3):
        spec.workspace().data.put(f"batch/extra{i}.wav", wav(60 + i))
    outcome = run_scoring(spec)
    assert outcome.promoted_challenger == 2 and reg.champion("spira").version == 2
    assert reg.ledger("spira")[-1]["action"] == "promote" and "shadow evidence" in reg.ledger("spira")[-1]["reason"]

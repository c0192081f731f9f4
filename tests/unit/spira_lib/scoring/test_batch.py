"""Batch scoring: Parquet predictions once per (clip, model version), bad recordings skipped with a reason."""
from __future__ import annotations

import io

import polars as pl
import pytest

from spira_lib.registry import RegistryError
from spira_lib.scoring import read_predictions, run_scoring, score_batch
from tests.unit.spira_lib.scoring._helpers import setup, wav


def test_a_batch_is_scored_once_per_clip_and_model_version():
    spec = setup(6)
    ws = spec.workspace()
    champion = ws.registry.champion("spira")
    first = score_batch(spec, champion)
    assert (first.n_files, first.n_scored, first.n_known, first.rejected) == (6, 6, 0, [])
    df = pl.read_parquet(io.BytesIO(ws.store.get(first.predictions_key)))
    assert df.columns == ["file", "sha256", "probability", "decision", "window_std", "n_windows", "model", "version",
                          "model_sha256", "role", "batch_id", "scored_at"]
    assert df["probability"].is_between(0, 1).all() and set(df["decision"]) <= {"patient", "control"}
    assert (df["n_windows"] >= 2).all() and (df["window_std"] >= 0).all()
    assert set(df["model_sha256"]) == {champion.artifacts["model.pt"]["sha256"]}
    again = score_batch(spec, champion)
    assert (again.n_scored, again.n_known, again.predictions_key) == (0, 6, None)
    # The same recording under another name is the same clip: nothing new to score.
    ws.data.put("batch/renamed.wav", ws.data.get("batch/clip00.wav"))
    assert score_batch(spec, champion).n_scored == 0
    ws.data.put("batch/new.wav", wav(99))
    assert score_batch(spec, champion).n_scored == 1
    assert read_predictions(ws, "spira", 1).height == 7


def test_bad_recordings_are_skipped_with_a_reason_and_a_pseudonym():
    spec = setup(3)
    ws = spec.workspace()
    ws.data.put("batch/patient-maria-silva.wav", b"RIFF....WAVEnot audio")
    ws.data.put("batch/short.wav", wav(5, seconds=0.6))  # shorter than audio.min_duration_s (1 s)
    ws.data.put("batch/notes.txt", b"not a recording")
    batch = score_batch(spec, ws.registry.champion("spira"))
    assert batch.n_files == 5 and batch.n_scored == 3
    kinds = sorted(r["kind"] for r in batch.rejected)
    assert kinds == ["too_short", "unreadable"]
    shown = " ".join(str(r) for r in batch.rejected)
    assert "maria" not in shown and all(r["file"].startswith("p-") for r in batch.rejected)


def test_scoring_needs_a_champion():
    spec = setup(1)
    spec.workspace().store.delete("models/spira/aliases/champion.json")  # as if nothing was ever promoted
    with pytest.raises(RegistryError, match="has no champion to score with"):
        run_scoring(spec)

"""The quality benchmark runs end to end in its tiny mode (figures not meaningful: a smoke test)."""
from __future__ import annotations

import json

import pytest

from bench import quality


@pytest.mark.slow
def test_smoke_mode_trains_and_scores_every_set(tmp_path) -> None:
    out = tmp_path / "quality.json"
    rc = quality.main(["--smoke", "--train-speakers", "30", "--test-speakers", "12", "--epochs", "1",
                       "--recipes", "new", "--seeds", "0", "--jobs", "1", "--workdir", str(tmp_path / "work"),
                       "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["train_speakers"] == 30
    (run,) = result["runs"]
    assert run["recipe"] == "new" and run["epochs_run"] == 1
    for name in quality.TEST_SETS:
        assert 0.0 <= run["sets"][name]["roc_auc"] <= 1.0
    assert "shortcut_drop" in run["sets"]["a_unseen"]
    assert set(result["table"]["new"]) >= {"a_unseen.roc_auc", "shortcut_drop", "train_seconds"}


def test_recipes_spell_out_the_shipped_defaults() -> None:
    """The 'new' recipe is what configs/default.yaml ships; the baseline is SPIRA's recipe."""
    from spira_lib.config import load_config

    shipped = load_config(None, {})
    for key, value in quality.NEW.items():
        section, field = key.split(".")
        assert getattr(getattr(shipped, section), field) == value, key
    assert quality.OLD_DEFAULTS["model.arch"] == "spiraconv_v2" and quality.OLD_DEFAULTS["training.schedule"] == "noam"


def test_docs_table_is_the_committed_results() -> None:
    """docs/quality.md's results table is bench.quality.markdown of docs/quality-results.json."""
    from bench.common import ROOT

    result = json.loads((ROOT / "docs" / "quality-results.json").read_text())
    assert quality.markdown(result["table"], result["latent_severity_auc"]) in (ROOT / "docs" / "quality.md").read_text()

"""bench/quality.py: the recipe it calls "new" is what ships, and a tiny run writes the table it promises."""
from __future__ import annotations

import json

import pytest

from bench import quality as Q
from spira_lib.config import load_config


def _get(cfg, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_the_benchmarked_new_recipe_is_the_shipped_default():
    shipped = load_config()
    differs = {k: (v, _get(shipped, k)) for k, v in Q.NEW.items() if _get(shipped, k) != v}
    assert not differs, f"bench/quality.py NEW and configs/default.yaml disagree: {differs}"


def test_the_baseline_is_spiraconv_with_the_old_recipe():
    old = Q.RECIPES["old_defaults"]
    assert old["model.arch"] == "spiraconv_v2" and old["training.schedule"] == "noam" and old["training.epochs"] == 30


@pytest.mark.slow
def test_a_tiny_run_writes_mean_and_sd_per_set(tmp_path):
    out = tmp_path / "quality.json"
    rc = Q.main(["--train-speakers", "30", "--test-speakers", "12", "--epochs", "1", "--recipes", "new",
                 "--seeds", "0", "--jobs", "1", "--workdir", str(tmp_path / "work"), "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    row = result["table"]["new"]
    assert row["n_seeds"] == 1
    for name in Q.TEST_SETS:
        mean, sd = row[f"{name}.roc_auc"]
        assert 0.0 <= mean <= 1.0 and sd == 0.0
        assert 0.5 <= result["latent_severity_auc"][name] <= 1.0  # the ceiling the generator allows
    assert row["shortcut_drop"][0] is not None and result["wall_seconds"]["total"] > 0

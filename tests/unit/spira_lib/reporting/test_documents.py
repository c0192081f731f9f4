"""Markdown/table rendering of evaluation reports and model cards."""
from __future__ import annotations

import re

import numpy as np
import polars as pl

from spira_lib.config import EvaluationConfig, GateConfig, SpiraConfig
from spira_lib.gate import decide
from spira_lib.metrics import evaluate_predictions, paired_auc_difference
from spira_lib.reporting.sections import MAX_QUARANTINE_ROWS
from spira_lib.reporting import (
    md_cell,
    md_table,
    metrics_table,
    model_card_markdown,
    slices_table,
    validation_report_markdown,
)


def _reports() -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30, int), np.zeros(30, int)]
    p_new = np.clip(0.4 * y + 0.6 * rng.random(60), 0, 1)
    p_old = np.clip(0.2 * y + 0.8 * rng.random(60), 0, 1)
    frame = pl.DataFrame(
        {
            "label": y,
            "sex": ["F", "M"] * 30,
            "age": [30.0, 50.0, 70.0] * 20,
            "hospital": ["HC|1", "HU", "Santa Casa", "HU"] * 15,
        }
    )
    cfg = EvaluationConfig(bootstrap_samples=100)
    noisy = p_new.copy()
    noisy[y == 0] = np.clip(noisy[y == 0] + 0.05, 0, 1)
    new = evaluate_predictions(frame.with_columns(prob=pl.Series(p_new)), cfg, shortcut_prob=noisy)
    old = evaluate_predictions(frame.with_columns(prob=pl.Series(p_old)), cfg, shortcut_prob=p_old)
    paired = paired_auc_difference(y, p_new, p_old, n_samples=100, confidence=0.95, seed=0)
    decision = decide(new, old, paired, GateConfig(), min_slice_size=5).to_dict()
    return new, old, decision


SNAPSHOT = {
    "digest": "d1g3st",
    "n_clips": 60,
    "n_quarantined": 2,
    "counts": {
        "class": {"0": 30, "1": 30},
        "split": {"train": 40, "test": 20},
        "sex": {"F": 30, "M": 30},
        "hospital": {"HC|1": 15, "HU": 30},
    },
}
MODEL = {
    "name": "spira",
    "version": 3,
    "alias": "champion",
    "uri": "memory://models/spira/3",
    "sha256": "abc123",
    "data_digest": "d1g3st",
    "config_digest": "c0nf",
    "code_version": "6627e52",
}


def _table_rows_are_consistent(markdown: str) -> None:
    """Every table has a separator after its header and every row the same column count."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            assert re.fullmatch(r"\|(---\|)+", block[1]), block[:2]
            # Count unescaped pipes: an escaped '\|' must not add a column.
            widths = {len(re.findall(r"(?<!\\)\|", row)) for row in block}
            assert len(widths) == 1, block
        else:
            i += 1


def test_md_cell_escapes_pipes_and_newlines():
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell(None) == "n/a"
    assert md_cell(float("nan")) == "n/a"
    assert md_cell(0.12345) == "0.123"
    assert md_cell(True) == "yes"
    table = md_table(["x", "y"], [["p|q", 1]])
    assert table.splitlines()[1] == "|---|---|"
    assert "p\\|q" in table


def test_validation_report_has_all_sections_and_escapes_pipes():
    new, old, decision = _reports()
    quarantine = [
        {"file": "bad|name.wav", "reason": "too short (1.2 s < 4 s)", "csv": "patients.csv", "row": 7},
        {"file": "silent.wav", "reason": "near-silent", "csv": "controls.csv", "row": 2},
    ]
    md = validation_report_markdown(
        snapshot=SNAPSHOT, quarantine=quarantine, report=new, champion_report=old, decision=decision, model=MODEL
    )
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## Decision", "## Metrics", "## Score distributions", "## Confusion matrix", "## Slices",
                        "## Shortcut check", "## Dataset snapshot", "## Quarantined files", "## Model"]
    assert "| Metric | Challenger | CI low | CI high | Champion |" in md
    # Pictures: ROC (with the champion's curve), scores clean and with noisy controls, confusion, slices.
    images = _images(md)
    assert len(images) == 5 and "ROC curve of the challenger and the champion" in images
    assert "bad\\|name.wav" in md and "HC\\|1" in md
    assert "too short (1.2 s < 4 s)" in md
    assert "d1g3st" in md and "Santa Casa" in md
    verdict = "PROMOTE" if decision["promote"] else "REJECT"
    assert f"**Decision: {verdict}**" in md
    # Every check's sentence reaches the report in full, on a line of its own (not a table cell).
    for check in decision["checks"]:
        assert any(line.startswith("- ") and check["detail"] in line for line in md.splitlines()), check["name"]
    assert "Snapshot digest (content and labels of the dataset)" in md and "split digest (training data and its split)" in md
    _table_rows_are_consistent(md)


def _images(markdown: str) -> dict[str, str]:
    """alt text -> decoded SVG of every embedded picture."""
    import base64

    return {alt: base64.b64decode(data).decode() for alt, data in re.findall(r"!\[([^\]]*)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)}


def test_a_rejection_leads_with_every_failing_reason_in_full():
    new, _, _ = _reports()
    decision = decide({**new, "shortcut": {**new["shortcut"], "shortcut_accuracy": 0.2}}, None, None, GateConfig(), min_slice_size=5).to_dict()
    md = validation_report_markdown(snapshot=SNAPSHOT, quarantine=[], report=new, champion_report=None, decision=decision, model=None)
    failing = next(c["detail"] for c in decision["checks"] if c["name"] == "shortcut")
    lead = md.split("## Decision")[0]
    assert "**Decision: REJECT**" in lead and f"> {failing}" in lead
    assert f"- **FAIL** · **shortcut**: {failing}" in md


def test_validation_report_without_champion_or_shortcut():
    new, _, _ = _reports()
    new = {**new, "shortcut": None}
    decision = decide(new, None, None, GateConfig(), min_slice_size=5).to_dict()
    md = validation_report_markdown(
        snapshot=SNAPSHOT, quarantine=[], report=new, champion_report=None, decision=decision, model=None
    )
    assert "| Champion |" not in md
    assert "No files were quarantined." in md
    assert "**Not run**" in md
    assert "**Decision: REJECT**" in md
    _table_rows_are_consistent(md)


def test_quarantine_table_is_capped():
    new, _, decision = _reports()
    quarantine = [
        {"file": f"f{i}.wav", "reason": "corrupt", "csv": "a.csv", "row": i} for i in range(MAX_QUARANTINE_ROWS + 7)
    ]
    md = validation_report_markdown(
        snapshot=SNAPSHOT, quarantine=quarantine, report=new, champion_report=None, decision=decision, model=None
    )
    assert f"f{MAX_QUARANTINE_ROWS - 1}.wav" in md
    assert f"f{MAX_QUARANTINE_ROWS}.wav" not in md
    assert "and 7 more" in md


def test_metrics_and_slices_tables():
    new, old, _ = _reports()
    rows = metrics_table(new, old)
    by_metric = {r["metric"]: r for r in rows}
    assert set(rows[0]) == {"metric", "challenger", "ci_low", "ci_high", "champion"}
    auc = by_metric["roc_auc"]
    assert auc["challenger"] == round(new["metrics"]["roc_auc"], 4)
    assert auc["champion"] == round(old["metrics"]["roc_auc"], 4)
    assert auc["ci_low"] <= auc["challenger"] <= auc["ci_high"]
    assert all(r["champion"] is None for r in metrics_table(new))
    slices = slices_table(new)
    assert len(slices) == len(new["slices"])
    assert {(r["slice"], r["value"]) for r in slices} >= {("sex", "F"), ("age_band", "40-60"), ("hospital", "HC|1")}


def test_model_card_sections_and_synthetic_flag():
    new, _, decision = _reports()
    config = SpiraConfig().model_dump(mode="json")
    training = {
        "epochs_run": 12,
        "best_epoch": 9,
        "device": "cpu",
        "seconds": 41.5,
        "history": [{"epoch": e, "train_loss": 0.7 - e * 0.01, "eval_auc": 0.6 + e * 0.01} for e in range(12)],
    }
    md = model_card_markdown(
        model=MODEL,
        report=new,
        decision=decision,
        training=training,
        snapshot={**SNAPSHOT, "synthetic": True},
        config=config,
    )
    assert md.index("## Promotion decision") < md.index("## Intended use")  # the decision comes first
    # Long material is collapsed: the epoch history and the YAML.
    assert "<details><summary>Epoch history (12 epochs)</summary>" in md
    assert "<details><summary>The configuration this model was trained with (YAML)</summary>" in md
    assert "Loss per epoch" in "".join(_images(md).values())
    for heading in (
        "# Model card: spira v3",
        "## Intended use",
        "## Model and training",
        "## Data",
        "## Metrics",
        "## Slices",
        "## Shortcut check",
        "## Limitations",
        "## Lineage",
    ):
        assert heading in md, heading
    assert "not a diagnosis" in md.lower()
    assert "Synthetic demo data" in md
    assert "6627e52" in md and "c0nf" in md
    assert "mfcc 20, 16000 Hz" in md
    _table_rows_are_consistent(md)

    real = model_card_markdown(
        model=MODEL, report=new, decision=None, training=training, snapshot=SNAPSHOT, config=config
    )
    assert "Synthetic demo data" not in real
    assert "## Promotion decision" not in real


def test_model_card_flags_small_slices():
    new, _, _ = _reports()
    new["slices"].append({"slice": "hospital", "value": "tiny", "n": 2, "small": True})
    md = model_card_markdown(model=MODEL, report=new, decision=None, training={}, snapshot=SNAPSHOT, config={})
    assert "hospital=tiny (n=2)" in md

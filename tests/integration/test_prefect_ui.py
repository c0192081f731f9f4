"""What people see in the Prefect UI: the report's pictures are drawn, and promoted and rejected runs stand apart.

A real `prefect server start` with its web UI, and Debian's chromium driven by
Playwright. Screenshots are kept under the test's tmp folder (printed) to look at.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.retrain import finish
from spira_lib.config import SpiraConfig
from spira_lib.gate import decide
from spira_lib.metrics import evaluate_predictions, paired_auc_difference, summary_metrics
from spira_lib.pipeline import RunOutcome
from spira_lib.reporting import validation_report_markdown
from tests.browser import browser, look
from tests.servers import prefect_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CFG = SpiraConfig()


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> str:
    """Base URL of a Prefect server that serves its UI; the test process talks to it."""
    with prefect_server(tmp_path_factory.mktemp("prefect-ui"), ui=True, timeout_s=240) as api_url:
        with temporary_settings({PREFECT_API_URL: api_url}):
            yield api_url.removesuffix("/api")


def _report_pair(seed: int, shift: float):
    """A challenger and a champion report on the same 60 synthetic test files (no model needed)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(30, int), np.zeros(30, int)]
    frame = pl.DataFrame({"label": y, "sex": ["F", "M"] * 30, "age": rng.integers(20, 80, 60).astype(float),
                          "hospital": ["HC", "ICESP", "HU-B"] * 20})
    p_new = np.clip(0.5 * y + 0.5 * rng.random(60), 0, 1)
    p_old = np.clip(0.3 * y + 0.7 * rng.random(60), 0, 1)
    noisy = np.where(y == 0, np.clip(p_new + shift, 0, 1), p_new)
    new = evaluate_predictions(frame.with_columns(prob=pl.Series(p_new)), CFG.evaluation, shortcut_prob=noisy)
    old = evaluate_predictions(frame.with_columns(prob=pl.Series(p_old)), CFG.evaluation, shortcut_prob=p_old)
    paired = paired_auc_difference(y, p_new, p_old, n_samples=200, seed=0)
    return new, old, decide(new, old, paired, CFG.gate, min_slice_size=5).to_dict()


TRAINING = {"epochs_run": 12, "best_epoch": 10, "history": [
    {"epoch": e, "train_loss": 0.7 - 0.03 * e, "val_loss": 0.69 - 0.02 * e, "val_accuracy": 0.5 + 0.03 * e} for e in range(1, 13)
]}


@flow(name="spira-ui-check")
def publish(kind: str, shift: float) -> RunOutcome:
    new, old, decision = _report_pair(1, shift)
    md = validation_report_markdown(
        snapshot={"digest": "a" * 64, "split_digest": "b" * 64, "n_clips": 200, "n_quarantined": 0},
        quarantine=[], report=new, champion_report=old, decision=decision, model=None, training=TRAINING,
        slice_floor=CFG.gate.slice_floor,
    )
    create_markdown_artifact(key=f"spira-ui-check-{kind}", markdown=md, description=f"ui check: {kind}")
    outcome = RunOutcome(model="spira", version=1 if kind == "promoted" else 2, skipped=False,
                         promoted=decision["promote"], metrics=summary_metrics(new), decision=decision)
    return finish(outcome)


def _artifact_id(key: str) -> uuid.UUID:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as c:
        (art,) = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return art.id


def test_report_pictures_are_drawn_and_outcomes_stand_apart(ui: str, tmp_path: Path, capsys) -> None:
    promoted = publish("promoted", 0.0)
    rejected = publish("rejected", 0.45)  # noise on the controls flips many of them: the shortcut check fails
    assert promoted.promoted is True and rejected.promoted is False
    shots = tmp_path / "ui-shots"
    with browser() as page:
        for kind in ("promoted", "rejected"):
            art = _artifact_id(f"spira-ui-check-{kind}")
            for ui_path in ("", "/v2"):  # the classic UI (links in logs) and the new one (the home page)
                view = look(page, f"{ui}{ui_path}/artifacts/artifact/{art}", shots / f"{kind}{ui_path.replace('/', '-')}.png",
                            wait_for_text="SPIRA validation report")
                # ROC, two score histograms, confusion matrix, slices, two training curves.
                assert view.images_drawn >= 7 and view.images_broken == 0, (view.url, view.images_drawn, view.images_broken)
        runs = look(page, f"{ui}/runs", shots / "runs.png", wait_for_text="spira-ui-check")
        assert "promoted-v1" in runs.text and "rejected-v2" in runs.text, runs.text[:2000]  # run names
        assert "\npromoted\n" in runs.text and "\nrejected\n" in runs.text, runs.text[:2000]  # tags
    with capsys.disabled():
        print(f"\n[ui] screenshots in {shots}")

"""`spira train/evaluate/retrain` failures: one message, no traceback, exit non-zero, and with --json
one JSON line {"error": ..., "kind": ...} as the last stdout line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spira_cli.main import app
from tests import hostile_inputs as H

SETS = [f"--set={k}={v}" for k, v in H.CONFIG.items()]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "base"
    H.make_base(folder)
    return folder


@pytest.fixture
def data(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "case")
    return tmp_path / "case" / "data"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "change, kind, phrase",
    [
        (lambda d: (d / "new.csv").write_bytes(b""), "dataset", "is empty"),
        (lambda d: (d / "x.csv").write_text("file_path,sexo\na.wav,M\n"), "dataset", "missing required column"),
        (lambda d: (d / "x.csv").write_bytes(b"\x00\x01binary"), "dataset", "NUL bytes"),
        (lambda d: (d / H.META).unlink(), "pipeline", "no metadata CSV"),
    ],
    ids=["empty-csv", "missing-column", "binary-csv", "no-csv"],
)
def test_train_json_failure_is_one_json_line(data: Path, tmp_path: Path, change, kind: str, phrase: str) -> None:
    change(data)
    result = invoke("train", "--data", str(data), "--registry", str(tmp_path / "reg"), "--json", *SETS)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = last_json(result.stdout)
    assert line["kind"] == kind and phrase in line["error"]
    assert "Traceback" not in result.output
    assert "error: " in result.stderr


def test_train_without_json_prints_the_error_not_a_traceback(data: Path, tmp_path: Path) -> None:
    (data / "new.csv").write_bytes(b"")
    result = invoke("train", "--data", str(data), "--registry", str(tmp_path / "reg"), *SETS)
    assert result.exit_code == 1
    assert "is empty" in result.stderr and "Traceback" not in result.output
    assert result.stdout.strip() == ""


def test_config_error_with_json(data: Path, tmp_path: Path) -> None:
    result = invoke("train", "--data", str(data), "--registry", str(tmp_path / "reg"), "--json", "--set", "training.lr=-1")
    assert result.exit_code == 2
    line = last_json(result.stdout)
    assert line["kind"] == "config" and "training.lr" in line["error"]


def test_evaluate_json_failure(data: Path, tmp_path: Path) -> None:
    result = invoke("evaluate", "--data", str(data), "--registry", str(tmp_path / "reg"), "--model", "spira:7", "--json", *SETS)
    assert result.exit_code == 1
    assert last_json(result.stdout)["kind"] == "registry"
    assert "Traceback" not in result.output


def test_a_bug_still_gives_the_json_line_and_keeps_its_traceback(data: Path, tmp_path: Path, monkeypatch) -> None:
    import spira_lib.pipeline

    def boom(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(spira_lib.pipeline, "run_pipeline", boom)
    result = invoke("train", "--data", str(data), "--registry", str(tmp_path / "reg"), "--json", *SETS)
    assert result.exit_code != 0
    assert isinstance(result.exception, ZeroDivisionError)
    assert last_json(result.stdout) == {"error": "ZeroDivisionError: a bug", "kind": "internal"}


def test_retrain_reports_dataset_errors_like_train(data: Path, tmp_path: Path, monkeypatch) -> None:
    """The flow raises what its task raised; retrain reports it like train (Prefect is not started here)."""
    import spira_cli.orchestrated
    from spira_lib.dataset import DatasetError

    def failing_flow(*_a, **_k):
        raise DatasetError("metadata CSV 'new.csv' is empty (no header row)")

    monkeypatch.setattr(spira_cli.orchestrated, "run_retrain", failing_flow)
    result = invoke("retrain", "--data", str(data), "--registry", str(tmp_path / "reg"), "--json")
    assert result.exit_code == 1
    assert last_json(result.stdout) == {"error": "metadata CSV 'new.csv' is empty (no header row)", "kind": "dataset"}
    assert "Traceback" not in result.output

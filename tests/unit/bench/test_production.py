"""bench/production.py without running anything: the commands it would run, and the rows it makes of their output.

A fake runner stands in for the subprocesses (the real ones take minutes); the
`make demo` output it returns is printed by the real ``run_demo_flow``, so a
change of that printout breaks these tests, not the benchmark in ``make bench``.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, Sequence

import pytest

from bench import production
from bench.common import ROOT, Context
from spira_lib.pipeline import RunOutcome

METRICS = {"roc_auc": 0.931, "accuracy": 0.8, "balanced_accuracy": 0.78, "f1": 0.7, "sensitivity": 0.7,
           "specificity": 0.86, "n_files": 36, "shortcut_accuracy": 0.75}


def demo_printout(tmp_path: Path, outcome: RunOutcome, flow_s: float) -> str:
    """What `make demo` prints for ``outcome``: spira_cli.orchestrated.run_demo_flow with the flow faked."""
    from spira_cli import orchestrated

    clock = iter([100.0, 100.0 + flow_s])
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as m, contextlib.redirect_stdout(buf):
        m.setattr(orchestrated, "run_retrain", lambda *a, **k: outcome)
        m.setattr(orchestrated, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
        orchestrated.run_demo_flow(tmp_path / "data", tmp_path / "registry")
    return "make: Entering directory '/repo'\n.venv/bin/spira demo --workdir X\n" + buf.getvalue()


class FakeRunner:
    """Answers each command like the real one would, with given wall seconds; records what ran."""

    def __init__(self, outputs: Mapping[str, tuple[float, str]], planned: str = ".venv/bin/spira demo --workdir X\n",
                 fail: str | None = None) -> None:
        self.outputs, self.planned, self.fail = dict(outputs), planned, fail
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.demo_runs = 0

    def __call__(self, args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float) -> production.Completed:
        args = list(args)
        self.calls.append((args, dict(env)))
        if args[0] == "make" and "-n" in args:
            kind, out = "make -n", (0.1, self.planned)
        elif args[0] == "make":
            self.demo_runs += 1
            kind = "first" if self.demo_runs == 1 else "rerun"
            out = self.outputs[kind]
        else:
            kind = args[3]  # python -m spira_cli.main <command>
            out = self.outputs[kind]
        if kind == self.fail:
            return production.Completed(args, 1, out[0], "", "error: something broke")
        return production.Completed(args, 0, out[0], out[1], "")


@pytest.fixture()
def outputs(tmp_path) -> dict[str, tuple[float, str]]:
    first = RunOutcome(model="spira", version=1, skipped=False, promoted=True, metrics=METRICS)
    rerun = RunOutcome(model="spira", version=1, skipped=True, promoted=None, metrics=METRICS)
    return {
        "demo-data": (12.0, json.dumps({"speakers": 200}) + "\n"),
        "train": (150.0, json.dumps({"model": "spira", "version": 1, "metrics": METRICS, "promoted": True,
                                     "skipped": False}) + "\n"),
        "first": (160.0, demo_printout(tmp_path, first, 101.5)),
        "rerun": (20.0, demo_printout(tmp_path, rerun, 4.25)),
    }


def _measure(tmp_path, runner, monkeypatch, champion: int | None = 1) -> list:
    monkeypatch.setattr(production, "champion_version", lambda registry_dir, model="spira": champion)
    ctx = Context(scratch=tmp_path, say=lambda _m: None)
    return production.rows(production.measure(ctx, runner=runner))


def test_rows_say_what_each_command_took_and_gave(tmp_path, monkeypatch, outputs) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # must not reach the commands,
    monkeypatch.setenv("MAKEFLAGS", "k")  # nor the flags of the `make bench` this runs under
    runner = FakeRunner(outputs)
    rows = {r.name: r for r in _measure(tmp_path, runner, monkeypatch)}
    assert list(rows) == list(production.ROWS)

    train = rows["production.spira_train_200"]
    assert train.value == 150.0 and train.unit == "s" and train.passed is True
    assert "ROC-AUC 0.931" in train.notes and "36 test files" in train.notes and "12.0 s" in train.notes
    assert train.extra["quality"]["shortcut_drop"] == pytest.approx(0.05)

    first, rerun = rows["production.make_demo_first"], rows["production.make_demo_rerun"]
    assert first.value == 160.0 and first.passed is True and "flow 101.5 s" in first.notes
    assert first.extra["install_skipped"] is True and first.extra["first"]["verdict"] == "promoted to champion"
    assert rerun.value == 20.0 and rerun.passed is True
    assert rerun.extra["first_over_rerun"] == pytest.approx(8.0) and "8.0x" in rerun.notes
    assert "already trained" in rerun.notes

    # The README's commands, on the 200-speaker set, shipped defaults, fresh folders.
    (gen, gen_env), (train_cmd, _), (dry, _), (make1, env1), (make2, _) = runner.calls
    assert gen[3:] == ["demo-data", gen[4], "--speakers", "200", "--seed", "0"]
    assert train_cmd[3:] == ["train", "--data", gen[4], "--registry", train_cmd[7], "--json"]
    assert make1 == make2 == ["make", "-C", str(ROOT), "demo", make1[-1]] and make1[-1].startswith("DEMO_DIR=")
    assert "-n" in dry and dry[-1] == make1[-1]
    assert not Path(make1[-1].removeprefix("DEMO_DIR=")).exists()  # a scratch folder, removed afterwards
    for env in (gen_env, env1):
        assert "PREFECT_API_URL" not in env and "MAKEFLAGS" not in env
        assert env["PYTHONPATH"].split(":")[0] == str(ROOT)
        assert Path(env["PREFECT_HOME"]).is_relative_to(tmp_path)


def test_a_version_the_registry_does_not_hold_as_champion_fails_the_row(tmp_path, monkeypatch, outputs) -> None:
    rows = _measure(tmp_path, FakeRunner(outputs), monkeypatch, champion=None)
    assert rows[0].passed is False and "not promoted" in rows[0].notes


def test_a_rerun_that_trains_again_fails_its_row(tmp_path, monkeypatch, outputs) -> None:
    trained_again = RunOutcome(model="spira", version=2, skipped=False, promoted=False, metrics=METRICS)
    outputs["rerun"] = (150.0, demo_printout(tmp_path, trained_again, 100.0))
    rows = _measure(tmp_path, FakeRunner(outputs), monkeypatch)
    assert rows[2].passed is False and "registered, not promoted" in rows[2].notes


def test_make_demo_is_not_run_when_make_would_install(tmp_path, monkeypatch, outputs) -> None:
    planned = "python3 -m venv .venv\n.venv/bin/python -m pip install -q -e '.[orchestration,mlflow,dev]'\n"
    runner = FakeRunner(outputs, planned=planned)
    rows = _measure(tmp_path, runner, monkeypatch)
    assert runner.demo_runs == 0
    assert [r.value for r in rows[1:]] == [None, None]
    assert all("would install" in r.notes for r in rows[1:])


def test_a_failing_command_stops_the_benchmark_with_its_error(tmp_path, monkeypatch, outputs) -> None:
    with pytest.raises(RuntimeError, match="spira train exited with 1: error: something broke"):
        _measure(tmp_path, FakeRunner(outputs, fail="train"), monkeypatch)


def test_quick_trains_a_tiny_set_and_leaves_make_demo_out(tmp_path, monkeypatch, outputs) -> None:
    monkeypatch.setattr(production, "champion_version", lambda registry_dir, model="spira": None)
    runner = FakeRunner(outputs)
    rows = production.rows(production.measure(Context(quick=True, scratch=tmp_path, say=lambda _m: None), runner=runner))
    assert [c[0][0] for c in runner.calls] == [production.sys.executable] * 2  # no make at all
    assert "training.epochs=1" in runner.calls[1][0]
    assert [r.value for r in rows[1:]] == [None, None] and "--quick" in rows[1].notes


def test_installs_reads_makes_commands() -> None:
    assert production.installs("/x/.venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'\n")
    assert production.installs("/usr/bin/python3 -m venv .venv\n")
    assert not production.installs("make: Entering directory '/r'\n.venv/bin/spira demo --workdir demo\n")


def test_outcome_parsing_errors_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="no JSON line"):
        production.last_json_line("epoch 1\nepoch 2\n")
    with pytest.raises(ValueError, match="no outcome block"):
        production.demo_outcome("generating ...\n")


def test_the_readme_points_at_the_rows_instead_of_typing_figures() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in production.ROWS:
        assert f"`{name}`" in readme

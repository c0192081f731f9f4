"""Smoke test of the benchmark harness: every benchmark runs in --quick mode and
writes well-formed rows. Timings are not asserted (machines are noisy)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run_all
from bench.common import Result, check, linear_fit, print_table

REQUIRED = {"name", "value", "unit", "compares", "target", "passed", "notes"}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path, str]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    scratch = tmp / "scratch"
    import contextlib
    import io

    import os

    env_before = dict(os.environ)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_all.main(["--quick", "--out", str(out), "--scratch", str(scratch)])
    assert rc == 0
    # No benchmark leaves settings behind for the ones after it (distributed's Nanny writes
    # OMP_NUM_THREADS=1 into its parent's environment: later subprocesses ran on one thread).
    changed = {k for k in set(env_before) | set(os.environ) if env_before.get(k) != os.environ.get(k)}
    assert not {k for k in changed if "THREADS" in k}, changed
    return json.loads(out.read_text()), scratch, buf.getvalue()


def test_quick_run_writes_one_row_set_per_benchmark(quick_results) -> None:
    rows, scratch, stdout = quick_results
    assert isinstance(rows, list) and rows
    for row in rows:
        assert REQUIRED <= set(row), f"row {row.get('name')} lacks {REQUIRED - set(row)}"
        assert row["passed"] in (True, False, None)
        assert not row["name"].endswith(".error"), f"{row['name']}: {row['notes']}"
    prefixes = {row["name"].split(".")[0] for row in rows}
    # --quick leaves the slow ones (servers, drift) out unless asked for.
    assert prefixes == {"features", "training", "throughput", "scoring", "incremental", "memory", "gpu"}
    # Scratch data is cleaned up.
    assert not any(scratch.iterdir())
    # The table names every row.
    for row in rows:
        assert row["name"] in stdout


def test_quick_run_measures_something_real(quick_results) -> None:
    by_name = {row["name"]: row for row in quick_results[0]}
    stage = by_name["features.flow_stage"]
    assert stage["value"] > 0 and stage["extra"]["thread"]["clips"] > 0
    # Noisy copies and shortcut variants are computed: more arrays than clips.
    assert stage["extra"]["thread"]["computed"] > stage["extra"]["thread"]["clips"]
    assert by_name["features.best_case"]["value"] > 0
    # The same stage on the moto S3 server: every clip read and every array written over HTTP, same bytes.
    s3 = by_name["features.flow_stage_s3"]
    assert s3["passed"] is True and s3["extra"]["identical_bytes"] is True
    assert s3["extra"]["s3"]["registry_uri"].startswith("s3://") and s3["extra"]["s3"]["data_uri"].startswith("s3://")
    assert s3["extra"]["s3"]["computed"] == stage["extra"]["thread"]["computed"] and s3["value"] > 0
    assert s3["extra"]["s3_over_local_wall"] > 0
    tp = by_name["throughput.train_spiraconv_v2"]["extra"]
    assert tp["flops_per_window"]["train"] > tp["flops_per_window"]["forward"] > 0
    # Layer by layer, the CPU path with its C kernels, and the same path in torch ops only.
    assert {k.split("@")[0] for k in tp["train"]} == {"before", "after", "torch_path"}
    assert all(v["windows_per_s"] > 0 for v in by_name["throughput.train_default"]["extra"]["train"].values())
    assert by_name["throughput.matmul_peak"]["value"] > 0
    assert by_name["scoring.batch_1000"]["extra"]["clips"] > 0
    assert by_name["gpu.training"]["notes"]
    speed = by_name["training.epoch_speedup"]
    assert len(speed["extra"]["ours_epoch_s"]) == len(speed["extra"]["baseline_epoch_s"]) >= 1
    assert by_name["incremental.unchanged_rerun"]["passed"] is True  # the rerun skipped training
    inc = by_name["incremental.features_5pct"]["extra"]
    assert 0 < inc["incremental"]["computed"] < inc["full_computed"]
    mem = by_name["memory.peak_rss"]["extra"]["sizes"]
    assert [m["clips"] for m in mem] == sorted(m["clips"] for m in mem) and len(mem) >= 2
    assert all(m["peak_rss_mib"] > 0 for m in mem)


def test_selection_and_errors() -> None:
    full = run_all.selected([], quick=False, with_server=False, no_server=False)
    assert full == [b for b in run_all.BENCHMARKS if b not in run_all.OPT_IN]
    assert "load_burst" in run_all.selected([], quick=False, with_server=False, no_server=False, with_load_burst=True)
    assert "load_burst" in run_all.selected(["load_burst"], quick=False, with_server=False, no_server=False)
    quick = run_all.selected([], quick=True, with_server=False, no_server=False)
    assert not set(run_all.SLOW) & set(quick)
    assert "event_latency" in run_all.selected([], quick=True, with_server=True, no_server=False)
    assert "drift" in run_all.selected(["drift"], quick=True, with_server=False, no_server=False)
    # `spira train` and `make demo` at full size: in the full run, never in --quick unless named.
    assert "production" in full and "production" not in quick
    assert run_all.selected(["production"], quick=True, with_server=False, no_server=False) == ["production"]
    assert not {"event_latency", "load_burst"} & set(run_all.selected([], quick=False, with_server=False, no_server=True,
                                                                      with_load_burst=True))
    assert run_all.selected(["gpu,features"], quick=True, with_server=False, no_server=False) == ["features", "gpu"]
    with pytest.raises(ValueError, match="unknown benchmark.*nope"):
        run_all.selected(["nope"], quick=True, with_server=False, no_server=False)
    assert run_all.main(["--only", "nope"]) == 2


def test_helpers() -> None:
    a, b, r2 = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert (round(a, 9), round(b, 9), round(r2, 9)) == (1.0, 2.0, 1.0)
    _, _, r2_noisy = linear_fit([1, 2, 3, 4], [1, 5, 2, 6])
    assert 0 < r2_noisy < 1
    with pytest.raises(ValueError):
        linear_fit([1], [1])
    assert check(5, minimum=3) is True and check(2, minimum=3) is False and check(None, minimum=3) is None
    assert check(5, maximum=4) is False
    lines: list[str] = []
    print_table([Result("x.y", 1.5, "s", "a vs b", ">= 1", True), Result("z", None, "", "n/a")], lines.append)
    assert "x.y" in lines[2] and "PASS" in lines[2] and "n/a" in lines[3]


def test_time_to_quality_reads_the_first_epoch_at_the_target() -> None:
    from bench.time_to_quality import TARGET_AUC, _summary

    hit = _summary([(10.0, 0.5), (20.0, None), (30.0, TARGET_AUC), (40.0, 0.99)], prep_s=4.0)
    assert hit["reached"] and hit["seconds"] == 30.0 and hit["epochs"] == 3
    miss = _summary([(10.0, 0.5), (20.0, 0.6)], prep_s=4.0)
    assert not miss["reached"] and miss["seconds"] == 20.0 and miss["epochs"] == 2


def test_time_to_quality_old_defaults_are_the_quality_benchmarks_baseline(tmp_path) -> None:
    """The old-defaults run is configured exactly as bench/quality.py trains its old_defaults recipe (seed 0)."""
    from bench import quality, time_to_quality
    from spira_lib.config import load_config

    data = tmp_path / "train-160"
    ours = load_config(None, time_to_quality.setup(time_to_quality.OLD_DEFAULTS, data))
    theirs = load_config(None, quality._overrides(quality.RECIPES["old_defaults"], data / "noises", None, 0))
    assert ours == theirs
    assert (ours.model.arch, ours.training.schedule, ours.training.epochs, ours.features.n_mfcc) == ("spiraconv_v2", "noam", 30, 40)
    # The default run is the shipped recipe under the same set-up.
    shipped = load_config(None, {})
    default = load_config(None, time_to_quality.setup({}, data))
    assert default.model == shipped.model and default.augment.noisy_copies == shipped.augment.noisy_copies
    assert default.training.threads == 1 and str(default.augment.noise_dir) == str(data / "noises")


@pytest.mark.slow
def test_time_to_quality_quick_run_uses_the_quality_training_set(tmp_path) -> None:
    """--quick --only time_to_quality: three short trainings on bench/quality.py's training set (seed 100)."""
    out = tmp_path / "ttq.json"
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        rc = run_all.main(["--quick", "--only", "time_to_quality", "--out", str(out), "--scratch", str(tmp_path / "s")])
    assert rc == 0
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"time_to_quality.default", "time_to_quality.vs_old_defaults", "time_to_quality.vs_on_the_fly"}
    extra = rows["time_to_quality.default"]["extra"]
    assert extra["data"]["speakers"] == 12 and "seed 100" in rows["time_to_quality.default"]["compares"]
    for run in ("default", "old_defaults", "on_the_fly"):
        assert extra[run]["curve"] and extra[run]["clips"]["train"] > 0 and extra[run]["clips"]["eval"] > 0
    assert not any((tmp_path / "s").iterdir())  # --quick caches nothing in the scratch folder


@pytest.mark.slow
def test_the_dask_stage_leaves_this_process_environment_as_it_was(tmp_path) -> None:
    """distributed's Nanny sets OMP_NUM_THREADS=1 (and more) in its parent's environment; the
    benchmark puts it back, or every later subprocess of `make bench` trains on one thread."""
    import os

    from bench import feature_stage
    from bench.common import Context

    before = dict(os.environ)
    m = feature_stage.measure(Context(quick=True, scratch=tmp_path, say=lambda _m: None), 6, with_dask=True, with_s3=False)
    assert m["dask"]["digest"] == m["thread"]["digest"]
    assert dict(os.environ) == before

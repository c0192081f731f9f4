"""Run the benchmarks, print a table, write ``bench/results.json``.

    python -m bench.run_all                 # everything (<= 15 min on 2 cores); rewrites the README table
    python -m bench.run_all --quick         # tiny sizes, for the smoke test
    python -m bench.run_all --only training --device cuda
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Sequence

# Prefect reads its settings at import: keep it away from ~/.prefect and telemetry
# before any benchmark imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="spira-bench-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.common import DEFAULT_RESULTS, Context, Result, bench_env, print_table, write_results  # noqa: E402

# Order matters only for the printout; each module has run(ctx) -> list[Result].
BENCHMARKS = ("features", "training", "time_to_quality", "throughput", "scoring", "incremental", "memory", "drift",
              "event_latency", "production", "load_burst", "gpu")
# Slow (servers, seeds of generated audio, three trainings, `spira train` and `make demo` at full size):
# --quick leaves them out unless named.
SLOW = ("event_latency", "load_burst", "drift", "time_to_quality", "production")
# Over the 15-minute budget of `make bench` on its own (the 5,000-object burst takes ~10 min here):
# run only when named (--only load_burst) or with --with-load-burst.
OPT_IN = ("load_burst",)
_MODULES = {
    "throughput": "bench.throughput",
    "scoring": "bench.scoring",
    "drift": "bench.drift",
    "time_to_quality": "bench.time_to_quality",
    "load_burst": "bench.load_burst",
    "features": "bench.feature_throughput",
    "training": "bench.training_speed",
    "incremental": "bench.incremental",
    "memory": "bench.memory",
    "event_latency": "bench.event_latency",
    "production": "bench.production",
    "gpu": "bench.gpu",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds, for the smoke test); figures are not meaningful")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these (repeatable or comma-separated): {', '.join(BENCHMARKS)}")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="device for the training benchmarks")
    p.add_argument("--with-server", action="store_true",
                   help="run the event-latency benchmark (starts a Prefect server) even with --quick")
    p.add_argument("--no-server", action="store_true", help="skip the event-latency benchmark")
    p.add_argument("--with-load-burst", action="store_true", help="also run the 5,000-object load burst (~10 min)")
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help=f"results file (default {DEFAULT_RESULTS})")
    p.add_argument("--scratch", type=Path, default=None, help="folder for scratch data (default: the system temp dir)")
    return p


def selected(only: Sequence[str], *, quick: bool, with_server: bool, no_server: bool, with_load_burst: bool = False) -> list[str]:
    """Benchmarks to run, in BENCHMARKS order; ValueError names an unknown one."""
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    chosen = [b for b in BENCHMARKS if not names or b in names]
    # The server benchmarks cost ~40 s of setup or more; --quick leaves the slow ones out unless asked for.
    def wanted(b: str) -> bool:
        if b in OPT_IN and b not in names and not with_load_burst:
            return False
        if b not in SLOW:
            return True
        server = b in ("event_latency", "load_burst")
        if server and no_server:
            return False
        return not quick or b in names or (server and with_server)

    return [b for b in chosen if wanted(b)]


def run_benchmarks(names: Sequence[str], ctx: Context) -> list[Result]:
    """Run each benchmark; a failing one becomes a FAIL row with its error instead of stopping the rest."""
    import importlib

    results: list[Result] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(_MODULES[name])
            rows = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - reported as a row, with the traceback on stderr
            traceback.print_exc()
            rows = [Result(name=f"{name}.error", value=None, unit="", compares="benchmark did not complete",
                           passed=False, notes=f"{type(exc).__name__}: {exc}"[:2000])]
        elapsed = time.perf_counter() - t0
        for r in rows:
            r.extra.setdefault("benchmark_wall_s", round(elapsed, 2))
            if ctx.quick:
                r.notes = "[--quick: tiny sizes, figures not meaningful] " + r.notes
        ctx.say(f"[{name}] done in {elapsed:.1f} s")
        results.extend(rows)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        names = selected(ns.only, quick=ns.quick, with_server=ns.with_server, no_server=ns.no_server,
                         with_load_burst=ns.with_load_burst)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if ns.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench: --device cuda but no CUDA device is available", file=sys.stderr)
            return 2
    scratch = ns.scratch or Path(tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=ns.quick, device=ns.device, with_server=ns.with_server, scratch=scratch)
    env = bench_env()
    ctx.say(f"bench: {', '.join(names)}{' (quick)' if ns.quick else ''}; machine: {env}")
    t0 = time.perf_counter()
    results = run_benchmarks(names, ctx)
    total = time.perf_counter() - t0
    for r in results:
        r.extra.setdefault("machine", env)
    write_results(results, ns.out)
    if ns.out == DEFAULT_RESULTS and not ns.quick and not ns.only:
        from bench import readme_table

        readme_table.main([])  # the README's performance table follows the results
    print()
    print_table(results)
    print(f"\n{len(results)} result(s) in {total:.0f} s -> {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

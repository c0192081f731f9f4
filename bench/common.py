"""Shared pieces of the benchmarks: result rows, timing, scratch data, the table."""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "bench" / "results.json"


@dataclass
class Result:
    """One row of ``bench/results.json``."""

    name: str
    value: float | None
    unit: str
    compares: str  # what is measured against what, e.g. "baseline epoch s / ours epoch s"
    target: str | None = None
    passed: bool | None = None  # None: no target, or not measurable here
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # raw figures behind the value

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.value, float):
            d["value"] = _round(self.value)
        d["extra"] = _jsonable(self.extra)
        return d


def _round(x: float) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.4g}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return _round(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


@dataclass
class Context:
    """What every benchmark gets from the command line."""

    quick: bool = False
    device: str = "cpu"
    with_server: bool = False
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    say: Callable[[str], None] = lambda msg: print(msg, flush=True)

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    @contextlib.contextmanager
    def tempdir(self, name: str) -> Iterator[Path]:
        """A scratch folder under the run's scratch root, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


class Stopwatch:
    """Accumulates wall time per named stage (``with sw("decode"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def total(self) -> float:
        return sum(self.seconds.values())


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), wall seconds)``."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    """Resident set size now, from /proc (falls back to the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mib()


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b*x``; returns ``(a, b, r2)`` (r2 is 1.0 for a perfect or degenerate fit)."""
    n = len(x)
    if n < 2:
        raise ValueError(f"linear_fit needs at least 2 points, got {n}")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    if sxx == 0:
        raise ValueError("linear_fit: all x values are equal")
    b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
    a = my - b * mx
    ss_tot = sum((yi - my) ** 2 for yi in y)
    ss_res = sum((yi - (a + b * xi)) ** 2 for xi, yi in zip(x, y))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return a, b, r2


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def check(value: float | None, minimum: float | None = None, maximum: float | None = None) -> bool | None:
    """Pass/fail against a bound; None when nothing was measured."""
    if value is None or not math.isfinite(value):
        return None
    if minimum is not None and value < minimum:
        return False
    if maximum is not None and value > maximum:
        return False
    return True


def bench_env() -> dict[str, str]:
    """A few facts about the machine that make the figures comparable later."""
    import platform

    import torch

    return {
        "cpus": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "load_avg_1m": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?",
    }


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g} {unit}".strip()


def print_table(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    """A short fixed-width table: name, value, target, verdict, what is compared."""
    rows = [("benchmark", "value", "target", "ok", "compares")]
    for r in results:
        ok = "-" if r.passed is None else ("PASS" if r.passed else "FAIL")
        rows.append((r.name, format_value(r.value, r.unit), r.target or "-", ok, r.compares))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for k, row in enumerate(rows):
        out("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)))
        if k == 0:
            out("  ".join("-" * w for w in widths) + "  " + "-" * 8)


def write_results(results: Sequence[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")


def demo_dataset(path: Path, speakers: int, seed: int, **kwargs: Any):
    """Generated SPIRA-format data (the only data the benchmarks use)."""
    from spira_demo import generate_demo_dataset

    return generate_demo_dataset(path, speakers=speakers, seed=seed, **kwargs)

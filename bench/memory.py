"""Benchmark 4: peak memory (RSS) and time of one training epoch as the dataset grows to 20,000 clips.

Synthetic but real-sized FEATURE arrays (random float32 [T in 500..900, F]
per fake sha: 5-9 s clips of the default F MFCCs) are written straight into a local
FeatureStore layout (generating 20k real clips would take far too long), then
each size trains in its own subprocess so its peak RSS is its own: the default
model and windows (``convstats``, 4 s windows, batch 16, dropout), 1 epoch, 1
window per clip, torch's default threads (as training runs; 2 here). The open-files figure is read from ``/proc/self/fd`` after the
epoch, while the training sources are still alive. This measures the data path
+ training loop, not accuracy.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, Context, Result, check, current_rss_mib, linear_fit, peak_rss_mib
from spira_lib.config import SpiraConfig

NAME = "memory"
TARGET_PEAK_GIB = 4.0
N_FEATURES = SpiraConfig().features.n_features  # the default front end (20 MFCCs)
EXTRACTOR_KEY = "bench-synthetic"


def fake_sha(i: int) -> str:
    return hashlib.sha256(f"bench-clip-{i}".encode()).hexdigest()


def write_features(root: Path, n: int, t_range: tuple[int, int], seed: int = 0) -> int:
    """Write n synthetic clean feature arrays under ``root`` in FeatureStore's layout; returns total frames.

    Files are written with np.save directly (no fsync per object as LocalFolderStore.put does):
    only the read path is under test, and 20k fsyncs would dominate the setup time.
    """
    from spira_lib.adapters.local import LocalFolderStore
    from spira_lib.feature_store import FeatureStore

    fstore = FeatureStore(LocalFolderStore(root))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(t_range[0], t_range[1] + 1, size=n)
    for i, t in enumerate(lengths):
        path = root / fstore.key(EXTRACTOR_KEY, fake_sha(i), "clean")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.standard_normal((int(t), N_FEATURES), dtype=np.float32), allow_pickle=False)
    return int(lengths.sum())


def child(root: Path, n_train: int, n_val: int, device: str, nofile: int = 0) -> dict:
    """Train one epoch on clips [n_val, n_val + n_train) and validate on [0, n_val); JSON-able figures.

    ``nofile > 0`` lowers the soft open-files limit first; running out of file
    descriptors is then reported as ``{"emfile": True}`` instead of raised.
    """
    import errno
    import resource

    import torch  # noqa: F401  (imported before the baseline RSS is taken)

    from spira_lib.adapters.local import LocalFolderStore
    from spira_lib.config import build_config
    from spira_lib.feature_store import FeatureStore, StoreClipSource
    from spira_lib.training import train_model

    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    base_rss = current_rss_mib()
    # The default model, windows and batch; one epoch, one window per clip.
    cfg = build_config(overrides={
        "training.epochs": 1, "training.windows_per_clip": 1, "training.device": device, "training.threads": 0,
        # The synthetic arrays are 500-900 frames; no clip may be shorter than a window.
        "audio.min_duration_s": 4.0,
    })
    fstore = FeatureStore(LocalFolderStore(root))
    val_shas = [fake_sha(i) for i in range(n_val)]
    train_shas = [fake_sha(i) for i in range(n_val, n_val + n_train)]
    train = StoreClipSource(fstore, EXTRACTOR_KEY, train_shas, [i % 2 for i in range(n_train)])
    val = StoreClipSource(fstore, EXTRACTOR_KEY, val_shas, [i % 2 for i in range(n_val)])
    t0 = time.perf_counter()
    fds: list[int] = []
    try:
        result = train_model(train, val, model_cfg=cfg.model, train_cfg=cfg.training, feat_cfg=cfg.features, aug_cfg=cfg.augment,
                             on_epoch=lambda _s: fds.append(open_files()))
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise
        return {"clips": n_train, "emfile": True, "nofile": nofile, "error": str(exc), "after_s": time.perf_counter() - t0}
    fit_s = time.perf_counter() - t0
    frames = sum(int(np.load(fstore.store.local_path(fstore.key(EXTRACTOR_KEY, s, "clean")), mmap_mode="r").shape[0])
                 for s in train_shas)
    return {
        "clips": n_train,
        "fit_s": fit_s,
        "peak_rss_mib": peak_rss_mib(),
        "base_rss_mib": base_rss,
        "train_feature_mib": frames * N_FEATURES * 4 / 2**20,
        "windows": result.n_train_windows,
        "open_files": fds[-1] if fds else None,
        "model": cfg.model.arch,
        "emfile": False,
    }


def open_files() -> int:
    """File descriptors this process holds now (``/proc/self/fd``)."""
    import os

    return len(os.listdir("/proc/self/fd"))


def run_child(root: Path, n_train: int, n_val: int, device: str, nofile: int = 0, timeout_s: float = 400) -> dict:
    cmd = [sys.executable, "-m", "bench.memory", "--child", str(root), str(n_train), str(n_val), device, str(nofile)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark child ({n_train} clips) failed with code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> list[Result]:
    import resource

    wanted = ctx.size([2000, 20000], [24, 48])
    n_val = ctx.size(256, 16)
    # Descriptors do not grow with clips (memory.open_files measures it), so every size runs.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    sizes = sorted(wanted)
    probe_n, probe_limit = 1100, 1024  # the usual Linux default soft limit
    with ctx.tempdir("bench-memory") as tmp:
        total = (max(sizes) if ctx.quick else max(max(sizes), probe_n)) + n_val
        ctx.say(f"[memory] writing {total} synthetic feature arrays")
        t0 = time.perf_counter()
        frames = write_features(tmp, total, (500, 900))
        write_s = time.perf_counter() - t0
        rows = []
        for n in sizes:
            # --quick trains in this process (no torch import per size): its RSS figures mean nothing.
            ctx.say(f"[memory] training 1 epoch on {n} clips ({'in process' if ctx.quick else 'subprocess'})")
            rows.append(child(tmp, n, n_val, ctx.device) if ctx.quick else run_child(tmp, n, n_val, ctx.device))
        probe = None
        if not ctx.quick:
            ctx.say(f"[memory] {probe_n} clips under a soft open-files limit of {probe_limit}")
            probe = run_child(tmp, probe_n, n_val, ctx.device, nofile=probe_limit)

    ok = [r for r in rows if not r.get("emfile")]
    x = [r["clips"] for r in ok]
    a, b, r2 = linear_fit(x, [r["fit_s"] for r in ok])
    ra, rb, rr2 = linear_fit(x, [r["peak_rss_mib"] for r in ok])
    _, fb, _ = linear_fit(x, [r["train_feature_mib"] for r in ok])
    top = max(wanted)
    measured_top = max(ok, key=lambda r: r["clips"])
    peak_top_gib = (ra + rb * top) / 1024 if measured_top["clips"] < top else measured_top["peak_rss_mib"] / 1024
    grows = rb > 0.5 * fb  # RSS rises by at least half the feature bytes per clip
    table = "; ".join(
        f"{r['clips']}: {r['fit_s']:.1f} s, peak {r['peak_rss_mib']:.0f} MiB (epoch features {r['train_feature_mib']:.0f} MiB)"
        for r in ok
    )
    finding = (
        "peak RSS grows with clips at about the epoch's feature bytes or more"
        if grows else "peak RSS grows much more slowly than the epoch's feature bytes"
    )
    capped = (f" The largest size measured was {measured_top['clips']}: the {top}-clip peak is extrapolated from the fit."
              if measured_top["clips"] < top else "")
    results = [
        Result(
            name="memory.peak_rss",
            value=peak_top_gib,
            unit="GiB",
            compares=f"peak RSS of one training epoch at {top} clips (subprocess per size, ru_maxrss)",
            target=f"<= {TARGET_PEAK_GIB:g} GiB",
            passed=check(peak_top_gib, maximum=TARGET_PEAK_GIB),
            notes=(
                f"{finding}. RSS slope {rb * 1000:.0f} MiB per 1k clips (R2 {rr2:.3f}) vs epoch feature bytes "
                f"{fb * 1000:.0f} MiB per 1k clips; intercept {ra:.0f} MiB (torch, model, activations). "
                f"Model {measured_top['model']}, {measured_top['windows']} windows at {measured_top['clips']} clips. "
                f"Extrapolated to 100k clips: {(ra + rb * 100000) / 1024:.1f} GiB.{capped} Per size: {table}."
            ),
            extra={"sizes": rows, "rss_fit": {"a_mib": ra, "b_mib_per_clip": rb, "r2": rr2},
                   "write_features_s": write_s, "frames_written": frames, "nofile_hard_limit": hard},
        ),
        Result(
            name="memory.fit_time_slope",
            value=b * 1000,
            unit="s per 1k clips",
            compares="fit time = a + b*clips (1 epoch, 1 window/clip, default model, 4 s windows, batch 16, torch default threads)",
            notes=f"a = {a:.1f} s, b = {b * 1000:.2f} s per 1k clips, R2 = {r2:.3f}. {table}.",
            extra={"a_s": a, "b_s_per_clip": b, "r2": r2},
        ),
    ]
    results.append(Result(
        name="memory.open_files",
        value=float(measured_top["open_files"]) if measured_top.get("open_files") is not None else None,
        unit="fds",
        compares=f"open file descriptors (/proc/self/fd) after a {measured_top['clips']}-clip epoch, sources alive",
        notes="per size: " + ", ".join(f"{r['clips']} clips: {r.get('open_files')}" for r in ok) + (
            "" if probe is None else (
                f"; under ulimit -n {probe_limit}, {probe_n} clips: "
                + (f"EMFILE after {probe['after_s']:.1f} s ({probe['error']})" if probe.get("emfile")
                   else f"trained ({probe['fit_s']:.1f} s, {probe.get('open_files')} fds)"))),
        passed=None if probe is None else not probe.get("emfile"),
        target=f"{probe_n} clips train under ulimit -n {probe_limit}",
        extra={"probe": probe},
    ))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="memory benchmark child: one training epoch, prints JSON")
    p.add_argument("--child", nargs=5, metavar=("ROOT", "N_TRAIN", "N_VAL", "DEVICE", "NOFILE"), required=True)
    ns = p.parse_args(argv)
    root, n_train, n_val, device, nofile = ns.child
    print(json.dumps(child(Path(root), int(n_train), int(n_val), device, int(nofile))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

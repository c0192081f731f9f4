"""The flow's own feature stage, end to end: the headline feature figure, and the same stage on Dask.

What ``spira-retrain`` does between ``split`` and ``train`` (``flows/retrain.py``
``TaskSteps.features``): the split's clips cut into ``runtime.feature_chunk_clips``
chunks, each chunk a ``features_step(spec, split, chunk=(i, n))`` on the flow's
task runner, merged with ``merge_features``. Each chunk computes, with the
shipped config, the clean features, ``augment.noisy_copies`` noisy copies of
every training clip and the evaluation clips' shortcut variants (held-out
noise, channel), into the feature store on local disk (``LocalFolderStore``
fsyncs every object).

Runners compared on the same data, each into an empty feature store:

* ``thread``: the default runner (``ThreadPoolTaskRunner(max_workers=2)``),
  reproduced with a ``ThreadPoolExecutor`` of 2 over the same chunk calls
  (Prefect's task bookkeeping is not timed);
* ``dask``: a ``distributed.LocalCluster`` with 2 worker processes of 1 thread
  (what ``SPIRA_TASK_RUNNER=dask`` starts), cluster start-up not timed.

The figure is seconds of SOURCE audio (each clip once) per wall second. The
two feature stores must hold identical bytes.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Context, Result, demo_dataset, ratio
from spira_lib.bootstrap import forget_workspaces
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.contract import FeaturesReady, SplitRef
from spira_lib.pipeline.data_steps import (
    feature_chunk_count,
    features_step,
    merge_features,
    snapshot_step,
    split_step,
    validate_step,
)

NAME = "feature_stage"


def _chunk(spec: RunSpec, split: SplitRef, i: int, n: int) -> FeaturesReady:
    return features_step(spec, split, chunk=(i, n))


def _prepare(data_dir: Path, reg_dir: Path, chunk_clips: int) -> tuple[RunSpec, SplitRef]:
    overrides = {"runtime.feature_chunk_clips": chunk_clips, "validation.min_clips": 10, "validation.min_clips_per_class": 3}
    spec = RunSpec.build(data_dir, reg_dir, overrides=overrides)
    return spec, split_step(spec, validate_step(spec, snapshot_step(spec)))


def thread_stage(spec: RunSpec, split: SplitRef, workers: int = 2) -> tuple[FeaturesReady, float]:
    n = feature_chunk_count(split, spec.config.runtime.feature_chunk_clips)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda i: _chunk(spec, split, i, n), range(n)))
    return merge_features(parts), time.perf_counter() - t0


def dask_stage(spec: RunSpec, split: SplitRef, workers: int = 2) -> tuple[FeaturesReady, float, float]:
    from distributed import Client, LocalCluster

    n = feature_chunk_count(split, spec.config.runtime.feature_chunk_clips)
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)  # the workers are up
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        futures = [client.submit(_chunk, spec, split, i, n, pure=False) for i in range(n)]
        parts = client.gather(futures)
        wall = time.perf_counter() - t1
    return merge_features(parts), wall, startup


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (feature arrays and their metadata), by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _features_root(reg_dir: Path) -> Path:
    return reg_dir / "features"


def measure(ctx: Context, speakers: int, *, with_dask: bool) -> dict[str, Any]:
    with ctx.tempdir("bench-feature-stage") as tmp:
        ctx.say(f"[feature_stage] generating {speakers} demo speakers")
        demo_dataset(tmp / "data", speakers, seed=23)
        out: dict[str, Any] = {}
        runners = ["thread", "dask"] if with_dask else ["thread"]
        for runner in runners:
            forget_workspaces()
            spec, split = _prepare(tmp / "data", tmp / f"reg-{runner}", max(8, int(split_clips(tmp) / 4)))
            if runner == "thread":
                stats, wall = thread_stage(spec, split)
                startup = 0.0
            else:
                stats, wall, startup = dask_stage(spec, split)
            out[runner] = {"wall_s": wall, "startup_s": startup, "clips": stats.clips, "computed": stats.computed,
                           "audio_s": stats.audio_seconds, "chunks": stats.chunks,
                           "digest": tree_digest(_features_root(tmp / f"reg-{runner}"))}
        forget_workspaces()
    return out


def split_clips(tmp: Path) -> int:
    """Audio files in the generated dataset (noise recordings excluded)."""
    exts = (".wav", ".flac", ".mp3", ".ogg")
    return sum(1 for p in (tmp / "data").rglob("*") if p.suffix.lower() in exts and "noises" not in p.parts)


def run(ctx: Context) -> list[Result]:
    speakers = ctx.size(64, 12)
    m = measure(ctx, speakers, with_dask=not ctx.quick)
    th = m["thread"]
    xrt = th["audio_s"] / th["wall_s"]
    rows = [Result(
        name="features.flow_stage", value=xrt, unit="x real time",
        compares="source audio s / wall s of the flow's feature stage (thread runner, clean + noisy copies + "
                 "shortcut variants, local disk with fsync)",
        target=None, passed=None,
        notes=(f"{th['clips']} clips, {th['audio_s']:.0f} s of source audio, {th['computed']} arrays computed "
               f"in {th['wall_s']:.1f} s over {th['chunks']} chunks"),
        extra={k: {kk: vv for kk, vv in v.items() if kk != "digest"} for k, v in m.items()},
    )]
    if "dask" in m:
        dk = m["dask"]
        same = dk["digest"] == th["digest"] and bool(th["digest"])
        speedup = ratio(th["wall_s"], dk["wall_s"])
        rows.append(Result(
            name="features.dask_vs_threads", value=speedup, unit="x",
            compares="feature stage wall s: thread runner (2 threads) / 2-worker Dask LocalCluster, same data",
            target="identical bytes", passed=same,
            notes=(f"threads {th['wall_s']:.1f} s, Dask {dk['wall_s']:.1f} s (+{dk['startup_s']:.1f} s cluster start, "
                   f"not timed); {len(th['digest'])} feature files, identical bytes: {same}"),
        ))
    return rows

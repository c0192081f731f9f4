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

And the thread runner once more with the dataset AND the registry (so the
feature store) on S3, as a production deployment has them
(``--data s3://bucket/data --registry s3://bucket/registry``): a ``moto_server``
started here on 127.0.0.1 (``tests/servers.py``), the client pointed at it by
``AWS_ENDPOINT_URL`` and test credentials in the environment, the same steps
opening ``S3Store``s from the URIs. Server start-up and uploading the dataset
are not timed. Every clip is then read, and every array written, over HTTP.

The figure is seconds of SOURCE audio (each clip once) per wall second. All
feature stores must hold identical bytes (compared by sha256 of every array
and its metadata, by key).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

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
BUCKET = "spira-bench-features"


def _chunk(spec: RunSpec, split: SplitRef, i: int, n: int) -> FeaturesReady:
    return features_step(spec, split, chunk=(i, n))


def _prepare(data_dir: Path | str, reg_dir: Path | str, chunk_clips: int) -> tuple[RunSpec, SplitRef]:
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
    # distributed's Nanny writes its pre-spawn variables (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ...)
    # into THIS process's environment and leaves them: every later subprocess of the benchmark
    # run (spira train, make demo, the memory children) would then run on one thread.
    with mock.patch.dict(os.environ), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
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


def store_digest(store: Any, prefix: str = "features/") -> dict[str, str]:
    """``tree_digest`` through the ObjectStore port: sha256 of every object under ``prefix``, by key below it."""
    return {info.key.removeprefix(prefix): hashlib.sha256(store.get(info.key)).hexdigest() for info in store.list(prefix)}


@contextlib.contextmanager
def s3_environment(endpoint: str, home: Path) -> Iterator[None]:
    """Test credentials and ``AWS_ENDPOINT_URL`` in this process's environment; restored afterwards."""
    from tests.servers import AWS_VARS_TO_CLEAR, moto_aws_env

    with mock.patch.dict(os.environ):
        for k in AWS_VARS_TO_CLEAR:
            os.environ.pop(k, None)
        os.environ.update(moto_aws_env(endpoint, home))
        yield


def upload(data_dir: Path, store: Any) -> int:
    """Every file of ``data_dir`` into ``store`` under its relative path; returns bytes uploaded."""
    total = 0
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            blob = p.read_bytes()
            store.put(p.relative_to(data_dir).as_posix(), blob)
            total += len(blob)
    return total


def s3_stage(data_dir: Path, tmp: Path, chunk_clips: int) -> dict[str, Any]:
    """The thread-runner stage with data and registry on a moto S3 server started here."""
    from spira_lib.adapters.s3 import S3Store, make_s3_client
    from tests.servers import moto_server

    t0 = time.perf_counter()
    with moto_server(tmp / "moto") as endpoint, s3_environment(endpoint, tmp):
        make_s3_client().create_bucket(Bucket=BUCKET)
        uploaded = upload(data_dir, S3Store(BUCKET, "data"))
        setup_s = time.perf_counter() - t0
        forget_workspaces()
        spec, split = _prepare(f"s3://{BUCKET}/data", f"s3://{BUCKET}/registry", chunk_clips)
        stats, wall = thread_stage(spec, split)
        digest = store_digest(S3Store(BUCKET, "registry"))
        forget_workspaces()  # the cached workspace holds clients of a server that is about to stop
    return {"wall_s": wall, "startup_s": setup_s, "uploaded_bytes": uploaded, "clips": stats.clips,
            "computed": stats.computed, "audio_s": stats.audio_seconds, "chunks": stats.chunks, "digest": digest,
            "data_uri": spec.data_uri, "registry_uri": spec.registry_uri}


def measure(ctx: Context, speakers: int, *, with_dask: bool, with_s3: bool = True) -> dict[str, Any]:
    with ctx.tempdir("bench-feature-stage") as tmp:
        ctx.say(f"[feature_stage] generating {speakers} demo speakers")
        demo_dataset(tmp / "data", speakers, seed=23)
        out: dict[str, Any] = {}
        chunk_clips = max(8, int(split_clips(tmp) / 4))
        runners = ["thread", "dask"] if with_dask else ["thread"]
        for runner in runners:
            forget_workspaces()
            spec, split = _prepare(tmp / "data", tmp / f"reg-{runner}", chunk_clips)
            if runner == "thread":
                stats, wall = thread_stage(spec, split)
                startup = 0.0
            else:
                stats, wall, startup = dask_stage(spec, split)
            out[runner] = {"wall_s": wall, "startup_s": startup, "clips": stats.clips, "computed": stats.computed,
                           "audio_s": stats.audio_seconds, "chunks": stats.chunks,
                           "digest": tree_digest(_features_root(tmp / f"reg-{runner}"))}
        forget_workspaces()
        if with_s3:
            ctx.say("[feature_stage] the same stage with data and registry on a moto S3 server")
            out["s3"] = s3_stage(tmp / "data", tmp / "s3", chunk_clips)
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
    if "s3" in m:
        s3 = m["s3"]
        same = s3["digest"] == th["digest"] and bool(th["digest"])
        slower = ratio(s3["wall_s"], th["wall_s"])
        rows.append(Result(
            name="features.flow_stage_s3", value=s3["audio_s"] / s3["wall_s"], unit="x real time",
            compares=("source audio s / wall s of the same feature stage (thread runner) with the dataset and the "
                      "feature store on S3 (a moto server on 127.0.0.1)"),
            target="identical bytes", passed=same,
            notes=(f"{s3['clips']} clips, {s3['computed']} arrays computed in {s3['wall_s']:.1f} s; "
                   f"{slower:.2f}x the local-disk wall time ({th['wall_s']:.1f} s); server start + upload "
                   f"{s3['startup_s']:.1f} s, not timed; {len(s3['digest'])} feature files, identical bytes to local "
                   f"disk: {same}"),
            extra={"s3": {k: v for k, v in s3.items() if k != "digest"}, "s3_over_local_wall": slower,
                   "local_wall_s": th["wall_s"], "identical_bytes": same},
        ))
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

"""Benchmark 1: feature extraction throughput (decode + resample + preprocess + MFCC), x real time.

The headline row is the flow's own feature stage (``bench/feature_stage.py``:
thread runner, noisy copies and shortcut variants, local disk with fsync; the
same stage with data and feature store on a moto S3 server; and on a 2-worker
Dask cluster). The secondary rows here are the
front end alone at its best: ``FeatureStore.ensure`` over generated clips held
in memory, clean features only, in several parallel set-ups side by side
(including a pre-warmed process pool), then the stages timed one by one on the
same clips to say what limits it.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

from bench.common import Context, Result, Stopwatch, check, demo_dataset, ratio
from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.audio import _resample, preprocess, read_native
from spira_lib.config import AugmentConfig, EvaluationConfig, FeatureConfig
from spira_lib.feature_store import FeatureStore, VariantPlan
from spira_lib.noise import AUDIO_EXTENSIONS, NoiseBank
from spira_lib.features import FeatureExtractor

NAME = "features"
TARGET_X_REALTIME = 500.0


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _clean_only_plan() -> tuple[VariantPlan, NoiseBank]:
    # Clean variants only: this benchmark is about the front end, not noise mixing.
    return VariantPlan(0, "none", None, AugmentConfig(), EvaluationConfig()), NoiseBank([], [], "none")


def load_clips(data_dir: Path) -> tuple[MemoryStore, list[dict], float]:
    """Audio objects of a demo dataset in a MemoryStore, their rows, and total seconds of audio."""
    disk = LocalFolderStore(data_dir)
    mem = MemoryStore()
    rows: list[dict] = []
    seconds = 0.0
    for info in disk.list(""):
        if not info.key.lower().endswith(AUDIO_EXTENSIONS) or info.key.startswith("noises/"):
            continue
        blob = disk.get(info.key)
        mem.put(info.key, blob)
        seconds += sf.info(io.BytesIO(blob)).duration
        rows.append({"key": info.key, "sha256": hashlib.sha256(blob).hexdigest(), "split": "eval", "label": 0})
    return mem, rows, seconds


def run_ensure(data: MemoryStore, rows: list[dict], fstore: FeatureStore, workers: int) -> float:
    """Wall seconds for ensure() to compute every clean feature of ``rows`` into ``fstore``."""
    plan, noise = _clean_only_plan()
    extractor = FeatureExtractor(FeatureConfig())
    t0 = time.perf_counter()
    stats = fstore.ensure(data, rows, extractor, plan, noise, workers=workers)
    wall = time.perf_counter() - t0
    if stats.failed or stats.computed != len(rows):
        raise RuntimeError(f"feature benchmark: ensure computed {stats.computed}/{len(rows)}, failed {stats.failed[:2]}")
    return wall


# ---------------------------------------------------------------- process pool (spawned workers)

_WORKER: dict = {}


def _worker_init(data_dir: str) -> None:
    torch.set_num_threads(1)
    mem, rows, _ = load_clips(Path(data_dir))
    _WORKER.update(data=mem, rows={r["key"]: r for r in rows})
    # Warm the extractor (first MFCC call builds the filterbank).
    FeatureExtractor(FeatureConfig())(np.zeros(16000, np.float32))


def _worker_ready(delay: float) -> int:
    import os

    time.sleep(delay)  # keeps this worker busy so the other one takes the second warm-up call
    return os.getpid()


def _worker_chunk(keys: list[str]) -> float:
    rows = [_WORKER["rows"][k] for k in keys]
    return run_ensure(_WORKER["data"], rows, FeatureStore(MemoryStore()), workers=1)


class _ProcessPool:
    """Spawned single-threaded workers, started (and warmed) before anything is timed."""

    def __init__(self, data_dir: Path, processes: int) -> None:
        ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
        t0 = time.perf_counter()
        self.processes = processes
        self.pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init, initargs=(str(data_dir),))
        pids = set(self.pool.map(_worker_ready, [1.0] * processes))
        self.startup_s = time.perf_counter() - t0
        if len(pids) != processes:
            self.close()
            raise RuntimeError(f"process pool started {len(pids)} workers, expected {processes}")

    def run(self, rows: list[dict]) -> float:
        """Wall seconds to compute ``rows`` split evenly over the workers."""
        chunks = [[r["key"] for r in rows[i :: self.processes]] for i in range(self.processes)]
        t0 = time.perf_counter()
        list(self.pool.map(_worker_chunk, chunks))
        return time.perf_counter() - t0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- stages


def stage_times(data: MemoryStore, rows: list[dict]) -> dict[str, float]:
    """Seconds per stage over all clips, one thread (same work as ensure, taken apart)."""
    cfg = FeatureConfig()
    extractor = FeatureExtractor(cfg)
    # The STFT alone, to split MFCC into FFT vs mel filterbank + DCT.
    import torchaudio

    spec = torchaudio.transforms.Spectrogram(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length)
    fstore = FeatureStore(MemoryStore())
    sw = Stopwatch()
    resampled = 0
    with torch_threads(1), torch.no_grad():
        for row in rows:
            with sw("read"):
                blob = data.get(row["key"])
            with sw("decode"):
                frames, sr = read_native(blob, name=row["key"])
                wave = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
                wave = np.ascontiguousarray(wave, dtype=np.float32)
            if sr != cfg.sample_rate:
                resampled += 1
                with sw("resample"):
                    wave = _resample(wave, sr, cfg.sample_rate)
            with sw("preprocess"):
                wave = preprocess(wave, cfg.sample_rate)
            with sw("stft_only"):
                spec(torch.from_numpy(wave))
            with sw("mfcc"):
                feats = extractor(wave)
            with sw("save"):
                fstore.put(extractor.key, row["sha256"], "clean", feats)
    out = dict(sw.seconds)
    out["clips_resampled"] = resampled
    return out


def run(ctx: Context) -> list[Result]:
    from bench import feature_stage

    return feature_stage.run(ctx) + best_case(ctx)


def best_case(ctx: Context) -> list[Result]:
    speakers = ctx.size(64, 4)
    with ctx.tempdir("bench-features") as tmp:
        ctx.say(f"[features] generating {speakers} demo clips")
        demo_dataset(tmp / "data", speakers, seed=21, noise_files=0)
        data, rows, audio_s = load_clips(tmp / "data")
        ctx.say(f"[features] {len(rows)} clips, {audio_s:.0f} s of audio")
        # Warm-up: first calls build filterbanks, resampling kernels, allocator pools.
        run_ensure(data, rows[: min(4, len(rows))], FeatureStore(MemoryStore()), workers=1)

        setups = {
            "threads1_torch1": (1, 1, False),
            "threads2_torch1": (2, 1, False),
            # What features_step does today: 2 worker threads, torch's default intra-op threads.
            "threads2_torch_default": (2, 0, False),
            # Same, written to a local folder (LocalFolderStore fsyncs every object).
            "threads2_torch1_localdisk": (2, 1, True),
        }
        reps = 2
        walls: dict[str, float] = {}
        pool_startup = None
        # Best of `reps`, set-ups interleaved round-robin so that load from other
        # processes hits every set-up alike.
        pool = None if ctx.quick else _ProcessPool(tmp / "data", 2)
        try:
            if pool is not None:
                ctx.say("[features] process pool started (2 spawned workers)")
                pool_startup = pool.startup_s
            for rep in range(reps):
                for name, (workers, threads, disk) in setups.items():
                    store = LocalFolderStore(tmp / f"features-{name}-{rep}") if disk else MemoryStore()
                    with torch_threads(threads or torch.get_num_threads()):
                        wall = run_ensure(data, rows, FeatureStore(store), workers=workers)
                    walls[name] = min(wall, walls.get(name, float("inf")))
                if pool is not None:
                    walls["processes2_torch1"] = min(pool.run(rows), walls.get("processes2_torch1", float("inf")))
        finally:
            if pool is not None:
                pool.close()
        stages = stage_times(data, rows)

    xrt = {k: audio_s / v for k, v in walls.items()}
    two_core = {k: v for k, v in xrt.items() if k != "threads1_torch1" and not k.endswith("localdisk")}
    best_name = max(two_core, key=two_core.get)
    best = two_core[best_name]
    per_core = xrt["threads1_torch1"]
    scaling = ratio(best, per_core)

    stage_keys = ["read", "decode", "resample", "preprocess", "mfcc", "save"]
    stage_sum = sum(stages.get(k, 0.0) for k in stage_keys)
    overhead = max(walls["threads1_torch1"] - stage_sum, 0.0)
    share = {k: stages.get(k, 0.0) / walls["threads1_torch1"] for k in stage_keys}
    share["ensure_overhead"] = overhead / walls["threads1_torch1"]
    limiter = max(share, key=share.get)
    stft_share_of_mfcc = ratio(stages.get("stft_only", 0.0), stages.get("mfcc", 0.0))
    fmt = ", ".join(f"{k} {v:.0%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
    notes = (
        f"best 2-core set-up: {best_name} ({best:.0f}x); 1 thread: {per_core:.0f}x per core; "
        f"2-core scaling {scaling:.2f}x. Thread pool with torch default threads: "
        f"{xrt['threads2_torch_default']:.0f}x; "
        + (f"process pool (startup {pool_startup:.1f}s excluded): {xrt['processes2_torch1']:.0f}x; "
           if pool_startup is not None else "process pool skipped (--quick); ")
        + f"into a local folder (fsync per put): {xrt['threads2_torch1_localdisk']:.0f}x. Best of {reps}. "
        f"Single-thread time by stage: {fmt}; the STFT is {stft_share_of_mfcc:.0%} of the MFCC stage; "
        f"{stages['clips_resampled']}/{len(rows)} clips needed resampling. Limiter: {limiter}."
    )
    extra = {
        "clips": len(rows),
        "audio_seconds": audio_s,
        "x_realtime": xrt,
        "wall_s": walls,
        "stage_s": stages,
        "stage_share_1thread": share,
        "process_pool_startup_s": pool_startup,
    }
    return [
        Result(
            name="features.best_case",
            value=best,
            unit="x realtime",
            compares=f"best case, clean features only, in-memory input and output: audio s / wall s, {best_name}, 2 cores",
            target=f">= {TARGET_X_REALTIME:.0f}x",
            passed=check(best, minimum=TARGET_X_REALTIME),
            notes=notes,
            extra=extra,
        ),
        Result(
            name="features.per_core",
            value=per_core,
            unit="x realtime",
            compares="best case per core: audio s / wall s, clean features in memory, 1 thread, torch 1 thread",
            notes=f"2-core scaling of the best set-up over this: {scaling:.2f}x",
        ),
    ]

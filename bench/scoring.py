"""Benchmark: batch scoring throughput on CPU through ``spira_lib.scoring.score_batch``.

An inbox of N recordings (``spira_demo.synth_clip``, 6-10 s, 16 kHz PCM16 WAV)
on local disk, a registry with the default model (``convstats``, default
config and 4 s windows, untrained weights: the cost does not depend on the
weights) as champion. Timed: one ``score_batch`` call, the production path:
listing and hashing the inbox, the audio checks, feature extraction into the
feature store (thread pool, ``runtime.feature_workers``), windowing, the
forward passes and writing the predictions Parquet. Target: 1,000 clips in
under 60 s.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch

from bench.common import Context, Result, check, timed
from spira_lib.checkpoint import checkpoint_bytes
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import build_model, window_frames
from spira_lib.pipeline import RunSpec
from spira_lib.scoring import score_batch
from spira_demo import synth_clip

NAME = "scoring"
TARGET_S = 60.0


def _wav(seed: int) -> tuple[bytes, float]:
    rng = np.random.default_rng(seed)
    seconds = float(rng.uniform(6.0, 10.0))
    buf = io.BytesIO()
    sf.write(buf, synth_clip(rng, seed % 2, duration_s=seconds), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue(), seconds


def _setup(root, n: int) -> tuple[RunSpec, float]:
    spec = RunSpec.build(root / "inbox", root / "registry")
    ws = spec.workspace()
    audio_s = 0.0
    for i in range(n):
        blob, seconds = _wav(i)
        ws.data.put(f"batch/clip{i:05d}.wav", blob)
        audio_s += seconds
    model_cfg, feat_cfg = spec.config.model, spec.config.features
    torch.manual_seed(0)
    frames = window_frames(model_cfg, feat_cfg)
    model = build_model(feat_cfg.n_features, frames, model_cfg)
    ckpt = checkpoint_bytes(model, model_cfg=model_cfg, feat_cfg=feat_cfg, n_frames=frames, meta={"bench": NAME})
    ws.registry.register("spira", {"model.pt": ckpt}, {"training_key": "bench"})
    ws.registry.promote("spira", 1, reason="benchmark champion")
    return spec, audio_s


def run(ctx: Context) -> list[Result]:
    n = ctx.size(1000, 12)
    with ctx.tempdir("bench-scoring") as root:
        spec, audio_s = _setup(root, n)
        champion = spec.workspace().registry.champion("spira")
        batch, seconds = timed(lambda: score_batch(spec, champion))
    scaled = seconds * 1000 / max(batch.n_scored, 1)
    return [Result(
        name="scoring.batch_1000", value=batch.n_scored / seconds, unit="clips/s",
        compares=f"score_batch on CPU: {batch.n_scored} new 6-10 s clips (local disk) -> predictions, default model",
        target="1,000 clips < 60 s", passed=check(scaled, maximum=TARGET_S),
        notes=(f"{batch.n_scored} clips ({audio_s / 60:.1f} min of audio) in {seconds:.1f} s, "
               f"{audio_s / seconds:.0f}x real time; features + checks + windows + forward + Parquet"),
        extra={"clips": batch.n_scored, "seconds": seconds, "audio_s": audio_s, "rejected": len(batch.rejected),
               "seconds_per_1000": scaled},
    )]

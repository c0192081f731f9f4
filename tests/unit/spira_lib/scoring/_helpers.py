"""A registry with untrained (random) models and an inbox of short synthetic recordings, all in memory."""
from __future__ import annotations

import io
import uuid

import numpy as np
import soundfile as sf
import torch

from spira_lib.checkpoint import checkpoint_bytes
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import SpiraConvV2, window_frames
from spira_lib.pipeline import RunSpec
from spira_demo import synth_clip

# Short windows keep the forward passes cheap; the checkpoint carries them, so scoring uses them too.
MODEL = ModelConfig(window_s=1.0, step_s=0.5, fc_hidden=8, dropout=0.0)
FEAT = FeatureConfig()


def checkpoint(seed: int) -> bytes:
    torch.manual_seed(seed)
    n = window_frames(MODEL, FEAT)
    return checkpoint_bytes(SpiraConvV2(FEAT.n_features, n, MODEL), model_cfg=MODEL, feat_cfg=FEAT, n_frames=n, meta={"seed": seed})


def wav(seed: int, seconds: float = 2.5) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth_clip(np.random.default_rng(seed), seed % 2, duration_s=seconds), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def setup(n_clips: int = 6, *, challenger: bool = False, overrides: dict | None = None) -> RunSpec:
    name = uuid.uuid4().hex[:8]
    spec = RunSpec.build(f"memory://inbox-{name}", f"memory://reg-{name}",
                         overrides={"audio.min_duration_s": 1.0, "model.window_s": 1.0, **(overrides or {})})
    ws = spec.workspace()
    for i in range(n_clips):
        ws.data.put(f"batch/clip{i:02d}.wav", wav(i))
    reg = ws.registry
    reg.register("spira", {"model.pt": checkpoint(1)}, {"training_key": "a"})
    reg.promote("spira", 1, reason="test champion")
    if challenger:
        reg.register("spira", {"model.pt": checkpoint(2)}, {"training_key": "b"})
        reg.set_alias("spira", "challenger", 2)
    return spec

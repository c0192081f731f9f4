"""The one-cycle schedule, and a convstats training with mixup."""
from __future__ import annotations

import numpy as np
import pytest

from spira_lib.config import AugmentConfig, FeatureConfig, ModelConfig, TrainingConfig
from spira_lib.training import ArrayClipSource, predict_arrays, train_model
from spira_lib.training.schedule import onecycle_lr, scheduled_lr


def test_onecycle_schedule_shape():
    lrs = [onecycle_lr(t, 1e-2, 100, 10) for t in range(1, 101)]
    assert lrs[9] == pytest.approx(1e-2) and lrs[0] < lrs[9]
    assert lrs[-1] == pytest.approx(1e-5) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert scheduled_lr(5, TrainingConfig(schedule="noam", lr=1e-3, warmup_steps=10), 100) == pytest.approx(5e-4)
    assert scheduled_lr(100, TrainingConfig(schedule="onecycle", lr=1e-3), 100) == pytest.approx(1e-6)


def test_convstats_trains_with_mixup_and_onecycle():
    rng = np.random.default_rng(0)
    # Class 1: a slow on/off pattern on the first coefficient (pauses), which
    # per-window normalisation keeps; a constant offset it would remove.
    t = np.arange(120)
    feats = [rng.standard_normal((120, 8)).astype(np.float32) for _ in range(16)]
    for i in range(1, 16, 2):
        feats[i][:, 0] += 3.0 * (np.sin(2 * np.pi * t / 20.0) > 0)
    labels = [i % 2 for i in range(16)]
    src = ArrayClipSource.clean(feats, labels)
    mcfg = ModelConfig(arch="convstats", window_s=0.8, step_s=0.4, channels=16, fc_hidden=8, dropout=0.1,
                       input_norm="window")
    tcfg = TrainingConfig(epochs=10, batch_size=8, lr=3e-3, schedule="onecycle", mixup_alpha=0.4,
                          restore_best=False, device="cpu", threads=1)
    res = train_model(src, src, model_cfg=mcfg, train_cfg=tcfg, feat_cfg=FeatureConfig(n_mfcc=8, n_mels=8),
                      aug_cfg=AugmentConfig())
    assert len(res.history) == 10 and res.history[-1].lr < res.history[0].lr
    p = predict_arrays(res.model, feats, model_cfg=mcfg, feat_cfg=FeatureConfig(n_mfcc=8, n_mels=8))
    assert np.mean((p >= 0.5) == np.array(labels)) >= 0.8

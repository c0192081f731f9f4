"""ConvStatsNet: forward shape and checkpoint round trip."""
from __future__ import annotations

import torch

from spira_lib.checkpoint import checkpoint_bytes, load_checkpoint
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import ConvStatsNet, build_model


def test_convstats_forward_and_checkpoint_roundtrip():
    cfg = ModelConfig(arch="convstats", window_s=0.8, step_s=0.4, channels=16, fc_hidden=8, input_norm="window")
    torch.manual_seed(0)
    model = build_model(8, 80, cfg).eval()
    assert isinstance(model, ConvStatsNet)
    x = torch.randn(3, 80, 8)
    assert model(x).shape == (3,)
    blob = checkpoint_bytes(model, model_cfg=cfg, feat_cfg=FeatureConfig(n_mfcc=8, n_mels=8), n_frames=80, meta={})
    loaded = load_checkpoint(blob)
    assert isinstance(loaded.model, ConvStatsNet) and loaded.model_cfg.arch == "convstats"
    torch.testing.assert_close(loaded.model(x), model(x))

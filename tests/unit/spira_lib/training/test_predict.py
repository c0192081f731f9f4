"""File-level prediction: the mean of window probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spira_lib.config import ModelConfig
from spira_lib.model import SpiraConvV2, pad_or_crop
from spira_lib.training import predict_arrays, predict_clips
from tests.unit.spira_lib.training._helpers import FEAT, MODEL, _source


def test_predict_averages_window_probabilities_per_file():
    cfg = ModelConfig(arch="spiraconv_v2", window_s=0.8, step_s=0.8, fc_hidden=8)  # step == window: windows are exactly A and B
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, cfg).eval()
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((80, 8)).astype(np.float32) for _ in range(3))
    probs = predict_arrays(model, [np.concatenate([a, b]), c], model_cfg=cfg, feat_cfg=FEAT, batch_size=1)
    p = model.predict_proba(torch.from_numpy(np.stack([a, b, c]))).numpy()
    assert probs.shape == (2,)
    assert probs[0] == pytest.approx((p[0] + p[1]) / 2, abs=1e-6)
    assert probs[1] == pytest.approx(p[2], abs=1e-6)
    assert abs(p[0] - p[1]) > 1e-4  # the mean is not trivially equal to either window


def test_predict_padded_mode_is_one_forward_per_file():
    cfg = ModelConfig(arch="spiraconv_v2", mode="padded", max_duration_s=1.0, fc_hidden=8)
    torch.manual_seed(0)
    model = SpiraConvV2(8, 100, cfg).eval()
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal((t, 8)).astype(np.float32) for t in (70, 100, 180)]
    probs = predict_arrays(model, clips, model_cfg=cfg, feat_cfg=FEAT)
    direct = model.predict_proba(torch.from_numpy(np.stack([pad_or_crop(c, 100) for c in clips]))).numpy()
    np.testing.assert_allclose(probs, direct, atol=1e-6)


def test_predict_uses_the_requested_variant_and_keeps_train_mode():
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, MODEL)
    src = _source(3, seed=4, n_variants=2)
    model.train()
    clean = predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT)
    noisy = predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT, variant=1)
    assert model.training  # prediction does not leave the model in eval mode
    assert clean.shape == noisy.shape == (3,)
    assert not np.allclose(clean, noisy)
    np.testing.assert_array_equal(clean, predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT))  # eval: no dropout


def test_predict_checks_the_window_length_and_handles_empty_input():
    model = SpiraConvV2(8, 80, MODEL)
    with pytest.raises(ValueError, match="built for 80-frame inputs but the config gives 100"):
        predict_arrays(model, [np.zeros((200, 8), np.float32)], model_cfg=ModelConfig(window_s=1.0), feat_cfg=FEAT)
    assert predict_arrays(model, [], model_cfg=MODEL, feat_cfg=FEAT).shape == (0,)

"""SpiraConv v2 shapes and the windowing that turns a clip into model inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import (
    SpiraConvV2,
    _Dropout,
    clip_inputs,
    make_windows,
    min_frames,
    n_windows,
    pad_or_crop,
    step_frames,
    window_frames,
)

# SPIRA's published SpiraConv v2 settings (no longer the defaults: model.arch is convstats).
SPIRA = ModelConfig(arch="spiraconv_v2", fc_hidden=100, dropout=0.7, input_norm="none")


def test_default_shape_400x40_gives_one_logit_per_window():
    torch.manual_seed(0)
    model = SpiraConvV2(40, 400, SPIRA).eval()
    x = torch.randn(3, 400, 40)
    logits = model(x)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()
    probs = model.predict_proba(x)
    assert probs.shape == (3,)
    assert torch.allclose(probs, torch.sigmoid(logits))
    assert ((probs > 0) & (probs < 1)).all()


def test_parameter_count_is_sane_for_default_window():
    model = SpiraConvV2(40, 400, SPIRA)
    # 400 frames -> 388 -> pool 194 -> 186 -> 93 -> 89 -> 44 -> 43; 4 channels x 43 x 40.
    assert model.flat_features == 4 * 43 * 40
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 691_613
    conv_params = sum(p.numel() for p in model.convs.parameters())
    assert conv_params < 5_000  # the convs are tiny; the first dense layer carries the bulk


def test_fc_hidden_and_feature_count_change_the_dense_layer():
    model = SpiraConvV2(8, 80, SPIRA.model_copy(update={'fc_hidden': 16}))
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(model.flat_features, 16), (16, 1)]


def test_too_short_window_is_rejected_with_the_minimum():
    assert min_frames() == 60
    SpiraConvV2(8, 60)  # the shortest window builds
    with pytest.raises(ValueError, match="at least 60 frames"):
        SpiraConvV2(8, 59)


def test_wrong_input_shape_names_the_expected_shape():
    model = SpiraConvV2(8, 80)
    with pytest.raises(ValueError, match=r"\[B, 80, 8\]"):
        model(torch.zeros(2, 80, 9))
    with pytest.raises(ValueError, match=r"\[B, 80, 8\]"):
        model(torch.zeros(80, 8))


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, SPIRA.model_copy(update={'dropout': 0.5}))
    x = torch.randn(4, 80, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_dropout_keeps_the_right_fraction_and_preserves_the_mean():
    torch.manual_seed(0)
    drop = _Dropout(0.7).train()
    out = drop(torch.ones(200_000))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.3))
    assert abs(out.mean().item() - 1.0) < 0.05
    assert torch.equal(drop.eval()(torch.ones(10)), torch.ones(10))


def test_window_and_step_frames_follow_the_configs():
    feat = FeatureConfig()
    assert window_frames(ModelConfig(), feat) == 400
    assert step_frames(ModelConfig(), feat) == 100
    padded = ModelConfig(mode="padded", max_duration_s=12.0)
    assert window_frames(padded, feat) == 1200
    assert step_frames(padded, feat) == 1200
    assert window_frames(ModelConfig(window_s=0.8), FeatureConfig(hop_length=320)) == 40


@pytest.mark.parametrize("frames, expected", [(650, 3), (651, 3), (699, 3), (700, 4), (400, 1), (401, 1)])
def test_window_counts(frames, expected):
    feats = np.zeros((frames, 40), np.float32)
    assert make_windows(feats, 400, 100).shape == (expected, 400, 40)
    assert n_windows(frames, 400, 100) == expected


def test_windows_of_a_6_5_s_clip_are_a_view_with_the_right_content():
    feats = np.random.default_rng(0).standard_normal((650, 40)).astype(np.float32)  # 6.5 s at 100 frames/s
    w = make_windows(feats, 400, 100)
    assert w.shape == (3, 400, 40)
    assert np.shares_memory(w, feats)
    assert w.base is not None
    for k in range(3):
        np.testing.assert_array_equal(w[k], feats[k * 100 : k * 100 + 400])


def test_short_clip_is_zero_padded_to_one_window():
    feats = np.ones((300, 40), np.float32)
    w = make_windows(feats, 400, 100)
    assert w.shape == (1, 400, 40)
    np.testing.assert_array_equal(w[0, :300], feats)
    assert not w[0, 300:].any()


def test_make_windows_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        make_windows(np.zeros(100), 10, 5)
    with pytest.raises(ValueError, match="must be > 0"):
        make_windows(np.zeros((100, 4)), 10, 0)


def test_pad_or_crop():
    feats = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.testing.assert_array_equal(pad_or_crop(feats, 4), feats[:4])
    padded = pad_or_crop(feats, 13)
    assert padded.shape == (13, 2)
    np.testing.assert_array_equal(padded[:10], feats)
    assert not padded[10:].any()


def test_clip_inputs_per_mode():
    feat = FeatureConfig(n_mfcc=8, n_mels=8)
    feats = np.random.default_rng(1).standard_normal((250, 8)).astype(np.float32)
    windowed = clip_inputs(feats, ModelConfig(window_s=0.8, step_s=0.5), feat)
    assert windowed.shape == (4, 80, 8)  # starts 0, 50, 100, 150
    padded = clip_inputs(feats, ModelConfig(mode="padded", max_duration_s=3.0), feat)
    assert padded.shape == (1, 300, 8)
    np.testing.assert_array_equal(padded[0, :250], feats)

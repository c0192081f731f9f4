"""SpiraConv v2's CPU path computes the same function as the layer-by-layer ``convs`` stack.

The reference is ``head(convs(x))`` with channels_last conv weights, exactly how
the model ran before the CPU path existed; float64 copies of it give the
ground truth for gradients (fp32 GroupNorm sums over ~250k elements are
themselves only good to ~1e-4 relative). Every test runs twice: with the fused
C kernels (spira_lib/spiraconv_kernels.c) and with the torch code they replace.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import spira_lib.spiraconv_cpu as cpu_mod
from spira_lib import spiraconv_kernels
from spira_lib.config import ModelConfig
from spira_lib.model import SpiraConvV2, _Dropout, apply_input_norm
from spira_lib.spiraconv_cpu import _keep_mask, _mish, _mish_slope

SHAPES = [
    pytest.param(40, 400, ModelConfig(), id="default-40x400"),
    pytest.param(8, 80, ModelConfig(fc_hidden=16, dropout=0.1), id="8x80"),
    pytest.param(8, 61, ModelConfig(dropout=0.5), id="8x61-odd-pool"),
    pytest.param(5, 90, ModelConfig(input_norm="none", arch="spiraconv_v2"), id="5x90-no-norm"),
    pytest.param(5, 90, ModelConfig(input_norm="window_mean"), id="5x90-window-mean"),
]


@pytest.fixture(params=["c-kernels", "torch"], autouse=True)
def kernels(request, monkeypatch):
    """Which implementation of the CPU path runs; the C one must build here (a compiler is on this machine)."""
    spiraconv_kernels.reset()
    if request.param == "torch":
        monkeypatch.setenv("SPIRA_NATIVE_KERNELS", "0")
        assert cpu_mod._native() is None
    else:
        if spiraconv_kernels._compiler() is None:
            pytest.skip("no C compiler on PATH: only the torch path exists here")
        monkeypatch.delenv("SPIRA_NATIVE_KERNELS", raising=False)
        assert cpu_mod._native() is not None, "the C kernels did not build (see the warning logged)"
    yield request.param
    spiraconv_kernels.reset()


def _reference(model: SpiraConvV2, dtype=torch.float32) -> SpiraConvV2:
    ref = copy.deepcopy(model).to(dtype)
    ref.convs.to(memory_format=torch.channels_last)
    return ref


def _layer_by_layer(model: SpiraConvV2, x: torch.Tensor) -> torch.Tensor:
    x = apply_input_norm(x, model.input_norm)
    return model.head(model.convs(x.unsqueeze(1))).squeeze(1)


def _run(model, forward, x, y, train: bool, seed: int = 7):
    """Outputs, parameter gradients and the generator's next draw after one loss.backward()."""
    model.train(train)
    model.zero_grad()
    torch.manual_seed(seed)
    out = forward(model, x)
    nn.BCEWithLogitsLoss()(out, y).backward()
    grads = {n: p.grad.detach().double() for n, p in model.named_parameters()}
    return out.detach().double(), grads, torch.rand(1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _data(n_features: int, n_frames: int, batch: int = 6):
    g = torch.Generator().manual_seed(1)
    # MFCC-like: an offset and a spread per coefficient, so GroupNorm's statistics matter.
    x = torch.randn(batch, n_frames, n_features, generator=g) * 4 + torch.linspace(-20, 30, n_features)
    return x, (torch.rand(batch, generator=g) > 0.5).float()


@pytest.mark.parametrize("n_features, n_frames, cfg", SHAPES)
def test_eval_outputs_match_and_gradients_match_float64(n_features, n_frames, cfg):
    torch.manual_seed(0)
    model = SpiraConvV2(n_features, n_frames, cfg)
    x, y = _data(n_features, n_frames)
    out, grads, _ = _run(model, SpiraConvV2.forward, x, y, train=False)
    old, _, _ = _run(_reference(model), _layer_by_layer, x, y, train=False)
    truth, truth_grads, _ = _run(_reference(model, torch.float64), _layer_by_layer, x.double(), y.double(), train=False)
    assert (out - old).abs().max() < 1e-5
    assert (out - truth).abs().max() < 1e-5
    for name, g in grads.items():
        assert _rel(g, truth_grads[name]) < 1e-4, name


@pytest.mark.parametrize("n_features, n_frames, cfg", SHAPES)
def test_training_mode_draws_the_same_dropout_masks(n_features, n_frames, cfg):
    """Same seed -> same masks: outputs agree to float rounding and the generator ends in the same state."""
    torch.manual_seed(0)
    model = SpiraConvV2(n_features, n_frames, cfg)
    x, y = _data(n_features, n_frames)
    out, grads, next_new = _run(model, SpiraConvV2.forward, x, y, train=True)
    old, old_grads, next_old = _run(_reference(model), _layer_by_layer, x, y, train=True)
    assert (out - old).abs().max() < 1e-5
    assert torch.equal(next_new, next_old)
    for name, g in grads.items():
        assert _rel(g, old_grads[name]) < 1e-4, name


def test_input_gradients_match():
    """Gradients w.r.t. the input go through the folded first block and the conv backward too."""
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, ModelConfig(dropout=0.0)).eval()
    x, _ = _data(8, 80, batch=3)
    grads = []
    for m, fwd in ((model, SpiraConvV2.forward), (_reference(model, torch.float64), _layer_by_layer)):
        xi = x.to(next(m.parameters()).dtype).detach().requires_grad_()
        fwd(m, xi).sum().backward()
        grads.append(xi.grad.double())
    assert _rel(grads[0], grads[1]) < 1e-4


@pytest.mark.parametrize("chunk", [1_000, 1 << 30])
def test_chunking_does_not_change_the_result(monkeypatch, chunk):
    """Chunks of several samples, of a few channels, or one chunk for everything: same numbers."""
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, ModelConfig(dropout=0.3))
    x, y = _data(8, 80)
    base = _run(model, SpiraConvV2.forward, x, y, train=True)
    monkeypatch.setattr(cpu_mod, "_CHUNK", chunk)
    other = _run(model, SpiraConvV2.forward, x, y, train=True)
    assert (base[0] - other[0]).abs().max() < 1e-6
    for name in base[1]:
        assert _rel(other[1][name], base[1][name]) < 1e-5, name


def test_mish_and_its_slope_match_torch_over_the_whole_range():
    a = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([-1e4, -87.0, -20.0, 0.0, 19.99, 20.0, 20.01, 1e4])])
    ref = a.detach().double().requires_grad_()
    F.mish(ref).sum().backward()
    assert torch.allclose(_mish(a.clone()).double(), F.mish(ref).detach(), rtol=1e-6, atol=1e-7)
    assert torch.allclose(_mish_slope(a.clone()).double(), ref.grad, rtol=1e-5, atol=1e-6)


def test_keep_mask_is_the_mask__Dropout_draws_on_channels_last():
    drop = _Dropout(0.7).train()
    shape = (3, 6, 11, 5)
    torch.manual_seed(3)
    ones = torch.ones(shape).contiguous(memory_format=torch.channels_last)
    expected = drop(ones) != 0
    torch.manual_seed(3)
    keep = _keep_mask(drop, shape, training=True)
    assert keep.is_contiguous() and keep.dtype == torch.float32
    assert torch.equal(keep != 0, expected)
    assert _keep_mask(drop, shape, training=False) is None
    assert _keep_mask(_Dropout(0.0), shape, training=True) is None


def test_inference_mode_and_float64_inputs_work():
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80).eval()
    x, _ = _data(8, 80, batch=4)
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():
        assert torch.equal(model(x), expected)
    # float64 takes the layer-by-layer path (the CPU path is written for fp32).
    with torch.no_grad():
        assert torch.allclose(model.double()(x.double()), expected.double(), atol=1e-5)

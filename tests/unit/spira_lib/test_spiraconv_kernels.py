"""The fused C kernels of SpiraConv v2's CPU path: how they build, load, fall back and what they compute."""
from __future__ import annotations

import logging

import pytest
import torch
from torch.nn import functional as F

from spira_lib import spiraconv_kernels, spiraconv_native
from spira_lib.config import ModelConfig
from spira_lib.model import SpiraConvV2


# Where there is no compiler the kernels cannot exist (the torch path runs: tested below with a fake CC).
needs_cc = pytest.mark.skipif(spiraconv_kernels._compiler() is None, reason="no C compiler on PATH")


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Each test loads the kernels itself, from its own cache folder."""
    monkeypatch.setenv("SPIRA_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.delenv("SPIRA_NATIVE_KERNELS", raising=False)
    spiraconv_kernels.reset()
    yield
    spiraconv_kernels.reset()


@needs_cc
def test_builds_once_into_the_cache_and_reuses_the_build(tmp_path):
    lib = spiraconv_kernels.load()
    assert lib is not None
    built = list((tmp_path / "kernels").glob("spiraconv-*.so"))
    assert len(built) == 1 and not list((tmp_path / "kernels").glob("*.tmp"))
    stamp = built[0].stat().st_mtime_ns
    spiraconv_kernels.reset()
    assert spiraconv_kernels.load() is not None
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


@needs_cc
def test_the_build_is_keyed_by_flags_so_a_change_rebuilds(monkeypatch):
    compiler = spiraconv_kernels._compiler()
    first = spiraconv_kernels.library_path(compiler)
    monkeypatch.setattr(spiraconv_kernels, "FLAGS", spiraconv_kernels.FLAGS + ("-DSPIRA_TEST",))
    assert spiraconv_kernels.library_path(compiler) != first


@needs_cc
def test_loading_them_leaves_subnormals_alone():
    """-ffast-math would link crtfastmath.o, whose constructor flushes subnormals to zero process-wide."""
    assert spiraconv_kernels.load() is not None
    tiny = torch.tensor([1e-40])
    assert (tiny * 1.0).item() != 0.0


def test_without_a_compiler_the_torch_path_runs_and_says_why(monkeypatch, caplog):
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, ModelConfig()).eval()
    x = torch.randn(3, 80, 8)
    expected = model(x)
    spiraconv_kernels.reset()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="spira_lib.spiraconv_kernels"):
        assert spiraconv_kernels.load() is None
        out = model(x)
    assert "C kernels unavailable" in caplog.text and "/nonexistent/cc" in caplog.text
    assert torch.allclose(out, expected, atol=1e-5)


def test_switched_off_they_are_not_built(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIRA_NATIVE_KERNELS", "0")
    assert spiraconv_kernels.load() is None
    assert not (tmp_path / "kernels").exists()


@needs_cc
def test_mish_and_its_slope_in_c_match_torch_in_float64():
    """Through the tail kernel without pooling or dropout: out = mish(a), the gradient = mish'(a) g."""
    assert spiraconv_kernels.load() is not None
    a = torch.cat([torch.linspace(-100, 100, 19999), torch.tensor([-1e4, -87.5, -20.0, 0.0, 19.99, 20.0, 20.01, 1e4])])
    a = a.view(1, 1, -1, 1).requires_grad_()
    out = spiraconv_native.Tail.apply(a, None, 1.0, False)
    out.backward(torch.ones_like(out))
    ref = a.detach().double().requires_grad_()
    F.mish(ref).sum().backward()
    assert torch.allclose(out.detach().double(), F.mish(ref).detach(), rtol=1e-6, atol=1e-7)
    assert torch.allclose(a.grad.double(), ref.grad, rtol=1e-5, atol=1e-6)


@needs_cc
def test_results_do_not_depend_on_the_thread_count():
    """Each (sample, channel) plane is one thread's work from start to end: same bits at any thread count."""
    assert spiraconv_kernels.load() is not None
    torch.manual_seed(0)
    model = SpiraConvV2(20, 400, ModelConfig()).train()
    x = torch.randn(4, 400, 20)
    runs = []
    prev = torch.get_num_threads()
    for t in (1, 2):
        torch.set_num_threads(t)
        try:
            torch.manual_seed(5)
            model.zero_grad()
            out = model(x)
            out.sum().backward()
            runs.append((out.detach().clone(), model.convs[0].weight.grad.clone()))
        finally:
            torch.set_num_threads(prev)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@needs_cc
def test_a_build_failure_names_the_compiler_error(monkeypatch, tmp_path, caplog):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(spiraconv_kernels, "SOURCE", bad)
    with caplog.at_level(logging.WARNING, logger="spira_lib.spiraconv_kernels"):
        assert spiraconv_kernels.load() is None
    assert "bad.c" in caplog.text
    assert not list((tmp_path / "kernels").glob("*.so"))

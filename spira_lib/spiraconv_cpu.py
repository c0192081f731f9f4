"""SpiraConv v2's CPU path: the same function as ``SpiraConvV2.convs``, in fewer passes over memory.

Layer by layer, a training step streams every intermediate of the first block
([B, 32, 388, 40], 32 MB at batch 16) through memory a dozen times (conv,
GroupNorm, Mish and their backward passes, pool, dropout), and oneDNN's weight
gradient for (k x 1) kernels runs far below the matmul rate. Here:

* the first block's conv + GroupNorm is one GEMM with per-sample weights
  (``_first_block_weights``), so its conv output is never stored;
* Mish -> pool -> dropout runs chunk by chunk (``_CHUNK``, cache-sized), with
  Mish from a single exp, and keeps for backward only the pre-activation of the
  frame each pooled pair kept (half the size);
* the later convolutions keep oneDNN's forward and input gradient and compute
  their weight gradients as plain GEMMs per time tap (``_TimeConv``);
* activations are NCHW: GroupNorm's CPU kernels are several times faster there
  than on channels_last.

Where the fused C kernels build (spira_lib/spiraconv_kernels.py; on by default),
the first block's conv, its tail and every later tail run there, one pass per
element, and the first block's weight gradient is summed in the same pass; the
torch code below is what runs without them, and what they are tested against.

Dropout masks come from the same ``torch.rand`` calls, in the same order and
memory order, as ``model._Dropout`` on the channels_last activations of
``convs``, so a seed gives the same masks on either path.
tests/unit/spira_lib/test_model_cpu_path.py checks outputs and gradients against
the layer-by-layer stack and a float64 copy of it.

Torch, plus the C kernels through spira_lib/spiraconv_native.py. ``cpu_convs`` is the
entry point; ``spira_lib.model`` calls it.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from spira_lib import spiraconv_kernels
from spira_lib import spiraconv_native as native
from spira_lib.spiraconv_native import tail_buffers

_CHUNK = 1 << 17  # floats per chunk of the elementwise tail: 0.5 MB, fits a core's L2 cache


def _mish(a: torch.Tensor) -> torch.Tensor:
    """mish(a) = a tanh(softplus(a)), with tanh(softplus(a)) = n / (n + 2), n = e (e + 2), e = exp(a).

    One exp instead of exp + log1p + tanh. Clamping at 20 cannot change the
    result: tanh(softplus(a)) is already 1.0 in fp32 there.
    """
    e = torch.clamp(a, max=20.0).exp_()
    n = (e + 2.0).mul_(e)
    return n.div_(torch.add(n, 2.0, out=e)).mul_(a)


def _mish_slope(a: torch.Tensor) -> torch.Tensor:
    """d mish / da = t + a sigmoid(a) (1 - t^2), t = tanh(softplus(a)), from the same single exp."""
    e = torch.clamp(a, max=20.0).exp_()
    n = (e + 2.0).mul_(e)
    buf = n + 2.0
    t = n.div_(buf)
    sig = e.div_(torch.add(e, 1.0, out=buf))
    # t + sig * (a - a t^2)
    return torch.addcmul(a, a * t, t, value=-1.0, out=buf).mul_(sig).add_(t)


def _chunks(batch: int, channels: int, plane: int) -> list[tuple[slice, slice]]:
    """(samples, channels) slices covering [batch, channels] in pieces of about ``_CHUNK`` floats."""
    if channels * plane >= _CHUNK:
        step = max(1, _CHUNK // plane)
        return [(slice(b, b + 1), slice(c, c + step)) for b in range(batch) for c in range(0, channels, step)]
    step = max(1, _CHUNK // (channels * plane))
    return [(slice(b, b + step), slice(None)) for b in range(0, batch, step)]


def _keep_mask(drop, shape: tuple[int, int, int, int], training: bool) -> torch.Tensor | None:
    """``drop``'s keep mask for an NCHW activation of ``shape`` (None: no dropout).

    ``_Dropout`` draws ``rand_like`` of a channels_last tensor, i.e. fills memory
    in (B, T, F, C) order; drawing [B, T, F, C] and permuting gives the same
    value at every (b, c, t, f) from the same generator calls. The mask is 0/1
    floats in NCHW: multiplying by a bool or a permuted mask is several times
    slower, and ``contiguous()`` of a 2-D transpose is a blocked (cache-friendly) copy.
    """
    if not training or drop.p == 0.0:
        return None
    b, c, t, f = shape
    u = torch.rand(b, t * f, c)
    if _native() is not None:
        return native.keep_mask(u, drop.p, (b, c, t, f))
    return u.transpose(1, 2).contiguous().ge_(drop.p).view(b, c, t, f)


def _native():
    """The fused C kernels, or None (not built here, or switched off)."""
    return spiraconv_kernels.load()


def _tail_forward(a, keep, scale, pool, out, saved) -> None:
    """Mish -> (max-pool over pairs of frames) -> (dropout) of one chunk ``a`` [b, c, T, F] into ``out``.

    ``saved``: None, or (a_sel, sel) views that receive what backward needs.
    """
    h = _mish(a)
    if pool:
        t2 = a.shape[2] // 2
        h0, h1 = h[:, :, 0 : 2 * t2 : 2], h[:, :, 1 : 2 * t2 : 2]
        if saved is not None:
            a_sel, sel = saved
            torch.gt(h1, h0, out=sel)  # 0/1 floats; ties keep the first frame, as max_pool2d does
            # lerp is exact at weights 0 and 1, and ~10x faster than where() on CPU
            torch.lerp(a[:, :, 0 : 2 * t2 : 2], a[:, :, 1 : 2 * t2 : 2], sel, out=a_sel)
        torch.maximum(h0, h1, out=out)
    else:
        out.copy_(h)
        if saved is not None:
            saved[0].copy_(a)
    if keep is not None:
        out.mul_(keep).mul_(scale)


def _tail_backward(g, a_sel, sel, keep, scale, n_frames: int) -> torch.Tensor:
    """Gradient w.r.t. a chunk's pre-activation [b, c, n_frames, F] from its output gradient ``g``."""
    ga = _mish_slope(a_sel).mul_(g)
    if keep is not None:
        ga.mul_(keep).mul_(scale)
    if sel is None:
        return ga
    g1 = ga * sel
    ga = torch.stack((ga.sub_(g1), g1), 3).flatten(2, 3)  # back to frames 2i, 2i+1
    if n_frames % 2:  # max_pool2d drops an odd last frame: it gets no gradient
        ga = F.pad(ga, (0, 0, 0, 1))
    return ga


def _chunk_views(bs: slice, cs: slice, *tensors):
    return [None if t is None else t[bs, cs] for t in tensors]


class _MishPoolDrop(torch.autograd.Function):
    """Mish -> (max-pool over pairs of frames) -> (dropout) of ``a`` [B, C, T, F], chunk by chunk."""

    @staticmethod
    def forward(ctx, a, keep, scale, pool):
        need_grad = ctx.needs_input_grad[0]
        out, a_sel, sel = tail_buffers(a, a.shape, pool, need_grad)
        for bs, cs in _chunks(a.shape[0], a.shape[1], a.shape[2] * a.shape[3]):
            o, k, s, w = _chunk_views(bs, cs, out, keep, a_sel, sel)
            _tail_forward(a[bs, cs], k, scale, pool, o, (s, w) if need_grad else None)
        ctx.scale, ctx.n_frames = scale, a.shape[2]
        ctx.save_for_backward(a_sel, sel, keep)
        return out

    @staticmethod
    def backward(ctx, g):
        a_sel, sel, keep = ctx.saved_tensors
        b, c, _, f = g.shape
        ga = g.new_empty(b, c, ctx.n_frames, f)
        for bs, cs in _chunks(b, c, ctx.n_frames * f):
            gc, s, w, k = _chunk_views(bs, cs, g, a_sel, sel, keep)
            ga[bs, cs] = _tail_backward(gc, s, w, k, ctx.scale, ctx.n_frames)
        return ga, None, None, None


class _FirstBlock(torch.autograd.Function):
    """First block: a = w_ext[b] @ cols[b] (conv + GroupNorm), then Mish -> pool -> dropout, per chunk.

    ``a`` only ever exists one cache-sized chunk at a time. Backward returns the
    gradient of ``w_ext`` (and of ``cols`` when it needs one), chunk by chunk too.
    """

    @staticmethod
    def forward(ctx, w_ext, cols, keep, scale, pool, n_frames):
        b, c, _ = w_ext.shape
        f = cols.shape[2] // n_frames
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        out, a_sel, sel = tail_buffers(cols, (b, c, n_frames, f), pool, need_grad)
        for bs, cs in _chunks(b, c, n_frames * f):
            w_chunk = w_ext[bs, cs]
            a = torch.bmm(w_chunk, cols[bs]).view(w_chunk.shape[0], w_chunk.shape[1], n_frames, f)
            o, k, s, w = _chunk_views(bs, cs, out, keep, a_sel, sel)
            _tail_forward(a, k, scale, pool, o, (s, w) if need_grad else None)
        ctx.scale, ctx.n_frames = scale, n_frames
        ctx.save_for_backward(w_ext, cols, a_sel, sel, keep)
        return out

    @staticmethod
    def backward(ctx, g):
        w_ext, cols, a_sel, sel, keep = ctx.saved_tensors
        b, c, _, f = g.shape
        g_w = torch.empty_like(w_ext)
        g_cols = torch.zeros_like(cols) if ctx.needs_input_grad[1] else None
        for bs, cs in _chunks(b, c, ctx.n_frames * f):
            gc, s, w, k = _chunk_views(bs, cs, g, a_sel, sel, keep)
            ga = _tail_backward(gc, s, w, k, ctx.scale, ctx.n_frames).flatten(2)
            g_w[bs, cs] = torch.bmm(ga, cols[bs].transpose(1, 2))
            if g_cols is not None:
                g_cols[bs] += torch.bmm(w_ext[bs, cs].transpose(1, 2), ga)
        return g_w, g_cols, None, None, None, None


def _first_block_weights(x: torch.Tensor, conv: nn.Conv2d, norm: nn.GroupNorm, dilation: int):
    """Fold the first block's conv + GroupNorm into per-sample weights on the shifted copies of ``x``.

    With one input channel, conv channel c is z_c = w_c . X + b_c, X = the k
    time-shifted copies of x. So every channel's mean and variance over (time,
    coefficient) follow from the mean and covariance of X ([k, k] per sample),
    and GroupNorm turns into rescaling w and b per sample:
    a_c = (w_c . X + b_c - mean_g) rstd_g gamma_c + beta_c.
    Returns (w_ext [B, C, k+1], cols [B, k+1, T'F]): X with a row of ones for the bias.
    The statistics use float64: E[z^2] - E[z]^2 would lose digits in fp32.
    """
    batch, n_frames, n_feat = x.shape
    channels, _, k, _ = conv.weight.shape
    t_out = n_frames - dilation * (k - 1)
    n = t_out * n_feat
    taps = [x[:, j * dilation : j * dilation + t_out].reshape(batch, 1, n) for j in range(k)]
    cols = torch.cat(taps + [x.new_ones(batch, 1, n)], 1)
    xs = cols[:, :k].double()
    mu = xs.mean(2)
    cov = torch.bmm(xs, xs.transpose(1, 2)) / n - mu[:, :, None] * mu[:, None, :]
    w = conv.weight.reshape(channels, k).double()
    mean_c = mu @ w.t() + conv.bias.double()  # [B, C]
    var_c = ((w @ cov) * w).sum(2)  # [B, C]
    groups = norm.num_groups
    m = mean_c.view(batch, groups, -1)
    mean_g = m.mean(2, keepdim=True)
    var_g = (var_c.view(batch, groups, -1) + (m - mean_g) ** 2).mean(2, keepdim=True)
    rstd = (var_g + norm.eps).rsqrt().expand_as(m).reshape(batch, channels)
    gain = rstd * norm.weight.double()
    shift = (conv.bias.double() - mean_g.expand_as(m).reshape(batch, channels)) * gain + norm.bias.double()
    w_ext = torch.cat([w * gain[:, :, None], shift[:, :, None]], 2).to(x.dtype)
    return w_ext, cols, t_out


class _TimeConv(torch.autograd.Function):
    """``conv2d`` with a (k x 1) kernel on NCHW input; its weight gradient as GEMMs per time tap.

    oneDNN's NCHW weight gradient for these shapes runs at a fraction of the
    matmul rate. Per tap j (frames shifted by j * dilation) it is
    sum_b g[b] @ x_j[b]^T: plain GEMMs on views, ~1.6x faster here. The forward
    and the input gradient (a transposed convolution) stay oneDNN's.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, dilation):
        ctx.dilation = dilation
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, dilation=(dilation, 1))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        d = ctx.dilation
        b, c_out, t_out, f = g.shape
        g3 = g.contiguous().view(b, c_out, t_out * f)
        g_w = torch.empty_like(weight)
        for j in range(weight.shape[2]):
            tap = x[:, :, j * d : j * d + t_out].flatten(2)  # a view: [B, C_in, T'F]
            g_w[:, :, j, 0] = torch.bmm(g3, tap.transpose(1, 2)).sum(0)
        g_x = None
        if ctx.needs_input_grad[0]:
            # The input gradient is the transposed convolution of g; oneDNN's runs ~1.5x faster
            # here than a GEMM per sample and tap accumulated into shifted views.
            g_x = F.conv_transpose2d(g, weight, None, dilation=(d, 1))
        return g_x, g_w, g3.sum((0, 2)), None


def cpu_convs(x: torch.Tensor, blocks: Iterable[tuple], training: bool) -> torch.Tensor:
    """``convs(x.unsqueeze(1))`` computed the CPU way: ``[B, T, F]`` -> ``[B, C, T', F]`` (NCHW).

    ``blocks``: (conv, norm, dropout, pool?, time dilation) of each conv block, in order.
    """
    blocks = list(blocks)
    # The C first block has no gradient for x: keep the torch one for the rare caller that wants it.
    use_c = _native() is not None
    conv, norm, drop, pool, dilation = blocks[0]
    w_ext, cols, t_out = _first_block_weights(x, conv, norm, dilation)
    shape = (x.shape[0], conv.out_channels, t_out // 2 if pool else t_out, x.shape[2])
    keep = _keep_mask(drop, shape, training)
    if use_c and not x.requires_grad:
        h = native.FirstBlock.apply(w_ext, x.contiguous(), keep, 1.0 / (1.0 - drop.p), pool, dilation)
    else:
        h = _FirstBlock.apply(w_ext, cols, keep, 1.0 / (1.0 - drop.p), pool, t_out)
    tail = native.Tail if use_c else _MishPoolDrop
    for conv, norm, drop, pool, dilation in blocks[1:]:
        z = _TimeConv.apply(h, conv.weight.contiguous(), conv.bias, dilation)
        a = F.group_norm(z, norm.num_groups, norm.weight, norm.bias, norm.eps)
        b, c, t, f = a.shape
        keep = _keep_mask(drop, (b, c, t // 2 if pool else t, f), training)
        h = tail.apply(a, keep, 1.0 / (1.0 - drop.p), pool)
    return h

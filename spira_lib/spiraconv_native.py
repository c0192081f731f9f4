"""SpiraConv v2's CPU path in C: autograd functions around spira_lib/spiraconv_kernels.c.

The same functions as ``_FirstBlock``/``_MishPoolDrop`` and the keep mask of
spira_lib/spiraconv_cpu.py (which decides when these run, and is what they are
tested against), each in one C pass per direction; ``spira_lib.spiraconv_kernels``
builds and loads the library. All tensors are NCHW-contiguous float32.
"""
from __future__ import annotations

import torch

from spira_lib import spiraconv_kernels


def _lib():
    lib = spiraconv_kernels.load()
    if lib is None:
        raise RuntimeError("SpiraConv v2 C kernels are not loaded")
    return lib


def _ok(rc: int) -> None:
    if rc != 0:
        raise RuntimeError(f"SpiraConv v2 C kernel refused its arguments (code {rc})")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def tail_buffers(a_like: torch.Tensor, shape, pool: bool, need_grad: bool):
    """Output, and (when training) the pre-activation kept per pooled pair and which frame won."""
    b, c, t, f = shape
    t_out = t // 2 if pool else t
    out = a_like.new_empty(b, c, t_out, f)
    if not need_grad:
        return out, None, None
    sel = a_like.new_empty(b, c, t_out, f) if pool else None  # which frame won, as 0/1 floats
    return out, a_like.new_empty(b, c, t_out, f), sel


def keep_mask(u: torch.Tensor, p: float, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Keep mask [B, C, T, F] (0/1 floats) from uniforms drawn in channels_last order ``u`` [B, T*F, C]."""
    b, c, t, f = shape
    keep = u.new_empty(b, c, t, f)
    _ok(_lib().spira_keep_mask(u.data_ptr(), b, t * f, c, float(p), keep.data_ptr(), torch.get_num_threads()))
    return keep


class Tail(torch.autograd.Function):
    """``_MishPoolDrop`` in one C pass per direction (``spira_tail_forward`` / ``spira_tail_backward``)."""

    @staticmethod
    def forward(ctx, a, keep, scale, pool):
        a = a.contiguous()
        need_grad = ctx.needs_input_grad[0]
        out, a_sel, sel = tail_buffers(a, a.shape, pool, need_grad)
        b, c, t, f = a.shape
        _ok(_lib().spira_tail_forward(a.data_ptr(), b * c, t, f, int(pool), _ptr(keep), scale, out.data_ptr(),
                                      _ptr(a_sel), _ptr(sel), torch.get_num_threads()))
        ctx.scale, ctx.n_frames, ctx.pool = scale, t, pool
        ctx.save_for_backward(a_sel, sel, keep)
        return out

    @staticmethod
    def backward(ctx, g):
        a_sel, sel, keep = ctx.saved_tensors
        g = g.contiguous()
        b, c, _, f = g.shape
        ga = g.new_empty(b, c, ctx.n_frames, f)
        _ok(_lib().spira_tail_backward(g.data_ptr(), a_sel.data_ptr(), _ptr(sel), _ptr(keep), ctx.scale, b * c,
                                       ctx.n_frames, f, int(ctx.pool), ga.data_ptr(), torch.get_num_threads()))
        return ga, None, None, None


class FirstBlock(torch.autograd.Function):
    """``_FirstBlock`` in C: the (k x 1) conv over the one input channel, GroupNorm folded into ``w_ext``,
    and the tail in one pass; backward returns the gradient of ``w_ext`` only (``x`` needs none)."""

    @staticmethod
    def forward(ctx, w_ext, x, keep, scale, pool, dilation):
        b, t, f = x.shape
        c, k = w_ext.shape[1], w_ext.shape[2] - 1
        t_conv = t - dilation * (k - 1)
        need_grad = ctx.needs_input_grad[0]
        out, a_sel, sel = tail_buffers(x, (b, c, t_conv, f), pool, need_grad)
        _ok(_lib().spira_first_forward(x.data_ptr(), w_ext.data_ptr(), b, c, k, t, f, dilation, int(pool),
                                       _ptr(keep), scale, out.data_ptr(), _ptr(a_sel), _ptr(sel),
                                       torch.get_num_threads()))
        ctx.scale, ctx.pool, ctx.dilation = scale, pool, dilation
        ctx.save_for_backward(x, a_sel, sel, keep, w_ext)
        return out

    @staticmethod
    def backward(ctx, g):
        x, a_sel, sel, keep, w_ext = ctx.saved_tensors
        g = g.contiguous()
        b, t, f = x.shape
        c, k = w_ext.shape[1], w_ext.shape[2] - 1
        g_w = torch.empty_like(w_ext)
        _ok(_lib().spira_first_backward(g.data_ptr(), x.data_ptr(), a_sel.data_ptr(), _ptr(sel), _ptr(keep),
                                        ctx.scale, b, c, k, t, f, ctx.dilation, int(ctx.pool), g_w.data_ptr(),
                                        torch.get_num_threads()))
        return g_w, None, None, None, None, None

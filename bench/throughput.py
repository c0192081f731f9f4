"""Training and scoring throughput of the models against the CPU's own matmul peak.

    python -m bench.throughput            # ~2 min on the 2-core box
    python -m bench.throughput --quick    # a few steps, for a smoke test
    python -m bench.throughput --threads 1 --out throughput.json

For the default model (``convstats``) and SpiraConv v2 (``spiraconv_v2``):

* ``flops``: FLOPs per window of the model as defined layer by layer, counted
  by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
  multiplies, 2 FLOPs per multiply-add; forward, and forward + backward).
  GroupNorm, Mish, pooling, dropout, the loss and Adam are not counted (they
  are memory-bound and small in FLOPs), so achieved FLOP/s is the useful work rate.
* ``peak``: the best fp32 ``n x n`` matmul rate with torch, same threads, same run.
* ``train``: windows/s of a full optimizer step (dropout, GroupNorm, Mish,
  BCE-with-logits, backward, Adam with weight decay), batch 16 as in
  training, variants interleaved step by step so load from other processes
  hits all alike; a speed-up is the median of paired ratios.
  SpiraConv v2: ``before`` = the layer-by-layer ``convs`` stack with
  channels_last weights (how it ran before the CPU path), ``after`` =
  ``forward`` (spira_lib/spiraconv_cpu.py with the fused C kernels of
  spira_lib/spiraconv_kernels.c), ``torch_path`` = the same CPU path with
  torch ops only (what runs where no C compiler is). ConvStatsNet: ``before`` = the
  training step as ``training.loop`` runs it; the other entries are candidates
  measured, not adopted (see the row's notes).
* ``score``: eval windows/s; ``before`` = ``no_grad``, batch 128;
  ``after`` = ``inference_mode``, batch ``SCORE_BATCH``.

Timings on a shared machine are noisy: every figure is a median over rounds.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.common import Context, Result, bench_env
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib import spiraconv_kernels
from spira_lib.model import SpiraConvV2, apply_input_norm, build_model, window_frames

NAME = "throughput"
BATCH = 16
ARCHS = ("convstats", "spiraconv_v2")
# Eval batch of the "after" scorer: larger batches help the small default model; the
# SpiraConv v2 CPU path already works per sample in cache-sized chunks.
SCORE_BATCH = {"convstats": 512, "spiraconv_v2": 128}


def flops_per_window(model: nn.Module, n_frames: int, n_features: int, batch: int = 2) -> dict[str, float]:
    """Forward and training (forward + backward) FLOPs of one window, counted on the layer-by-layer
    definition (a float64 copy: SpiraConv v2's CPU path only runs in fp32)."""
    ref = copy.deepcopy(model).double().train()
    x = torch.randn(batch, n_frames, n_features, dtype=torch.float64)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            ref(x)
    with FlopCounterMode(display=False) as train:
        ref(x).sum().backward()
    return {"forward": fwd.get_total_flops() / batch, "train": train.get_total_flops() / batch}


def matmul_peak(n: int, repeats: int) -> float:
    """Best fp32 FLOP/s of an n x n matmul (2 n^3 FLOPs) over ``repeats`` tries."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, MKL's first-call setup
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def layer_by_layer(model: SpiraConvV2, x: torch.Tensor) -> torch.Tensor:
    """SpiraConv v2 before the CPU path: the ``convs`` Sequential, channels_last weights."""
    return model.head(model.convs(apply_input_norm(x, model.input_norm).unsqueeze(1))).squeeze(1)


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def torch_path(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The CPU path without its C kernels (the autograd functions picked here also run the backward)."""
    with spiraconv_kernels.disabled():
        return model(x)


class Stepper:
    """One training step as ``training.loop`` does it on CPU (zero_grad, loss, backward, Adam)."""

    def __init__(self, model: nn.Module, forward: Callable, x: torch.Tensor, y: torch.Tensor,
                 threads: int = 0, **adam) -> None:
        self.model, self.forward, self.x, self.y, self.threads = model.train(), forward, x, y, threads
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01, **adam)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def __call__(self) -> float:
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.loss_fn(self.forward(self.model, self.x), self.y).backward()
        self.opt.step()
        elapsed = time.perf_counter() - t0
        torch.set_num_threads(prev)
        return elapsed


def interleaved(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every fn once per round, in turn; each returns its own seconds."""
    for fn in fns.values():
        fn()  # warm-up (oneDNN primitives, allocator)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(fn())
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    return statistics.median(s / f for s, f in zip(slow, fast))


def scorer(model: nn.Module, forward: Callable, x: torch.Tensor, batch: int, mode: Callable) -> Callable[[], float]:
    def score() -> float:
        t0 = time.perf_counter()
        with mode():
            for lo in range(0, len(x), batch):
                torch.sigmoid(forward(model, x[lo : lo + batch]))
        return time.perf_counter() - t0

    return score


def _train_variants(arch: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threads: int) -> dict[str, Stepper]:
    if arch == "spiraconv_v2":
        return {"before": Stepper(copy.deepcopy(model), layer_by_layer, x, y, threads),
                "after": Stepper(copy.deepcopy(model), _forward, x, y, threads),
                "torch_path": Stepper(copy.deepcopy(model), torch_path, x, y, threads)}
    return {"before": Stepper(copy.deepcopy(model), _forward, x, y, threads),
            "fused_adam": Stepper(copy.deepcopy(model), _forward, x, y, threads, fused=True)}


def _with_threads(fn: Callable[[], float], threads: int) -> Callable[[], float]:
    def call() -> float:
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(prev)

    return call


def measure_arch(arch: str, quick: bool, threads: tuple[int, ...]) -> dict:
    """Every variant at every thread count, all interleaved in one loop."""
    feat, cfg = FeatureConfig(), ModelConfig(arch=arch)
    n_frames = window_frames(cfg, feat)
    torch.manual_seed(0)
    model = build_model(feat.n_features, n_frames, cfg)
    batch = 2 if quick else BATCH
    x = torch.randn(batch, n_frames, feat.n_features) * 4 + torch.linspace(-20, 30, feat.n_features)
    y = (torch.rand(batch) > 0.5).float()
    fast = arch == "convstats"
    steppers = {f"{k}@{t}t": v for t in threads for k, v in _train_variants(arch, model, x, y, t).items()}
    train = interleaved(steppers, 2 if quick else (10 if fast else 3))
    before_fwd = layer_by_layer if arch == "spiraconv_v2" else _forward
    xs = torch.randn(8 if quick else (512 if fast else 64), n_frames, feat.n_features)
    model.eval()
    scorers = {}
    for t in threads:
        scorers[f"before@{t}t"] = _with_threads(scorer(model, before_fwd, xs, 128, torch.no_grad), t)
        scorers[f"after@{t}t"] = _with_threads(scorer(model, _forward, xs, SCORE_BATCH[arch], torch.inference_mode), t)
    score = interleaved(scorers, 1 if quick else 3)
    flops = flops_per_window(model, n_frames, feat.n_features)
    return summarise(flops, train, score, len(xs), batch, threads)


def summarise(flops: dict, train: dict, score: dict, n_score: int, batch: int, threads: tuple[int, ...]) -> dict:
    out: dict = {"flops_per_window": flops, "batch": batch, "train": {}, "score": {}, "speedup": {}}
    for k, ts in train.items():
        s = statistics.median(ts)
        out["train"][k] = {"step_s": s, "windows_per_s": batch / s, "achieved_flops": flops["train"] * batch / s, "step_s_all": ts}
    for k, ts in score.items():
        s = statistics.median(ts)
        out["score"][k] = {"windows_per_s": n_score / s, "achieved_flops": flops["forward"] * n_score / s, "s_all": ts}
    for t in threads:
        for k in train:
            if k.endswith(f"@{t}t") and not k.startswith("before"):
                out["speedup"][f"train_{k}"] = paired_ratio(train[f"before@{t}t"], train[k])
        out["speedup"][f"score@{t}t"] = paired_ratio(score[f"before@{t}t"], score[f"after@{t}t"])
    return out


def measure(quick: bool, threads: tuple[int, ...] | None = None) -> dict:
    """Both models, at 1 thread and at torch's default thread count (the machine's cores)."""
    threads = threads or tuple(sorted({1, torch.get_num_threads()}))
    n, reps = (512, 3) if quick else (2048, 10)
    peaks = {t: _with_threads(lambda: -matmul_peak(n, reps), t)() for t in threads}
    res: dict = {"threads": list(threads), "archs": {a: measure_arch(a, quick, threads) for a in ARCHS}}
    # Measured again at the end (load changes); the better of the two is the peak.
    res["matmul_peak_flops"] = {f"{t}t": max(-peaks[t], -_with_threads(lambda: -matmul_peak(n, reps), t)()) for t in threads}
    for arch in res["archs"].values():
        for k, v in arch["train"].items():
            v["share_of_peak"] = v["achieved_flops"] / res["matmul_peak_flops"][k.split("@")[1]]
    return res


def _rows(res: dict) -> list[Result]:
    t_all = res["threads"]
    td = f"{t_all[-1]}t"  # torch's default thread count: how training runs
    peak = res["matmul_peak_flops"]
    cs, v2 = res["archs"]["convstats"], res["archs"]["spiraconv_v2"]
    g = lambda f: f"{f / 1e9:.2f} GFLOP/s"  # noqa: E731

    def at(arch: dict, kind: str, variant: str) -> str:
        parts = []
        for t in t_all:
            v = arch[kind][f"{variant}@{t}t"]
            share = f", {v['share_of_peak']:.1%} of peak" if kind == "train" else ""
            parts.append(f"{t} thread(s): {v['windows_per_s']:.1f} windows/s ({g(v['achieved_flops'])}{share})")
        return "; ".join(parts)

    cs_b = cs["train"][f"before@{td}"]
    v2_speed = v2["speedup"][f"train_after@{td}"]
    return [
        Result("throughput.matmul_peak", peak[td] / 1e9, "GFLOP/s", f"best fp32 2048^2 torch matmul at {td[:-1]} threads, same run",
               notes="the dense limit the steps are measured against; " + ", ".join(f"{k}: {v / 1e9:.1f} GFLOP/s" for k, v in peak.items())),
        Result("throughput.train_default", cs_b["windows_per_s"], "windows/s",
               f"convstats (default) training windows/s, batch 16, full Adam step, {td[:-1]} torch threads",
               notes=(f"{cs['flops_per_window']['train'] / 1e6:.1f} MFLOP/window fwd+bwd. {at(cs, 'train', 'before')}. "
                      f"Fused Adam (candidate, not adopted): " + ", ".join(
                          f"{k.split('@')[1]} {v:.2f}x" for k, v in cs["speedup"].items() if "fused" in k)),
               extra=cs),
        Result("throughput.train_spiraconv_v2", v2_speed, "x",
               f"SpiraConv v2 training step: layer-by-layer s / CPU path s (paired, same masks), {td[:-1]} threads",
               target=">= 4x", passed=v2_speed >= 4.0,
               notes=(f"{v2['flops_per_window']['train'] / 1e6:.0f} MFLOP/window. Layer by layer: {at(v2, 'train', 'before')}. "
                      f"CPU path with C kernels: {at(v2, 'train', 'after')}. Speed-up at 1 thread: "
                      f"{v2['speedup']['train_after@1t']:.2f}x. The same path in torch ops only (no C compiler): "
                      + ", ".join(f"{k.split('@')[1]} {v:.2f}x" for k, v in v2["speedup"].items() if "torch_path" in k)),
               extra=v2),
        Result("throughput.score_default", cs["score"][f"after@{td}"]["windows_per_s"], "windows/s",
               f"convstats eval windows/s: inference_mode, batch {SCORE_BATCH['convstats']}, {td[:-1]} threads",
               notes=f"{at(cs, 'score', 'after')}; vs no_grad batch 128: " + ", ".join(
                   f"{k.split('@')[1]} {v:.2f}x" for k, v in cs["speedup"].items() if k.startswith("score"))),
        Result("throughput.score_spiraconv_v2", v2["score"][f"after@{td}"]["windows_per_s"], "windows/s",
               f"SpiraConv v2 eval windows/s: CPU path, inference_mode, batch {SCORE_BATCH['spiraconv_v2']}, {td[:-1]} threads",
               notes=f"{at(v2, 'score', 'after')}; vs layer by layer, no_grad, batch 128: " + ", ".join(
                   f"{k.split('@')[1]} {v:.2f}x" for k, v in v2["speedup"].items() if k.startswith("score"))),
    ]


def run(ctx: Context) -> list[Result]:
    """``bench.run_all`` entry point."""
    return _rows(measure(ctx.quick))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps; figures are not meaningful")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    res = {"env": bench_env(), **measure(args.quick)}
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
  ``forward`` (spira_lib/spiraconv_cpu.py). ConvStatsNet: ``before`` = the
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
from spira_lib.model import SpiraConvV2, apply_input_norm, build_model, window_frames

NAME = "throughput"
BATCH = 16
ARCHS = ("convstats", "spiraconv_v2")
# Eval batch of the "after" scorer: larger batches help the small default model; the
# SpiraConv v2 CPU path already works per sample in cache-sized chunks.
SCORE_BATCH = {"convstats": 512, "spiraconv_v2": 128}


def flops_per_window(model: nn.Module, n_frames: int, n_features: int) -> dict[str, float]:
    """Forward and training (forward + backward) FLOPs of one window, counted on the layer-by-layer
    definition (a float64 copy: SpiraConv v2's CPU path only runs in fp32)."""
    ref = copy.deepcopy(model).double().train()
    x = torch.randn(BATCH, n_frames, n_features, dtype=torch.float64)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            ref(x)
    with FlopCounterMode(display=False) as train:
        ref(x).sum().backward()
    return {"forward": fwd.get_total_flops() / BATCH, "train": train.get_total_flops() / BATCH}


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


def _train_variants(arch: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Stepper]:
    if arch == "spiraconv_v2":
        return {"before": Stepper(copy.deepcopy(model), layer_by_layer, x, y), "after": Stepper(model, _forward, x, y)}
    return {
        "before": Stepper(model, _forward, x, y),
        "fused_adam": Stepper(copy.deepcopy(model), _forward, x, y, fused=True),
        "one_thread": Stepper(copy.deepcopy(model), _forward, x, y, threads=1),
    }


def measure_arch(arch: str, quick: bool) -> dict:
    feat, cfg = FeatureConfig(), ModelConfig(arch=arch)
    n_frames = window_frames(cfg, feat)
    torch.manual_seed(0)
    model = build_model(feat.n_features, n_frames, cfg)
    x = torch.randn(BATCH, n_frames, feat.n_features) * 4 + torch.linspace(-20, 30, feat.n_features)
    y = (torch.rand(BATCH) > 0.5).float()
    fast = arch == "convstats"
    rounds = 3 if quick else (30 if fast else 10)
    train = interleaved(_train_variants(arch, model, x, y), rounds)
    before_fwd = layer_by_layer if arch == "spiraconv_v2" else _forward
    xs = torch.randn(64 if quick else (2048 if fast else 384), n_frames, feat.n_features)
    model.eval()
    score = interleaved({
        "before": scorer(model, before_fwd, xs, 128, torch.no_grad),
        "after": scorer(model, _forward, xs, SCORE_BATCH[arch], torch.inference_mode),
    }, 2 if quick else 5)
    flops = flops_per_window(model, n_frames, feat.n_features)
    return summarise(flops, train, score, len(xs))


def summarise(flops: dict, train: dict, score: dict, n_score: int) -> dict:
    out: dict = {"flops_per_window": flops, "train": {}, "score": {}}
    for k, ts in train.items():
        s = statistics.median(ts)
        out["train"][k] = {"step_s": s, "windows_per_s": BATCH / s, "achieved_flops": flops["train"] * BATCH / s, "step_s_all": ts}
    out["train"]["speedup"] = {k: paired_ratio(train["before"], ts) for k, ts in train.items() if k != "before"}
    for k, ts in score.items():
        s = statistics.median(ts)
        out["score"][k] = {"windows_per_s": n_score / s, "achieved_flops": flops["forward"] * n_score / s, "s_all": ts}
    out["score"]["speedup"] = paired_ratio(score["before"], score["after"])
    return out


def measure(quick: bool) -> dict:
    peak = matmul_peak(1024 if quick else 2048, 3 if quick else 10)
    res: dict = {"archs": {a: measure_arch(a, quick) for a in ARCHS}}
    # Measured again at the end: the peak is a property of the machine *now*, and load changes.
    res["matmul_peak_flops"] = max(peak, matmul_peak(1024 if quick else 2048, 3 if quick else 10))
    for arch in res["archs"].values():
        for k, v in arch["train"].items():
            if k != "speedup":
                v["share_of_peak"] = v["achieved_flops"] / res["matmul_peak_flops"]
    return res


def _rows(res: dict) -> list[Result]:
    peak = res["matmul_peak_flops"]
    cs, v2 = res["archs"]["convstats"], res["archs"]["spiraconv_v2"]
    g = lambda f: f"{f / 1e9:.2f} GFLOP/s"  # noqa: E731
    cs_tr, v2_tr = cs["train"], v2["train"]
    cands = ", ".join(f"{k} {v:.2f}x" for k, v in cs_tr["speedup"].items())
    return [
        Result("throughput.matmul_peak", peak / 1e9, "GFLOP/s", "best fp32 2048^2 torch matmul, same threads, same run",
               notes="the machine's dense limit the training steps are measured against"),
        Result("throughput.train_default", cs_tr["before"]["windows_per_s"], "windows/s",
               "convstats (default) training windows/s, batch 16, full Adam step",
               notes=(f"{cs['flops_per_window']['train'] / 1e6:.1f} MFLOP/window fwd+bwd; {g(cs_tr['before']['achieved_flops'])} = "
                      f"{cs_tr['before']['share_of_peak']:.1%} of the matmul peak; candidates vs today (paired): {cands}"),
               extra=cs),
        Result("throughput.train_spiraconv_v2", v2_tr["speedup"]["after"], "x",
               "SpiraConv v2 training step: layer-by-layer s / CPU path s (paired, same seed and masks)",
               target=">= 4x", passed=v2_tr["speedup"]["after"] >= 4.0,
               notes=(f"{v2_tr['before']['windows_per_s']:.1f} -> {v2_tr['after']['windows_per_s']:.1f} windows/s; "
                      f"{v2['flops_per_window']['train'] / 1e6:.0f} MFLOP/window; {g(v2_tr['before']['achieved_flops'])} -> "
                      f"{g(v2_tr['after']['achieved_flops'])} = {v2_tr['before']['share_of_peak']:.1%} -> "
                      f"{v2_tr['after']['share_of_peak']:.1%} of the peak"),
               extra=v2),
        Result("throughput.score_default", cs["score"]["after"]["windows_per_s"], "windows/s",
               "convstats eval windows/s: inference_mode, batch 512",
               notes=f"no_grad batch 128: {cs['score']['before']['windows_per_s']:.0f} windows/s ({cs['score']['speedup']:.2f}x)"),
        Result("throughput.score_spiraconv_v2", v2["score"]["after"]["windows_per_s"], "windows/s",
               "SpiraConv v2 eval windows/s: CPU path, inference_mode, batch 128",
               notes=(f"layer by layer, no_grad, batch 128: {v2['score']['before']['windows_per_s']:.0f} windows/s "
                      f"({v2['score']['speedup']:.2f}x)")),
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

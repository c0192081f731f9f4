"""Benchmark 6: GPU. No GPU is lent to this benchmark run by default; record that explicitly.

Benchmark 2 takes ``--device cuda``: ``python -m bench.run_all --only training --device cuda``
measures the cached-features vs. on-the-fly epoch time on a GPU, where the
model step is cheap and data loading dominates the baseline.
"""
from __future__ import annotations

from bench.common import Context, Result

NAME = "gpu"


def run(ctx: Context) -> list[Result]:
    import torch

    available = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if available else None
    if ctx.device == "cuda":
        note = f"benchmark 2 ran on {name} (see training.epoch_speedup)."
    elif available:
        note = f"a GPU is present ({name}) but this run used --device {ctx.device}; rerun with --only training --device cuda."
    else:
        note = ("not measured: no CUDA device. Run "
                "`python -m bench.run_all --only training,throughput --device cuda` on a CUDA machine.")
    return [
        Result(
            name="gpu.training",
            value=None,
            unit="x",
            compares="benchmark 2 (epoch speedup) on CUDA",
            passed=None,
            notes=note,
            extra={"cuda_available": available, "device_name": name},
        )
    ]

"""Device choice and learning-rate schedules."""
from __future__ import annotations

import math

import torch

from spira_lib.config import TrainingConfig


def pick_device(cfg: TrainingConfig) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("config field 'training.device' is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def noam_lr(step: int, base_lr: float, warmup: int) -> float:
    """Noam schedule at optimizer step ``step`` (1-based); peaks at ``base_lr`` when ``step == warmup``."""
    if warmup <= 0:
        return base_lr
    step = max(step, 1)
    return base_lr * min(step / warmup, math.sqrt(warmup / step))


def onecycle_lr(step: int, base_lr: float, total: int, warmup: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup`` steps, then cosine annealing to ``base_lr / 1000`` at ``total``."""
    step = max(step, 1)
    if warmup > 0 and step <= warmup:
        return base_lr * step / warmup
    frac = min(1.0, (step - warmup) / max(total - warmup, 1))
    floor = base_lr / 1000.0
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * frac))


def scheduled_lr(step: int, cfg: TrainingConfig, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (1-based) under ``cfg.schedule``.

    Noam's inverse-square-root decay keeps the rate low long before the end of
    a 30-epoch run on a few hundred clips (the model was still far from
    converged); one-cycle warms up briefly, trains at a high rate and anneals
    to almost nothing by the last step.
    """
    if cfg.schedule == "onecycle":
        return onecycle_lr(step, cfg.lr, total_steps, int(round(cfg.warmup_fraction * total_steps)))
    return noam_lr(step, cfg.lr, cfg.warmup_steps)

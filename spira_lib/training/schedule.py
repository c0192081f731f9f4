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

"""Helpers shared by the tests in this folder."""
from __future__ import annotations

import numpy as np
import torch

from spira_lib.config import AugmentConfig, FeatureConfig, ModelConfig, TrainingConfig
from spira_lib.training import ArrayClipSource, ClipSource, EpochStats


# 8 features at 100 frames/s; 0.8 s windows (80 frames) with a 0.4 s step keep every test fast.
FEAT = FeatureConfig(n_mfcc=8, n_mels=8)


MODEL = ModelConfig(arch="spiraconv_v2", window_s=0.8, step_s=0.4, fc_hidden=16, dropout=0.1)


AUG = AugmentConfig()


def _train_cfg(**kw) -> TrainingConfig:
    # One thread: tiny models gain nothing from two, and a shared CI box makes OpenMP barriers slow.
    base = dict(
        epochs=6, batch_size=16, lr=5e-3, warmup_steps=3, early_stopping_patience=10, device="cpu", seed=3, threads=1,
        # SPIRA's loop (these tests pin its behaviour; the quality recipe is tested in test_quality_options.py).
        schedule="noam", restore_best=True, mixup_alpha=0.0, windows_per_clip=3,
    )
    base.update(kw)
    return TrainingConfig(**base)


def _clip(label: int, rng: np.random.Generator, frames: int | None = None, noise: float = 0.0) -> np.ndarray:
    """Class 1 has a periodic band of low-energy frames (a breathing-pause stand-in); class 0 does not."""
    t = frames or int(rng.integers(150, 260))
    x = rng.standard_normal((t, 8)).astype(np.float32)
    if label == 1:
        phase = int(rng.integers(0, 20))
        rows = (np.arange(t) + phase) % 20 < 6
        x[rows] = -3.0 + 0.1 * x[rows]
    if noise:
        x += noise * rng.standard_normal(x.shape).astype(np.float32)
    return x


def _source(n: int, seed: int, n_variants: int = 1, invert: bool = False) -> ArrayClipSource:
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(n)]
    variants = []
    for y in labels:
        clean = _clip(y, rng)
        noisy = [clean + 0.3 * rng.standard_normal(clean.shape).astype(np.float32) for _ in range(n_variants - 1)]
        variants.append([clean, *noisy])
    return ArrayClipSource(variants, [1 - y if invert else y for y in labels])


class RecordingSource:
    """ClipSource that remembers which (clip, variant) pairs were read."""

    def __init__(self, inner: ArrayClipSource) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.inner)

    def label(self, i: int) -> int:
        return self.inner.label(i)

    def n_variants(self, i: int) -> int:
        return self.inner.n_variants(i)

    def features(self, i: int, variant: int = 0) -> np.ndarray:
        self.reads.append((i, variant))
        return self.inner.features(i, variant)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _no_time(history: list[EpochStats]) -> list[tuple]:
    return [(h.epoch, h.train_loss, h.val_loss, h.val_accuracy, h.lr, h.is_best) for h in history]

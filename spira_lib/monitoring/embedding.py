"""Clip embeddings in the champion's eyes: the mean over a clip's windows of ``model.embed``.

``model.embed`` is the layer before the classifier (``SpiraConvV2.embed``;
any architecture with the same method works). Clips are windowed exactly as
for prediction (``training.windows``), so a drift test on embeddings sees the
inputs the champion scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import step_frames, window_frames
from spira_lib.training.windows import ClipLoader, index_windows, to_device


@torch.no_grad()
def clip_embeddings(
    model: nn.Module,
    feats: Sequence[np.ndarray | ClipLoader],
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    batch_size: int = 256,
) -> np.ndarray:
    """``[n_clips, D]`` float32: each clip's mean window embedding (``feats``: ``[T, F]`` arrays or loaders)."""
    n_frames = window_frames(model_cfg, feat_cfg)
    if n_frames != getattr(model, "n_frames", n_frames):
        raise ValueError(f"model was built for {model.n_frames}-frame inputs but the config gives {n_frames}")
    index = index_windows(feats, n_frames, step_frames(model_cfg, feat_cfg), model_cfg.mode, model.n_features)
    if index.n_clips == 0:
        return np.zeros((0, 0), dtype=np.float32)
    device = next(model.parameters()).device
    parts = []
    for lo in range(0, len(index.starts), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(index.starts)))
        parts.append(model.embed(to_device(index.gather(rows, n_frames), device)).float().cpu().numpy())
    windows = np.concatenate(parts).astype(np.float64)
    sums = np.zeros((index.n_clips, windows.shape[1]))
    np.add.at(sums, index.clip, windows)
    counts = np.bincount(index.clip, minlength=index.n_clips)[:, None]
    return (sums / counts).astype(np.float32)

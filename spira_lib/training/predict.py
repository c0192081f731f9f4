"""Per-clip probabilities from a trained model: the mean of its window probabilities.

Inference imports this module only, never the training loop.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import step_frames, window_frames
from spira_lib.training.sources import ArrayClipSource, ClipSource
from spira_lib.training.windows import WindowIndex, clip_loader, index_windows, to_device


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def window_probabilities(model: nn.Module, index: WindowIndex, n_frames: int, batch_size: int) -> np.ndarray:
    """Probability of class 1 for every window of the index, in index order.

    ``inference_mode`` rather than ``no_grad``: the same kernels and numbers,
    without version counters and view tracking (bench/throughput.py measures it).
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    probs = np.empty(len(index.starts), dtype=np.float64)
    try:
        for lo in range(0, len(index.starts), batch_size):
            rows = np.arange(lo, min(lo + batch_size, len(index.starts)))
            x = to_device(index.gather(rows, n_frames), device)
            probs[rows] = torch.sigmoid(model(x).float()).cpu().numpy()
    finally:
        model.train(was_training)
    return probs


def per_clip(index: WindowIndex, window_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, standard deviation, number of windows) of the window probabilities of each clip."""
    counts = np.bincount(index.clip, minlength=index.n_clips)
    sums = np.bincount(index.clip, weights=window_probs, minlength=index.n_clips)
    means = sums / np.maximum(counts, 1)
    squares = np.bincount(index.clip, weights=(window_probs - means[index.clip]) ** 2, minlength=index.n_clips)
    return means, np.sqrt(squares / np.maximum(counts, 1)), counts


def predict_index(model: nn.Module, index: WindowIndex, n_frames: int, batch_size: int) -> np.ndarray:
    """Per-clip mean of window probabilities."""
    if index.n_clips == 0:
        return np.zeros(0, dtype=np.float64)
    return per_clip(index, window_probabilities(model, index, n_frames, batch_size))[0]


def clip_index(model: nn.Module, source: ClipSource, model_cfg: ModelConfig, feat_cfg: FeatureConfig, variant: int = 0) -> WindowIndex:
    """The grid windows of every clip of ``source``, checked against the model's input length."""
    n_frames = window_frames(model_cfg, feat_cfg)
    if n_frames != model.n_frames:
        raise ValueError(
            f"model was built for {model.n_frames}-frame inputs but the config gives {n_frames} "
            f"(model.mode={model_cfg.mode!r}, window_s={model_cfg.window_s}, max_duration_s={model_cfg.max_duration_s})"
        )
    feats = [clip_loader(source, i, variant) for i in range(len(source))]
    return index_windows(feats, n_frames, step_frames(model_cfg, feat_cfg), model_cfg.mode, model.n_features)


def predict_clips(
    model: nn.Module,
    source: ClipSource,
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    batch_size: int = 128,
    variant: int = 0,
) -> np.ndarray:
    """Probability of class 1 per clip ``[len(source)]``: mean over windows (windowed) or one input (padded)."""
    index = clip_index(model, source, model_cfg, feat_cfg, variant)
    return predict_index(model, index, model.n_frames, batch_size)


def predict_arrays(
    model: nn.Module,
    feats: Sequence[np.ndarray],
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    batch_size: int = 128,
) -> np.ndarray:
    """``predict_clips`` over a plain list of ``[T, F]`` arrays."""
    source = ArrayClipSource.clean(list(feats), [0] * len(feats))
    return predict_clips(model, source, model_cfg=model_cfg, feat_cfg=feat_cfg, batch_size=batch_size)

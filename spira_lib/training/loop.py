"""The training loop (any ``model.arch``: SpiraConv v2 or ConvStatsNet).

What it implements, in SPIRA's terms:

* Each epoch every training clip contributes ONE of its variants (clean or a
  noise-augmented copy), drawn with a seeded numpy Generator, and
  ``training.windows_per_clip`` 4 s windows at random frame offsets (0 = every
  window on SPIRA's 1 s grid; padded mode: the clip padded to
  ``max_duration_s``). All windows of the epoch are shuffled together; each
  window carries its clip's label. Validation and prediction use the grid.
* Adam (L2 weight decay as in torch's ``Adam(weight_decay=...)``) under a
  one-cycle schedule (default) or SPIRA's Noam warm-up (``schedule``);
  optional mixup of windows and labels.
* Loss: BCE on logits (``BCEWithLogitsLoss``, see ``spira_lib.model``).
* Validation every epoch at FILE level, the way the model is used: the mean of
  the window probabilities of each clean validation clip is that file's
  probability; ``val_loss`` is the BCE of those, accuracy uses 0.5.
* With ``training.restore_best`` (SPIRA): early stopping on ``val_loss`` and
  the best epoch's weights restored. Without it (default) the annealed last
  epoch is kept: the loss on a few dozen eval clips is too noisy to pick by.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from spira_lib.config import AugmentConfig, FeatureConfig, ModelConfig, TrainingConfig
from spira_lib.metrics.point import roc_auc
from spira_lib.model import build_model, step_frames, window_frames
from spira_lib.training.augment import spec_augment
from spira_lib.training.predict import predict_index
from spira_lib.training.schedule import pick_device, scheduled_lr
from spira_lib.training.sources import ClipSource, source_labels
from spira_lib.training.windows import clip_loader, index_windows, prefetched, to_device


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean window-level BCE over the epoch
    val_loss: float  # file-level BCE of the averaged window probabilities
    val_accuracy: float  # file-level, threshold 0.5
    lr: float  # learning rate of the epoch's last step
    seconds: float  # wall time, validation included
    is_best: bool  # val_loss improved on every earlier epoch
    val_roc_auc: float | None = None  # file-level; None when the validation clips hold one class only


@dataclass
class TrainResult:
    model: nn.Module  # final (or, with restore_best, best epoch's) weights, eval mode, on CPU
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    device: str = "cpu"
    n_train_windows: int = 0  # windows in the first epoch


def _file_bce(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train_model(
    train: ClipSource,
    val: ClipSource,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainingConfig,
    feat_cfg: FeatureConfig,
    aug_cfg: AugmentConfig,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train the ``model_cfg.arch`` network on ``train``, validating on ``val`` every epoch; see the module docstring."""
    if len(train) == 0:
        raise ValueError("train_model: the training source has no clips")
    if len(val) == 0:
        raise ValueError("train_model: the validation source has no clips (needed for early stopping)")
    device = pick_device(train_cfg)
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if train_cfg.threads > 0:
            torch.set_num_threads(train_cfg.threads)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        # Seed before building the model: weight init, dropout and batch order
        # all follow from train_cfg.seed.
        torch.manual_seed(train_cfg.seed)
        rng = np.random.default_rng(train_cfg.seed)
        return _Trainer(train, val, model_cfg, feat_cfg, train_cfg, aug_cfg, device, rng).run(on_epoch)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)


class _Trainer:
    """One training run: the model, its optimiser and the state that carries across epochs."""

    def __init__(
        self, train: ClipSource, val: ClipSource, model_cfg: ModelConfig, feat_cfg: FeatureConfig,
        cfg: TrainingConfig, aug: AugmentConfig, device: torch.device, rng: np.random.Generator,
    ) -> None:
        self.train, self.cfg, self.aug, self.device, self.rng = train, cfg, aug, device, rng
        self.mode = model_cfg.mode
        self.n_features = feat_cfg.n_features
        self.n_frames = window_frames(model_cfg, feat_cfg)
        self.step = step_frames(model_cfg, feat_cfg)
        self.y_train = source_labels(train, "train")
        self.y_val = source_labels(val, "val")
        self.n_variants = np.array([train.n_variants(i) for i in range(len(train))], dtype=np.int64)
        if (self.n_variants < 1).any():
            raise ValueError(f"train clip {int(np.argmin(self.n_variants))}: n_variants must be >= 1")
        self.model = build_model(self.n_features, self.n_frames, model_cfg).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.use_amp = device.type == "cuda" and cfg.mixed_precision
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 does not.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # Validation always scores the clean clips: index them once.
        loaders = [clip_loader(val, i, 0) for i in range(len(val))]
        self.val_index = index_windows(loaders, self.n_frames, self.step, self.mode, self.n_features)
        self.opt_step = 0
        self.total_steps = cfg.epochs * max(1, -(-self._windows_per_epoch(train) // cfg.batch_size))
        self.lr = scheduled_lr(1, cfg, self.total_steps)

    def _windows_per_epoch(self, train: ClipSource) -> int:
        """Fixed by the crops (or the grid), so schedules that need the step count know it up front."""
        if self.mode != "padded" and self.cfg.windows_per_clip > 0:
            return len(train) * self.cfg.windows_per_clip
        loaders = [clip_loader(train, i, 0) for i in range(len(train))]
        return len(index_windows(loaders, self.n_frames, self.step, self.mode, self.n_features).starts)

    def epoch_windows(self):
        """This epoch's variant per clip and random-offset windows (consumes the rng in a fixed order)."""
        variants = (self.rng.random(len(self.train)) * self.n_variants).astype(np.int64)
        # Random-offset crops instead of the whole 1 s grid: windows 1 s apart
        # overlap by 75%, so the grid mostly repeats itself; a few crops per clip
        # at any offset cost a fraction of the steps and add time-shift variety.
        return index_windows(
            [clip_loader(self.train, i, int(v)) for i, v in enumerate(variants)], self.n_frames, self.step,
            self.mode, self.n_features, crops=self.cfg.windows_per_clip, rng=self.rng,
        )

    def train_epoch(self, index, order: np.ndarray) -> float:
        """One pass over ``order``; returns the mean window loss."""
        window_labels = self.y_train[index.clip].astype(np.float32)
        self.model.train()
        loss_sum = 0.0
        for rows, batch in prefetched(index, order, self.cfg.batch_size, self.n_frames):
            if self.aug.specaugment:
                spec_augment(batch, self.aug, self.rng)
            batch, labels = self.mixup(batch, window_labels[rows])
            loss_sum += self.train_step(to_device(batch, self.device), to_device(labels, self.device)) * len(rows)
        return loss_sum / max(len(order), 1)

    def mixup(self, batch: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convex mixes of window pairs and of their labels (Beta(alpha, alpha)); a smoother decision
        boundary than hard labels on a few hundred clips. alpha 0: unchanged."""
        alpha = self.cfg.mixup_alpha
        if alpha <= 0 or len(labels) < 2:
            return batch, labels
        lam = self.rng.beta(alpha, alpha, size=len(labels)).astype(np.float32)
        perm = self.rng.permutation(len(labels))
        mixed = lam[:, None, None] * batch + (1 - lam[:, None, None]) * batch[perm]
        return np.ascontiguousarray(mixed, dtype=np.float32), np.ascontiguousarray(lam * labels + (1 - lam) * labels[perm], dtype=np.float32)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.opt_step += 1
        self.lr = scheduled_lr(self.opt_step, self.cfg, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            loss = self.loss_fn(self.model(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def validate(self) -> tuple[float, float, float | None]:
        """File-level (val_loss, val_accuracy, val_roc_auc) on the clean validation clips."""
        p_val = predict_index(self.model, self.val_index, self.n_frames, max(self.cfg.batch_size, 128))
        y = self.y_val.astype(np.float64)
        return _file_bce(p_val, y), float(np.mean((p_val >= 0.5) == (self.y_val == 1))), roc_auc(self.y_val, p_val)

    def run(self, on_epoch: Callable[[EpochStats], None] | None) -> TrainResult:
        result = TrainResult(model=self.model, device=str(self.device))
        best_loss = math.inf
        best_state: dict[str, torch.Tensor] | None = None
        for epoch in range(1, self.cfg.epochs + 1):
            t0 = time.perf_counter()
            index = self.epoch_windows()
            if epoch == 1:
                result.n_train_windows = len(index.starts)
            train_loss = self.train_epoch(index, self.rng.permutation(len(index.starts)))
            val_loss, val_acc, val_auc = self.validate()
            is_best = val_loss < best_loss
            if is_best:
                best_loss, result.best_epoch = val_loss, epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            stats = EpochStats(epoch, train_loss, val_loss, val_acc, self.lr, time.perf_counter() - t0, is_best, val_auc)
            result.history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            # Without restore_best the schedule decides where training ends.
            if self.cfg.restore_best and epoch - result.best_epoch >= self.cfg.early_stopping_patience and epoch < self.cfg.epochs:
                result.stopped_early = True
                break
        result.model = self.model.cpu()
        if best_state is not None and self.cfg.restore_best:
            result.model.load_state_dict(best_state)
        result.model.eval()
        return result

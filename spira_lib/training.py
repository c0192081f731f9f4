"""Training loop for SpiraConv v2, and per-clip prediction.

What it implements, in SPIRA's terms:

* Each epoch every training clip contributes ONE of its variants (clean or a
  noise-augmented copy), drawn with a seeded numpy Generator, and
  ``training.windows_per_clip`` 4 s windows at random frame offsets (0 = every
  window on SPIRA's 1 s grid; padded mode: the clip padded to
  ``max_duration_s``). All windows of the epoch are shuffled together; each
  window carries its clip's label. Validation and prediction use the grid.
* Adam (lr 1e-3, L2 weight decay 0.01 as in torch's ``Adam(weight_decay=...)``)
  with Noam warm-up: ``lr_t = lr * min(t / warmup, sqrt(warmup / t))`` for
  optimizer step ``t >= 1`` - a linear ramp to ``lr`` at ``t = warmup``, then
  inverse-square-root decay. ``warmup = 0`` means a constant ``lr``.
* Loss: BCE on logits (``BCEWithLogitsLoss``, see ``spira_lib.model``).
* Validation every epoch at FILE level, the way the model is used: the mean of
  the window probabilities of each clean validation clip is that file's
  probability; ``val_loss`` is the BCE of those, accuracy uses 0.5.
* Early stopping on ``val_loss``; the best epoch's weights are restored.

Memory and speed: windows are described by (clip, start) index arrays; a
batch is gathered from the clips' own (memory-mapped) arrays, one batch ahead
on a background thread, so memory and open files stay flat with dataset size
and reading overlaps with the model step.
"""
from __future__ import annotations

import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from spira_lib.config import AugmentConfig, FeatureConfig, ModelConfig, TrainingConfig
from spira_lib.model import SpiraConvV2, n_windows, pad_or_crop, step_frames, window_frames


# --------------------------------------------------------------------------- sources


@runtime_checkable
class ClipSource(Protocol):
    """Per-clip features, indexed 0..len-1. Variant 0 is the clean clip; 1.. are noisy copies."""

    def __len__(self) -> int: ...

    def label(self, i: int) -> int: ...

    def n_variants(self, i: int) -> int: ...

    def features(self, i: int, variant: int = 0) -> np.ndarray: ...


class ArrayClipSource:
    """In-memory ClipSource: ``variants[i][v]`` is clip i's variant v as ``[T, F]``."""

    def __init__(self, variants: Sequence[Sequence[np.ndarray]], labels: Sequence[int]) -> None:
        if len(variants) != len(labels):
            raise ValueError(f"ArrayClipSource: {len(variants)} clips but {len(labels)} labels")
        for i, vs in enumerate(variants):
            if len(vs) == 0:
                raise ValueError(f"ArrayClipSource: clip {i} has no variants (variant 0 must be the clean clip)")
        self._variants = [list(vs) for vs in variants]
        self._labels = [int(y) for y in labels]

    @classmethod
    def clean(cls, features: Sequence[np.ndarray], labels: Sequence[int]) -> "ArrayClipSource":
        """One variant (the clean clip) per clip."""
        return cls([[f] for f in features], labels)

    def __len__(self) -> int:
        return len(self._labels)

    def label(self, i: int) -> int:
        return self._labels[i]

    def n_variants(self, i: int) -> int:
        return len(self._variants[i])

    def features(self, i: int, variant: int = 0) -> np.ndarray:
        try:
            return self._variants[i][variant]
        except IndexError:
            raise IndexError(
                f"ArrayClipSource: clip {i} has {self.n_variants(i)} variants, asked for variant {variant}"
            ) from None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean window-level BCE over the epoch
    val_loss: float  # file-level BCE of the averaged window probabilities
    val_accuracy: float  # file-level, threshold 0.5
    lr: float  # learning rate of the epoch's last step
    seconds: float  # wall time, validation included
    is_best: bool  # val_loss improved on every earlier epoch


@dataclass
class TrainResult:
    model: SpiraConvV2  # best epoch's weights, eval mode, on CPU
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    device: str = "cpu"
    n_train_windows: int = 0  # windows in the first epoch


# --------------------------------------------------------------------------- helpers


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


ClipLoader = Callable[[], np.ndarray]


@dataclass
class _WindowIndex:
    """Windows of a set of clips: (clip, start) pairs, read per batch.

    A clip is held as a loader (re-opened for each batch that needs it) or, for
    short clips that had to be padded, as a small array. Nothing from the
    feature store stays open between batches: memory and open files stay flat
    however many clips a dataset has (a memory map holds a file descriptor).
    """

    clips: list[np.ndarray | ClipLoader]
    starts: np.ndarray  # [N] int64: first frame of each window within its clip
    clip: np.ndarray  # [N] int64: which clip (position in the input list) each window belongs to
    n_clips: int
    n_features: int

    def gather(self, rows: np.ndarray, n_frames: int) -> np.ndarray:
        """Windows ``rows`` as a fresh ``[len(rows), n_frames, F]`` array (each clip opened once)."""
        out = np.empty((len(rows), n_frames, self.n_features), dtype=np.float32)
        by_clip: dict[int, list[int]] = {}
        for j, r in enumerate(rows):
            by_clip.setdefault(int(self.clip[r]), []).append(j)
        for c, js in by_clip.items():
            held = self.clips[c]
            arr = held() if callable(held) else held
            for j in js:
                s = int(self.starts[rows[j]])
                out[j] = arr[s : s + n_frames]
            del arr  # closes a memory map before the next clip is opened
        return out


def _loader(source: "ClipSource", i: int, variant: int) -> ClipLoader:
    return functools.partial(source.features, i, variant)


def _index_windows(
    feats: Sequence[np.ndarray | ClipLoader],
    n_frames: int,
    step: int,
    mode: str,
    n_features: int,
    *,
    crops: int = 0,
    rng: np.random.Generator | None = None,
) -> _WindowIndex:
    """Index the windows of ``feats`` (arrays, or loaders returning arrays): every
    window on the ``step`` grid, or, with ``crops > 0`` (training only), that many
    windows per clip at random frame offsets."""
    kept: list[np.ndarray | ClipLoader] = []
    starts: list[np.ndarray] = []
    clips: list[np.ndarray] = []
    for i, item in enumerate(feats):
        f = np.asarray(item() if callable(item) else item)
        if f.ndim != 2 or f.shape[1] != n_features:
            raise ValueError(f"clip {i}: features must be [frames, {n_features}], got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"clip {i}: features contain NaN or infinite values")
        length = f.shape[0]
        if mode == "padded" or length < n_frames:
            # Short clips get zero-padded into one window instead of crashing.
            kept.append(pad_or_crop(f.astype(np.float32, copy=False), n_frames))
            length = n_frames
        elif callable(item):
            kept.append(item)
        else:
            kept.append(f if f.dtype == np.float32 else f.astype(np.float32))
        del f
        if mode != "padded" and crops > 0 and rng is not None:
            k = crops
            starts.append(rng.integers(0, length - n_frames + 1, size=k).astype(np.int64))
        else:
            k = 1 if mode == "padded" else n_windows(length, n_frames, step)
            starts.append(np.arange(k, dtype=np.int64) * step)
        clips.append(np.full(k, i, dtype=np.int64))
    if not kept:
        return _WindowIndex([], np.zeros(0, np.int64), np.zeros(0, np.int64), 0, n_features)
    return _WindowIndex(kept, np.concatenate(starts), np.concatenate(clips), len(kept), n_features)


def _prefetched(index: _WindowIndex, order: np.ndarray, batch_size: int, n_frames: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (rows, windows) batches in ``order``, gathering the next batch on a
    background thread while the current one trains.

    Reading windows (memory maps, possibly cold pages) overlaps with the model
    step, which is what keeps a GPU fed; batches and their order are exactly
    those of a plain loop, so results do not change.
    """
    chunks = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spira-prefetch") as pool:
        pending = pool.submit(index.gather, chunks[0], n_frames)
        for k, rows in enumerate(chunks):
            batch = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(index.gather, chunks[k + 1], n_frames)
            yield rows, batch


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(batch)
    if device.type == "cuda":
        # Pinned memory lets the host->GPU copy run asynchronously with compute.
        return t.pin_memory().to(device, non_blocking=True)
    return t


def _spec_augment(batch: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> None:
    """In place: one time mask and one frequency mask per window, widths uniform in [0, max]."""
    b, t, f = batch.shape
    if aug.time_mask_frames > 0:
        w = rng.integers(0, min(aug.time_mask_frames, t) + 1, size=b)
        s = rng.integers(0, t - w + 1)
        pos = np.arange(t)[None, :]
        batch[(pos >= s[:, None]) & (pos < (s + w)[:, None])] = 0.0
    if aug.freq_mask_bins > 0:
        w = rng.integers(0, min(aug.freq_mask_bins, f) + 1, size=b)
        s = rng.integers(0, f - w + 1)
        pos = np.arange(f)[None, :]
        mask = (pos >= s[:, None]) & (pos < (s + w)[:, None])  # [b, f]
        batch *= ~mask[:, None, :]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _predict_index(model: SpiraConvV2, index: _WindowIndex, n_frames: int, batch_size: int) -> np.ndarray:
    """Per-clip mean of window probabilities."""
    if index.n_clips == 0:
        return np.zeros(0, dtype=np.float64)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    probs = np.empty(len(index.starts), dtype=np.float64)
    try:
        for lo in range(0, len(index.starts), batch_size):
            rows = np.arange(lo, min(lo + batch_size, len(index.starts)))
            x = _to_device(index.gather(rows, n_frames), device)
            probs[rows] = torch.sigmoid(model(x).float()).cpu().numpy()
    finally:
        model.train(was_training)
    sums = np.bincount(index.clip, weights=probs, minlength=index.n_clips)
    counts = np.bincount(index.clip, minlength=index.n_clips)
    return sums / counts


def _file_bce(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _labels(source: ClipSource, name: str) -> np.ndarray:
    y = np.array([source.label(i) for i in range(len(source))], dtype=np.int64)
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"{name} clip {int(bad[0])}: label must be 0 or 1, got {int(y[bad[0]])}")
    return y


# --------------------------------------------------------------------------- prediction


def predict_clips(
    model: SpiraConvV2,
    source: ClipSource,
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    batch_size: int = 128,
    variant: int = 0,
) -> np.ndarray:
    """Probability of class 1 per clip ``[len(source)]``: mean over windows (windowed) or one input (padded)."""
    n_frames = window_frames(model_cfg, feat_cfg)
    if n_frames != model.n_frames:
        raise ValueError(
            f"model was built for {model.n_frames}-frame inputs but the config gives {n_frames} "
            f"(model.mode={model_cfg.mode!r}, window_s={model_cfg.window_s}, max_duration_s={model_cfg.max_duration_s})"
        )
    feats = [_loader(source, i, variant) for i in range(len(source))]
    index = _index_windows(feats, n_frames, step_frames(model_cfg, feat_cfg), model_cfg.mode, model.n_features)
    return _predict_index(model, index, n_frames, batch_size)


def predict_arrays(
    model: SpiraConvV2,
    feats: Sequence[np.ndarray],
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    batch_size: int = 128,
) -> np.ndarray:
    """``predict_clips`` over a plain list of ``[T, F]`` arrays."""
    source = ArrayClipSource.clean(list(feats), [0] * len(feats))
    return predict_clips(model, source, model_cfg=model_cfg, feat_cfg=feat_cfg, batch_size=batch_size)


# --------------------------------------------------------------------------- training


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
    """Train SpiraConv v2 on ``train`` with file-level early stopping on ``val``; see the module docstring."""
    if len(train) == 0:
        raise ValueError("train_model: the training source has no clips")
    if len(val) == 0:
        raise ValueError("train_model: the validation source has no clips (needed for early stopping)")
    n_features = feat_cfg.n_features
    n_frames = window_frames(model_cfg, feat_cfg)
    step = step_frames(model_cfg, feat_cfg)
    y_train = _labels(train, "train")
    y_val = _labels(val, "val")
    n_variants = np.array([train.n_variants(i) for i in range(len(train))], dtype=np.int64)
    if (n_variants < 1).any():
        raise ValueError(f"train clip {int(np.argmin(n_variants))}: n_variants must be >= 1")

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
        return _train(
            train, val, y_train, y_val, n_variants, n_features, n_frames, step,
            model_cfg, train_cfg, aug_cfg, device, rng, on_epoch,
        )
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)


def _train(
    train: ClipSource,
    val: ClipSource,
    y_train: np.ndarray,
    y_val: np.ndarray,
    n_variants: np.ndarray,
    n_features: int,
    n_frames: int,
    step: int,
    model_cfg: ModelConfig,
    cfg: TrainingConfig,
    aug: AugmentConfig,
    device: torch.device,
    rng: np.random.Generator,
    on_epoch: Callable[[EpochStats], None] | None,
) -> TrainResult:
    model = SpiraConvV2(n_features, n_frames, model_cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()

    use_amp = device.type == "cuda" and cfg.mixed_precision
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 does not.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # Validation always scores the clean clips: index them once.
    val_index = _index_windows([_loader(val, i, 0) for i in range(len(val))], n_frames, step, model_cfg.mode, n_features)
    y_val_f = y_val.astype(np.float64)

    history: list[EpochStats] = []
    best_loss = math.inf
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early = False
    n_train_windows = 0
    opt_step = 0
    lr = noam_lr(1, cfg.lr, cfg.warmup_steps)

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        variants = (rng.random(len(train)) * n_variants).astype(np.int64)
        # Random-offset crops instead of the whole 1 s grid: windows 1 s apart
        # overlap by 75%, so the grid mostly repeats itself; a few crops per clip
        # at any offset cost a fraction of the steps and add time-shift variety.
        index = _index_windows(
            [_loader(train, i, int(v)) for i, v in enumerate(variants)], n_frames, step, model_cfg.mode, n_features,
            crops=cfg.windows_per_clip, rng=rng,
        )
        window_labels = y_train[index.clip].astype(np.float32)
        if epoch == 1:
            n_train_windows = len(index.starts)
        order = rng.permutation(len(index.starts))

        model.train()
        loss_sum = 0.0
        for rows, batch in _prefetched(index, order, cfg.batch_size, n_frames):
            if aug.specaugment:
                _spec_augment(batch, aug, rng)
            x = _to_device(batch, device)
            y = _to_device(window_labels[rows], device)

            opt_step += 1
            lr = noam_lr(opt_step, cfg.lr, cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr

            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(rows)

        p_val = _predict_index(model, val_index, n_frames, max(cfg.batch_size, 128))
        val_loss = _file_bce(p_val, y_val_f)
        val_acc = float(np.mean((p_val >= 0.5) == (y_val == 1)))
        is_best = val_loss < best_loss
        if is_best:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        stats = EpochStats(
            epoch=epoch,
            train_loss=loss_sum / max(len(order), 1),
            val_loss=val_loss,
            val_accuracy=val_acc,
            lr=lr,
            seconds=time.perf_counter() - t0,
            is_best=is_best,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if epoch - best_epoch >= cfg.early_stopping_patience and epoch < cfg.epochs:
            stopped_early = True
            break

    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        device=str(device),
        n_train_windows=n_train_windows,
    )

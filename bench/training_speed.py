"""Benchmark 2: epoch time with cached features (ours) vs. SPIRA's on-the-fly data loading.

Ours: ``train_model`` over ``StoreClipSource`` (features computed once by
``features_step``, memory-mapped from the feature store).
Baseline (SPIRA's original approach, re-implemented here): a torch
``Dataset`` whose ``__getitem__`` reads the audio, decodes/resamples it,
preprocesses it, mixes ward noise and computes the MFCC, every epoch; the
validation clips are recomputed every epoch too.

Both use the same model (``model.arch``, built right after the same seed),
optimiser, schedule (``scheduled_lr`` over the same number of steps), mixup,
seed, windows per clip, batch size (16 windows), clips and device; both gather
the next batch on a background thread while the current one trains, and both
validate with batched forward passes over all windows of the clean validation
clips. The only difference is cached features vs on-the-fly decoding, noise
(``augment_wave``: ward noise and the recording-chain augmentation) and MFCC.
Both are scored on the same cached clean test features. Noise draws differ
(fresh per epoch vs. fixed precomputed copies), so the metrics are close, not
identical.
"""
from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.common import Context, Result, check, demo_dataset
from spira_lib.audio import decode_audio, preprocess
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.data_steps import features_step, snapshot_step, split_step, validate_step
from spira_lib.config import SpiraConfig, build_config
from spira_lib.feature_store import StoreClipSource, VariantPlan
from spira_lib.noise import NoiseBank
from spira_lib.features import FeatureExtractor
from spira_lib.metrics import binary_metrics
from spira_lib.model import build_model, make_windows, pad_or_crop, step_frames, window_frames
from spira_lib.noise import augment_wave
from spira_lib.ports import ObjectStore
from spira_lib.training import pick_device, predict_clips, train_model
from spira_lib.training.schedule import scheduled_lr

NAME = "training"
TARGET_SPEEDUP = 3.0


class OnTheFlyClips(Dataset):
    """SPIRA-style dataset: every item decodes the recording and computes its MFCC anew.

    Training items: with probability ``copies/(copies+1)`` ward noise is mixed in
    at a fresh random SNR, then ``crops`` windows at random offsets are returned.
    Evaluation items: every window on the step grid, no noise.
    """

    def __init__(
        self,
        data: ObjectStore,
        keys: Sequence[str],
        labels: Sequence[int],
        cfg: SpiraConfig,
        noise: NoiseBank,
        *,
        train: bool,
        seed: int,
    ) -> None:
        self.data = data
        self.keys = list(keys)
        self.labels = [int(y) for y in labels]
        self.cfg = cfg
        self.noise = noise
        self.train = train
        self.extractor = FeatureExtractor(cfg.features)
        self.n_frames = window_frames(cfg.model, cfg.features)
        self.step = step_frames(cfg.model, cfg.features)
        self.copies = cfg.augment.noisy_copies if len(noise) else 0
        self.aug_noise = VariantPlan.build(cfg.augment, cfg.evaluation, noise).noise_parts(noise)[0]
        self.crops = max(1, cfg.training.windows_per_clip)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sr = self.cfg.audio.sample_rate
        wave, _ = decode_audio(self.data.get(self.keys[i]), target_sr=sr, name=self.keys[i])
        wave = preprocess(wave, sr)
        if self.train and self.copies and self.rng.integers(0, self.copies + 1) > 0:
            wave = augment_wave(wave, sr, self.rng, self.cfg.augment, self.aug_noise)
        feats = self.extractor(wave)
        if feats.shape[0] < self.n_frames:
            feats = pad_or_crop(feats, self.n_frames)
        if self.train:
            starts = self.rng.integers(0, feats.shape[0] - self.n_frames + 1, size=self.crops)
            windows = np.stack([feats[s : s + self.n_frames] for s in starts])
        else:
            windows = make_windows(feats, self.n_frames, self.step).copy()  # the view is read-only
        return torch.from_numpy(windows), self.labels[i]


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([w for w, _ in items])
    y = torch.cat([torch.full((len(w),), float(label)) for w, label in items])
    return x, y


@torch.no_grad()
def _predict_dataset(model: nn.Module, ds: OnTheFlyClips, device: torch.device, batch: int) -> np.ndarray:
    """Per-clip mean window probability: every clip's windows computed, then batched forwards (as ours)."""
    model.eval()
    windows = [ds[i][0] for i in range(len(ds))]
    clip = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    x = torch.cat(windows)
    probs = np.concatenate([torch.sigmoid(model(x[lo : lo + batch].to(device)).float()).cpu().numpy()
                            for lo in range(0, len(x), batch)])
    model.train()
    return np.bincount(clip, weights=probs, minlength=len(ds)) / np.bincount(clip, minlength=len(ds))


def _prefetch(loader: DataLoader) -> Iterator:
    """The loader's batches, the next one prepared on a background thread while the current one trains."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="baseline-prefetch") as pool:
        it = iter(loader)
        pending = pool.submit(next, it, None)
        while True:
            item = pending.result()
            if item is None:
                return
            pending = pool.submit(next, it, None)
            yield item


class BaselineTrainer:
    """SPIRA-style loop, one epoch per call, so its epochs can be interleaved with ours.

    Same model, Adam + weight decay, LR schedule, mixup, BCE-with-logits, AMP
    policy and seed as ``spira_lib.training``; built right after
    ``torch.manual_seed`` so its initial weights equal ours.
    """

    def __init__(self, train_ds: OnTheFlyClips, val_ds: OnTheFlyClips, cfg: SpiraConfig, device: torch.device) -> None:
        tc = cfg.training
        self.cfg, self.device, self.val_ds = cfg, device, val_ds
        torch.manual_seed(tc.seed)
        self.model = build_model(cfg.features.n_features, train_ds.n_frames, cfg.model).to(device)
        self.rng = np.random.default_rng(tc.seed + 1)  # mixup draws
        self.total_steps = tc.epochs * max(1, -(-len(train_ds) * train_ds.crops // tc.batch_size))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.use_amp = device.type == "cuda" and tc.mixed_precision
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # Clips per batch such that a batch holds about batch_size windows, like ours.
        self.loader = DataLoader(
            train_ds,
            batch_size=max(1, tc.batch_size // train_ds.crops),
            shuffle=True,
            num_workers=tc.num_workers,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(tc.seed),
        )
        self.steps = 0
        self.data_seconds = 0.0  # waiting for the DataLoader (decode + noise + MFCC), training part only
        self.seconds: list[float] = []
        self.val_losses: list[float] = []
        self.val_probs: list[np.ndarray] = []  # per-clip validation probabilities after each epoch

    def epoch(self) -> float:
        """Train one epoch and validate (recomputing the validation features); returns wall seconds."""
        tc = self.cfg.training
        t0 = time.perf_counter()
        self.model.train()
        batches = _prefetch(self.loader)
        while True:
            t_data = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            self.data_seconds += time.perf_counter() - t_data
            self.steps += 1
            for g in self.opt.param_groups:
                g["lr"] = scheduled_lr(self.steps, tc, self.total_steps)
            x, y = self._mixup(x, y)
            x, y = x.to(self.device), y.to(self.device)
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                loss = self.loss_fn(self.model(x), y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        y_val = np.asarray(self.val_ds.labels, dtype=np.float64)
        self.val_probs.append(_predict_dataset(self.model, self.val_ds, self.device, max(tc.batch_size, 128)))
        p = np.clip(self.val_probs[-1], 1e-7, 1 - 1e-7)
        self.val_losses.append(float(-np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p))))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - t0)
        return self.seconds[-1]


    def _mixup(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same mixup as ``training.loop`` (Beta(alpha, alpha) mixes of window pairs and labels)."""
        alpha = self.cfg.training.mixup_alpha
        if alpha <= 0 or len(y) < 2:
            return x, y
        lam = torch.from_numpy(self.rng.beta(alpha, alpha, size=len(y)).astype(np.float32))
        perm = torch.from_numpy(self.rng.permutation(len(y)))
        return lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm], lam * y + (1 - lam) * y[perm]


def _warm_up(cfg: SpiraConfig, device: torch.device) -> None:
    """One forward/backward pass so first-call costs (oneDNN kernels, allocator) hit neither side."""
    model = build_model(cfg.features.n_features, window_frames(cfg.model, cfg.features), cfg.model).to(device)
    x = torch.zeros(cfg.training.batch_size, model.n_frames, model.n_features, device=device)
    model(x).sum().backward()


def _metrics(model: nn.Module, test: StoreClipSource, cfg: SpiraConfig) -> dict:
    probs = predict_clips(model, test, model_cfg=cfg.model, feat_cfg=cfg.features)
    m = binary_metrics(test.labels, probs)
    return {"roc_auc": m["roc_auc"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}


def run(ctx: Context) -> list[Result]:
    speakers = ctx.size(48, 12)
    epochs = ctx.size(2, 1)
    overrides = {
        "training.epochs": epochs,
        "training.device": ctx.device,
        # Both loops run every epoch; no early stop may cut one of them short.
        "training.early_stopping_patience": epochs + 1,
        "validation.min_clips": 10,
        "validation.min_clips_per_class": 3,
    }
    cfg = build_config(overrides=overrides)
    device = pick_device(cfg.training)
    with ctx.tempdir("bench-training") as tmp:
        ctx.say(f"[training] generating {speakers} demo clips")
        demo_dataset(tmp / "data", speakers, seed=31)
        spec = RunSpec(data_uri=str(tmp / "data"), registry_uri=str(tmp / "registry"), config=cfg)
        ws = spec.workspace()
        split = split_step(spec, validate_step(spec, snapshot_step(spec)))
        t0 = time.perf_counter()
        feats = features_step(spec, split)
        feature_s = time.perf_counter() - t0
        df = pl.read_parquet(io.BytesIO(ws.store.get(split.split_key)))
        noise = ws.noise_bank(cfg.audio.sample_rate)
        plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
        ekey = feats.extractor_key

        def part(name: str) -> pl.DataFrame:
            return df.filter(pl.col("split") == name)

        def source(name: str, augmented: bool = False) -> StoreClipSource:
            sub = part(name)
            return StoreClipSource(ws.features, ekey, sub["sha256"].to_list(), sub["label"].to_list(), plan, augmented=augmented)

        train_src, eval_src, test_src = source("train", True), source("eval"), source("test")
        tr, ev = part("train"), part("eval")
        train_ds = OnTheFlyClips(ws.data, tr["key"].to_list(), tr["label"].to_list(), cfg, noise, train=True, seed=cfg.training.seed)
        val_ds = OnTheFlyClips(ws.data, ev["key"].to_list(), ev["label"].to_list(), cfg, noise, train=False, seed=0)
        baseline = BaselineTrainer(train_ds, val_ds, cfg, device)
        _warm_up(cfg, device)

        # Interleaved epochs (ours 1, baseline 1, ours 2, ...): load from other
        # processes on a shared machine then hits both sides alike.
        ctx.say(f"[training] {len(train_src)} train clips, {epochs} epoch(s) each on {device}, interleaved")
        ours = train_model(
            train_src, eval_src, model_cfg=cfg.model, train_cfg=cfg.training, feat_cfg=cfg.features, aug_cfg=cfg.augment,
            on_epoch=lambda _stats: baseline.epoch(),
        )
        ours_s = [h.seconds for h in ours.history]
        base_s = list(baseline.seconds)
        m_ours, m_base = _metrics(ours.model, test_src, cfg), _metrics(baseline.model.cpu().eval(), test_src, cfg)

    paired = [b / o for o, b in zip(ours_s, base_s) if o > 0]
    speedup = float(np.median(paired)) if paired else None
    mean_ours, mean_base = float(np.mean(ours_s)), float(np.mean(base_s))
    data_share = baseline.data_seconds / max(sum(base_s), 1e-9)
    gain = mean_base - mean_ours
    break_even = f"{feature_s / gain:.1f} epoch(s)" if gain > 0 else "never (ours is not faster here)"
    fmt = lambda m: ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} n/a" for k, v in m.items())  # noqa: E731
    notes = (
        f"{len(train_src)} train / {len(eval_src)} eval / {len(test_src)} test clips, {epochs} epoch(s), "
        f"batch {cfg.training.batch_size}, {cfg.training.windows_per_clip} crops/clip, {cfg.augment.noisy_copies} noisy copies, "
        f"device {device}. Epoch s ours {[round(s, 2) for s in ours_s]} vs baseline {[round(s, 2) for s in base_s]}. "
        f"One-off feature extraction for ours: {feature_s:.1f} s ({feats.computed} arrays), "
        f"break-even after {break_even}. Baseline spent {data_share:.0%} of its epoch time waiting for the "
        f"DataLoader (the rest, model steps + validation, is what caching cannot remove). "
        f"Test (same cached clean features): ours {fmt(m_ours)}; baseline {fmt(m_base)} "
        f"(noise draws differ, so not bit-identical; {len(test_src)} test clips make these coarse)."
    )
    return [
        Result(
            name="training.epoch_speedup",
            value=speedup,
            unit="x",
            compares="baseline epoch s (on-the-fly decode+noise+MFCC) / ours epoch s (cached features)",
            target=f">= {TARGET_SPEEDUP:g}x",
            passed=check(speedup, minimum=TARGET_SPEEDUP),
            notes=notes,
            extra={
                "ours_epoch_s": ours_s,
                "baseline_epoch_s": base_s,
                "paired_ratios": paired,
                "baseline_loader_share": data_share,
                "feature_extraction_s": feature_s,
                "ours_test": m_ours,
                "baseline_test": m_base,
                "device": str(device),
            },
        ),
        Result(
            name="training.test_auc_diff",
            value=(m_ours["roc_auc"] - m_base["roc_auc"]) if m_ours["roc_auc"] is not None and m_base["roc_auc"] is not None else None,
            unit="AUC",
            compares="test ROC-AUC ours - baseline (same test clips)",
            notes=f"ours {fmt(m_ours)}; baseline {fmt(m_base)}",
        ),
    ]

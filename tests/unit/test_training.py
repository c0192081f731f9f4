"""Training loop: learning, determinism, early stopping, file-level prediction."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spira_lib.config import AugmentConfig, FeatureConfig, ModelConfig, TrainingConfig
from spira_lib.model import SpiraConvV2, n_windows, pad_or_crop
from spira_lib.training import (
    ArrayClipSource,
    ClipSource,
    EpochStats,
    _spec_augment,
    noam_lr,
    pick_device,
    predict_arrays,
    predict_clips,
    train_model,
)

# 8 features at 100 frames/s; 0.8 s windows (80 frames) with a 0.4 s step keep every test fast.
FEAT = FeatureConfig(n_mfcc=8, n_mels=8)
MODEL = ModelConfig(window_s=0.8, step_s=0.4, fc_hidden=16, dropout=0.1)
AUG = AugmentConfig()


def _train_cfg(**kw) -> TrainingConfig:
    # One thread: tiny models gain nothing from two, and a shared CI box makes OpenMP barriers slow.
    base = dict(
        epochs=6, batch_size=16, lr=5e-3, warmup_steps=3, early_stopping_patience=10, device="cpu", seed=3, threads=1
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


# ----------------------------------------------------------------------------- helpers


def test_pick_device():
    assert pick_device(TrainingConfig(device="cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(TrainingConfig(device="auto")).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="training.device"):
        pick_device(TrainingConfig(device="cuda"))


def test_noam_schedule_rises_to_peak_at_warmup_then_decays():
    lrs = [noam_lr(s, 1e-3, 100) for s in range(1, 1001)]
    assert lrs[0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100]))  # strictly rising until step 100
    assert max(lrs) == pytest.approx(1e-3) and int(np.argmax(lrs)) == 99
    assert all(a > b for a, b in zip(lrs[99:], lrs[100:]))  # strictly decaying after
    assert noam_lr(400, 1e-3, 100) == pytest.approx(5e-4)  # sqrt(100/400) = 1/2
    assert noam_lr(7, 1e-3, 0) == 1e-3  # no warm-up: constant


def test_spec_augment_masks_one_time_band_and_one_frequency_band():
    rng = np.random.default_rng(0)
    batch = np.ones((64, 80, 8), np.float32)
    _spec_augment(batch, AugmentConfig(specaugment=True, time_mask_frames=10, freq_mask_bins=3), rng)
    assert (batch == 0).any() and (batch == 1).any()
    for w in batch:
        zero_rows = np.flatnonzero((w == 0).all(axis=1))
        zero_cols = np.flatnonzero((w == 0).all(axis=0))
        assert len(zero_rows) <= 10 and len(zero_cols) <= 3
        for idx in (zero_rows, zero_cols):  # each mask is one contiguous band
            assert len(idx) == 0 or idx[-1] - idx[0] == len(idx) - 1
        # Every zero lies in the time band or the frequency band.
        zero = w == 0
        zero[zero_rows, :] = False
        zero[:, zero_cols] = False
        assert not zero.any()


def test_array_clip_source_validates_and_names_the_clip():
    with pytest.raises(ValueError, match="2 clips but 1 labels"):
        ArrayClipSource([[np.zeros((5, 2))], [np.zeros((5, 2))]], [0])
    with pytest.raises(ValueError, match="clip 1 has no variants"):
        ArrayClipSource([[np.zeros((5, 2))], []], [0, 1])
    src = ArrayClipSource([[np.zeros((5, 2))]], [1])
    assert isinstance(src, ClipSource)
    with pytest.raises(IndexError, match="clip 0 has 1 variants"):
        src.features(0, 1)


# ----------------------------------------------------------------------------- training


def test_learns_an_easy_problem_and_reports_every_epoch():
    train, val = _source(24, seed=1, n_variants=2), _source(16, seed=2)
    seen: list[EpochStats] = []
    result = train_model(
        train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=6, windows_per_clip=0), feat_cfg=FEAT, aug_cfg=AUG,
        on_epoch=seen.append,
    )
    assert seen == result.history
    assert [h.epoch for h in result.history] == list(range(1, 7))
    assert max(h.val_accuracy for h in result.history) >= 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.device == "cpu" and not result.model.training
    assert next(result.model.parameters()).device.type == "cpu"
    # The returned (best) model scores the validation files as well as the history says.
    p = predict_clips(result.model, val, model_cfg=MODEL, feat_cfg=FEAT)
    y = np.array([val.label(i) for i in range(len(val))])
    assert np.mean((p >= 0.5) == y) == pytest.approx(result.history[result.best_epoch - 1].val_accuracy)
    expected_windows = sum(n_windows(train.features(i).shape[0], 80, 40) for i in range(len(train)))
    assert result.n_train_windows == expected_windows


def test_same_seed_same_weights_and_history_different_seed_differs():
    train, val = _source(16, seed=5, n_variants=2), _source(8, seed=6)
    cfg = _train_cfg(epochs=2, seed=11)
    aug = AugmentConfig(specaugment=True, time_mask_frames=10, freq_mask_bins=2)
    kw = dict(model_cfg=MODEL, feat_cfg=FEAT, aug_cfg=aug)
    a = train_model(train, val, train_cfg=cfg, **kw)
    b = train_model(train, val, train_cfg=cfg, **kw)
    c = train_model(train, val, train_cfg=_train_cfg(epochs=2, seed=12), **kw)
    sa, sb, sc = _state(a.model), _state(b.model), _state(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _no_time(a.history) == _no_time(b.history)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_specaugment_changes_training():
    train, val = _source(8, seed=5), _source(4, seed=6)
    kw = dict(model_cfg=MODEL, feat_cfg=FEAT, train_cfg=_train_cfg(epochs=1))
    plain = train_model(train, val, aug_cfg=AugmentConfig(specaugment=False), **kw)
    masked = train_model(train, val, aug_cfg=AugmentConfig(specaugment=True, time_mask_frames=20), **kw)
    assert plain.history[0].train_loss != masked.history[0].train_loss


def test_one_random_variant_per_clip_per_epoch_and_clean_validation():
    train = RecordingSource(_source(10, seed=7, n_variants=3))
    val = RecordingSource(_source(4, seed=8, n_variants=2))
    train_model(train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=4), feat_cfg=FEAT, aug_cfg=AUG)
    # Each epoch indexes every clip once (one variant each), then re-reads
    # clips per batch: features stream from the store instead of being held.
    assert sorted(i for i, _ in train.reads[:10]) == list(range(10))
    assert len(train.reads) >= 4 * 10 and {i for i, _ in train.reads} == set(range(10))
    assert {v for _, v in train.reads} == {0, 1, 2}  # all variants get used
    assert {v for _, v in val.reads} == {0}  # validation scores the clean clips
    assert len(val.reads) >= 4 and {i for i, _ in val.reads} == set(range(4))


def test_early_stopping_restores_the_best_epoch():
    # Validation labels are the opposite of training labels: the better the model
    # learns, the worse val_loss gets, so the best epoch comes early and training stops.
    train, val = _source(24, seed=9), _source(10, seed=10, invert=True)
    cfg = _train_cfg(epochs=30, early_stopping_patience=2)
    result = train_model(train, val, model_cfg=MODEL, train_cfg=cfg, feat_cfg=FEAT, aug_cfg=AUG)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 30
    best = result.history[result.best_epoch - 1]
    assert best.is_best and best.val_loss == min(h.val_loss for h in result.history)
    assert all(h.val_loss > best.val_loss for h in result.history[result.best_epoch :])
    # The returned weights are the best epoch's: they reproduce its val_loss, not the last epoch's.
    p = np.clip(predict_clips(result.model, val, model_cfg=MODEL, feat_cfg=FEAT), 1e-7, 1 - 1e-7)
    y = np.array([val.label(i) for i in range(len(val))])
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert loss == pytest.approx(best.val_loss, rel=1e-5)
    assert loss != pytest.approx(result.history[-1].val_loss, rel=1e-5)


def test_no_early_stop_flag_when_all_epochs_run():
    train, val = _source(8, seed=1), _source(4, seed=2)
    result = train_model(
        train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=2, early_stopping_patience=1), feat_cfg=FEAT, aug_cfg=AUG
    )
    assert len(result.history) == 2 and not result.stopped_early


def test_global_torch_settings_are_restored():
    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    train, val = _source(6, seed=1), _source(4, seed=2)
    result = train_model(
        train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=1, threads=2 if before_threads == 1 else 1),
        feat_cfg=FEAT, aug_cfg=AUG,
    )
    assert len(result.history) == 1
    assert torch.get_num_threads() == before_threads
    assert torch.are_deterministic_algorithms_enabled() == before_det


def test_short_clips_and_padded_mode_train_without_crashing():
    rng = np.random.default_rng(3)
    train = ArrayClipSource.clean([_clip(i % 2, rng, frames=50 if i < 2 else None) for i in range(8)], [i % 2 for i in range(8)])
    val = ArrayClipSource.clean([_clip(i % 2, rng) for i in range(4)], [0, 1, 0, 1])
    windowed = train_model(train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=1), feat_cfg=FEAT, aug_cfg=AUG)
    assert math.isfinite(windowed.history[0].train_loss)
    padded_cfg = ModelConfig(mode="padded", max_duration_s=2.0, fc_hidden=8)
    padded = train_model(train, val, model_cfg=padded_cfg, train_cfg=_train_cfg(epochs=1), feat_cfg=FEAT, aug_cfg=AUG)
    assert padded.n_train_windows == 8 and padded.model.n_frames == 200


def test_bad_inputs_are_clear_errors():
    good = _source(4, seed=1)
    kw = dict(model_cfg=MODEL, train_cfg=_train_cfg(epochs=1), feat_cfg=FEAT, aug_cfg=AUG)
    with pytest.raises(ValueError, match="validation source has no clips"):
        train_model(good, ArrayClipSource([], []), **kw)
    with pytest.raises(ValueError, match="training source has no clips"):
        train_model(ArrayClipSource([], []), good, **kw)
    wide = ArrayClipSource.clean([np.zeros((100, 8))] * 3 + [np.zeros((100, 9))], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"clip 3: features must be \[frames, 8\]"):
        train_model(wide, good, **kw)
    with pytest.raises(ValueError, match="train clip 1: label must be 0 or 1, got 2"):
        train_model(ArrayClipSource.clean([np.zeros((100, 8))] * 2, [0, 2]), good, **kw)
    nan = ArrayClipSource.clean([np.full((100, 8), np.nan, np.float32)], [1])
    with pytest.raises(ValueError, match="clip 0: features contain NaN"):
        train_model(good, nan, **kw)


# ----------------------------------------------------------------------------- prediction


def test_predict_averages_window_probabilities_per_file():
    cfg = ModelConfig(window_s=0.8, step_s=0.8, fc_hidden=8)  # step == window: windows are exactly A and B
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, cfg).eval()
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((80, 8)).astype(np.float32) for _ in range(3))
    probs = predict_arrays(model, [np.concatenate([a, b]), c], model_cfg=cfg, feat_cfg=FEAT, batch_size=1)
    p = model.predict_proba(torch.from_numpy(np.stack([a, b, c]))).numpy()
    assert probs.shape == (2,)
    assert probs[0] == pytest.approx((p[0] + p[1]) / 2, abs=1e-6)
    assert probs[1] == pytest.approx(p[2], abs=1e-6)
    assert abs(p[0] - p[1]) > 1e-4  # the mean is not trivially equal to either window


def test_predict_padded_mode_is_one_forward_per_file():
    cfg = ModelConfig(mode="padded", max_duration_s=1.0, fc_hidden=8)
    torch.manual_seed(0)
    model = SpiraConvV2(8, 100, cfg).eval()
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal((t, 8)).astype(np.float32) for t in (70, 100, 180)]
    probs = predict_arrays(model, clips, model_cfg=cfg, feat_cfg=FEAT)
    direct = model.predict_proba(torch.from_numpy(np.stack([pad_or_crop(c, 100) for c in clips]))).numpy()
    np.testing.assert_allclose(probs, direct, atol=1e-6)


def test_predict_uses_the_requested_variant_and_keeps_train_mode():
    torch.manual_seed(0)
    model = SpiraConvV2(8, 80, MODEL)
    src = _source(3, seed=4, n_variants=2)
    model.train()
    clean = predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT)
    noisy = predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT, variant=1)
    assert model.training  # prediction does not leave the model in eval mode
    assert clean.shape == noisy.shape == (3,)
    assert not np.allclose(clean, noisy)
    np.testing.assert_array_equal(clean, predict_clips(model, src, model_cfg=MODEL, feat_cfg=FEAT))  # eval: no dropout


def test_predict_checks_the_window_length_and_handles_empty_input():
    model = SpiraConvV2(8, 80, MODEL)
    with pytest.raises(ValueError, match="built for 80-frame inputs but the config gives 100"):
        predict_arrays(model, [np.zeros((200, 8), np.float32)], model_cfg=ModelConfig(window_s=1.0), feat_cfg=FEAT)
    assert predict_arrays(model, [], model_cfg=MODEL, feat_cfg=FEAT).shape == (0,)


def test_random_crops_take_k_windows_per_clip_inside_each_clip():
    from spira_lib.training import _index_windows

    rng = np.random.default_rng(0)
    feats = [np.random.default_rng(i).normal(size=(t, 4)).astype(np.float32) for i, t in enumerate([90, 200, 80])]
    idx = _index_windows(feats, 80, 40, "windowed", 4, crops=3, rng=rng)
    assert len(idx.starts) == 9 and list(idx.clip) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for start, clip in zip(idx.starts, idx.clip):
        assert 0 <= start <= feats[clip].shape[0] - 80  # never runs past its clip
    # not only the 40-frame grid: offsets vary with the rng
    assert len({int(s) for s, c in zip(idx.starts, idx.clip) if c == 1}) > 1
    batch = idx.gather(np.array([3, 8]), 80)
    np.testing.assert_array_equal(batch[0], feats[1][idx.starts[3] : idx.starts[3] + 80])
    np.testing.assert_array_equal(batch[1], feats[2][idx.starts[8] : idx.starts[8] + 80])
    grid = _index_windows(feats, 80, 40, "windowed", 4)
    assert len(grid.starts) == sum(n_windows(f.shape[0], 80, 40) for f in feats)


def test_training_with_crops_counts_k_windows_per_clip():
    train, val = _source(12, seed=1), _source(6, seed=2)
    result = train_model(
        train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=1, windows_per_clip=3), feat_cfg=FEAT, aug_cfg=AUG
    )
    assert result.n_train_windows == 36


def test_window_index_streams_from_memory_maps(tmp_path):
    """Clips are referenced, not copied: training memory does not grow with the dataset."""
    from spira_lib.training import _index_windows

    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
    opened = []

    def load():
        opened.append(np.load(path, mmap_mode="r"))
        return opened[-1]

    idx = _index_windows([load, load], 80, 40, "windowed", 4)
    assert all(callable(c) for c in idx.clips)  # nothing held open between batches
    batch = idx.gather(np.array([0, 1, len(idx.starts) - 1]), 80)
    np.testing.assert_array_equal(batch[0], np.load(path)[:80])
    assert len(opened) == 2 + 2  # once per clip to index, then once per clip in the batch


def test_prefetched_batches_equal_a_plain_loop():
    from spira_lib.training import _index_windows, _prefetched

    feats = [np.random.default_rng(i).normal(size=(150 + 10 * i, 4)).astype(np.float32) for i in range(5)]
    idx = _index_windows(feats, 80, 40, "windowed", 4)
    order = np.random.default_rng(1).permutation(len(idx.starts))
    got = list(_prefetched(idx, order, 3, 80))
    assert [list(r) for r, _ in got] == [list(order[lo : lo + 3]) for lo in range(0, len(order), 3)]
    for rows, batch in got:
        np.testing.assert_array_equal(batch, idx.gather(rows, 80))
    assert list(_prefetched(idx, order[:0], 3, 80)) == []

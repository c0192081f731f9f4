"""The training loop: learning, determinism, early stopping, variants, crops, restored torch settings."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spira_lib.config import AugmentConfig, ModelConfig
from spira_lib.model import n_windows
from spira_lib.training import ArrayClipSource, EpochStats, predict_clips, train_model
from tests.unit.spira_lib.training._helpers import AUG, FEAT, MODEL, RecordingSource, _clip, _no_time, _source, _state, _train_cfg


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


def test_training_with_crops_counts_k_windows_per_clip():
    train, val = _source(12, seed=1), _source(6, seed=2)
    result = train_model(
        train, val, model_cfg=MODEL, train_cfg=_train_cfg(epochs=1, windows_per_clip=3), feat_cfg=FEAT, aug_cfg=AUG
    )
    assert result.n_train_windows == 36

"""Benchmark: time to quality, the wall time from ``spira train`` start to a fixed validation ROC-AUC.

One demo dataset (``spira_demo``, speaker-disjoint split, ward noise), three
ways of training on it, each to ``TARGET_AUC`` file-level ROC-AUC on the clean
validation clips (checked after every epoch, as ``training.loop`` validates):

* ``default``: the shipped recipe (``configs/default.yaml``: convstats,
  one-cycle, mixup, 4 crops, noisy copies with channel augmentation) on cached
  features: wall time = the feature stage + the epochs up to the first one at
  or above the target;
* ``old_defaults``: SpiraConv v2, Noam warm-up, 30 epochs, 2 noisy copies,
  no mixup, no channel augmentation, on cached features (its own feature
  stage: fewer noisy copies);
* ``on_the_fly``: the default recipe with SPIRA's on-the-fly data loading
  (``bench.training_speed.BaselineTrainer``: decode + noise + MFCC every epoch).

A run that does not reach the target within ``budget_s`` of training (or its
epochs) is reported as "not reached", and the ratio against it is a lower
bound. Ratios: other wall time / default wall time, measured in one run.
"""
from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import polars as pl

from bench.common import Context, Result, demo_dataset
from bench.training_speed import BaselineTrainer, OnTheFlyClips
from spira_lib.bootstrap import forget_workspaces
from spira_lib.feature_store import StoreClipSource, VariantPlan
from spira_lib.metrics.point import roc_auc
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.data_steps import features_step, snapshot_step, split_step, validate_step
from spira_lib.training import pick_device, train_model

NAME = "time_to_quality"
TARGET_AUC = 0.9
OLD_DEFAULTS = {
    "model.arch": "spiraconv_v2", "model.fc_hidden": 100, "model.input_norm": "window",
    "training.schedule": "noam", "training.epochs": 30, "training.lr": 0.001, "training.mixup_alpha": 0.0,
    "augment.noisy_copies": 2, "augment.channel_prob": 0.0, "augment.synthetic_noise_prob": 0.0,
}
COMMON = {"validation.min_clips": 10, "validation.min_clips_per_class": 3, "training.threads": 1}


class _Budget(Exception):
    pass


def _cached_run(ctx: Context, data_dir, reg_dir, overrides: dict, budget_s: float) -> dict[str, Any]:
    """Feature stage + training on cached features until the target, the epochs or the budget run out."""
    forget_workspaces()
    spec = RunSpec.build(data_dir, reg_dir, overrides={**COMMON, **overrides})
    cfg, ws = spec.config, spec.workspace()
    t0 = time.perf_counter()
    split = split_step(spec, validate_step(spec, snapshot_step(spec)))
    feats = features_step(spec, split)
    prep_s = time.perf_counter() - t0
    df = pl.read_parquet(io.BytesIO(ws.store.get(split.split_key)))
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, ws.noise_bank(cfg.audio.sample_rate))

    def source(name: str, augmented: bool = False) -> StoreClipSource:
        sub = df.filter(pl.col("split") == name)
        return StoreClipSource(ws.features, feats.extractor_key, sub["sha256"].to_list(), sub["label"].to_list(), plan,
                               augmented=augmented)

    curve: list[tuple[float, float | None]] = []
    t_train = time.perf_counter()

    def on_epoch(stats) -> None:
        curve.append((prep_s + time.perf_counter() - t_train, stats.val_roc_auc))
        if (stats.val_roc_auc or 0.0) >= TARGET_AUC or time.perf_counter() - t_train > budget_s:
            raise _Budget

    try:
        train_model(source("train", True), source("eval"), model_cfg=cfg.model, train_cfg=cfg.training,
                    feat_cfg=cfg.features, aug_cfg=cfg.augment, on_epoch=on_epoch)
    except _Budget:
        pass
    forget_workspaces()
    return _summary(curve, prep_s)


def _on_the_fly_run(data_dir, reg_dir, budget_s: float) -> dict[str, Any]:
    forget_workspaces()
    spec = RunSpec.build(data_dir, reg_dir, overrides=COMMON)
    cfg, ws = spec.config, spec.workspace()
    t0 = time.perf_counter()
    split = split_step(spec, validate_step(spec, snapshot_step(spec)))
    df = pl.read_parquet(io.BytesIO(ws.store.get(split.split_key)))
    noise = ws.noise_bank(cfg.audio.sample_rate)
    tr, ev = df.filter(pl.col("split") == "train"), df.filter(pl.col("split") == "eval")
    train_ds = OnTheFlyClips(ws.data, tr["key"].to_list(), tr["label"].to_list(), cfg, noise, train=True, seed=cfg.training.seed)
    val_ds = OnTheFlyClips(ws.data, ev["key"].to_list(), ev["label"].to_list(), cfg, noise, train=False, seed=0)
    import torch

    torch.set_num_threads(1)
    base = BaselineTrainer(train_ds, val_ds, cfg, pick_device(cfg.training))
    prep_s = time.perf_counter() - t0
    curve: list[tuple[float, float | None]] = []
    for _ in range(cfg.training.epochs):
        base.epoch()
        curve.append((time.perf_counter() - t0, roc_auc(np.asarray(val_ds.labels), base.val_probs[-1])))
        if (curve[-1][1] or 0.0) >= TARGET_AUC or time.perf_counter() - t0 > budget_s:
            break
    forget_workspaces()
    return _summary(curve, prep_s)


def _summary(curve: list[tuple[float, float | None]], prep_s: float) -> dict[str, Any]:
    hit = next((i for i, (_, auc) in enumerate(curve) if (auc or 0.0) >= TARGET_AUC), None)
    return {"reached": hit is not None, "seconds": curve[hit][0] if hit is not None else (curve[-1][0] if curve else None),
            "epochs": (hit + 1) if hit is not None else len(curve), "prep_s": prep_s,
            "curve": [{"s": s, "val_auc": a} for s, a in curve]}


def run(ctx: Context) -> list[Result]:
    import torch

    speakers, budget = ctx.size(80, 12), ctx.size(60.0, 5.0)
    prev = torch.get_num_threads()
    with ctx.tempdir("bench-ttq") as tmp:
        ctx.say(f"[time_to_quality] generating {speakers} demo speakers")
        demo_dataset(tmp / "data", speakers, seed=51)
        try:
            runs = {
                "default": _cached_run(ctx, tmp / "data", tmp / "reg-default", {}, budget),
                "old_defaults": _cached_run(ctx, tmp / "data", tmp / "reg-old", OLD_DEFAULTS, budget),
                "on_the_fly": _on_the_fly_run(tmp / "data", tmp / "reg-otf", budget),
            }
        finally:
            torch.set_num_threads(prev)
    return _rows(runs, budget)


def _describe(r: dict[str, Any]) -> str:
    return (f"{r['seconds']:.0f} s ({r['epochs']} epochs)" if r["reached"]
            else f"not reached in {r['seconds']:.0f} s ({r['epochs']} epochs; best val AUC "
                 f"{max((c['val_auc'] or 0.0) for c in r['curve']) if r['curve'] else 0:.3f})")


def _rows(runs: dict[str, dict[str, Any]], budget: float) -> list[Result]:
    d = runs["default"]
    rows = [Result(
        name="time_to_quality.default", value=d["seconds"] if d["reached"] else None, unit="s",
        compares=f"wall s from start (features included) to file-level val ROC-AUC >= {TARGET_AUC}, shipped recipe",
        target="reached", passed=d["reached"],
        notes=f"{_describe(d)}; feature stage {d['prep_s']:.1f} s; one torch thread", extra=runs,
    )]
    for name, what in (("old_defaults", "SpiraConv v2 + Noam + 30 epochs (old defaults)"),
                       ("on_the_fly", "the default recipe with on-the-fly decoding, noise and MFCC")):
        r = runs[name]
        value = r["seconds"] / d["seconds"] if d["reached"] and r["seconds"] else None
        bound = "" if r["reached"] else " (lower bound: it did not reach the target)"
        rows.append(Result(
            name=f"time_to_quality.vs_{name}", value=value, unit="x",
            compares=f"time to val AUC >= {TARGET_AUC}: {what} / shipped recipe{bound}",
            notes=f"{name}: {_describe(r)}; default: {_describe(d)}; training budget {budget:.0f} s each",
        ))
    return rows

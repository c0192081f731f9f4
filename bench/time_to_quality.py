"""Benchmark: time to quality, the wall time from ``spira train`` start to a fixed validation ROC-AUC.

The quality benchmark's training data (``bench/quality.py``: ``SETS["train"]``,
the default generator at seed 100, made by its ``_gen`` and cached under the
scratch folder) at ``SPEAKERS`` speakers, split by the pipeline's default
speaker-disjoint split; three ways of training on it, each to ``TARGET_AUC``
file-level ROC-AUC on the clean validation clips (checked after every epoch,
as ``training.loop`` validates). Every run gets the quality benchmark's
set-up (``bench.quality._overrides``: one torch thread, CPU, training seed 0,
its noise folder):

* ``default``: the shipped recipe (``configs/default.yaml``: convstats,
  one-cycle, mixup, 4 crops, noisy copies with channel augmentation) on cached
  features: wall time = the feature stage + the epochs up to the first one at
  or above the target;
* ``old_defaults``: the quality benchmark's ``old_defaults`` recipe, the same
  dict (``bench.quality.RECIPES``): SpiraConv v2, 40 MFCCs, Noam warm-up,
  30 epochs, 2 noisy copies, no mixup, no channel augmentation, on cached
  features (its own feature stage: other MFCCs, fewer noisy copies);
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

from bench.common import Context, Result
from bench.quality import RECIPES, SETS, _gen, _overrides
from bench.training_speed import BaselineTrainer, OnTheFlyClips
from spira_lib.bootstrap import forget_workspaces
from spira_lib.feature_store import StoreClipSource, VariantPlan
from spira_lib.metrics.point import roc_auc
from spira_lib.pipeline import RunSpec
from spira_lib.pipeline.data_steps import features_step, snapshot_step, split_step, validate_step
from spira_lib.training import pick_device, train_model

NAME = "time_to_quality"
TARGET_AUC = 0.9
# ~108 train / 16 validation clips at the default split: the module stays at about 1.5-2 minutes on 2 cores
# (each extra speaker lengthens all three feature stages and every epoch).
SPEAKERS = 160
OLD_DEFAULTS = RECIPES["old_defaults"]  # one definition: the quality benchmark's baseline
SEED = 0  # the quality benchmark's first training seed


def setup(recipe: dict[str, Any], data_dir) -> dict[str, Any]:
    """The quality benchmark's overrides for ``recipe`` on ``data_dir`` (noise folder, 1 thread, CPU, seed)."""
    return _overrides(recipe, data_dir / "noises", None, SEED)


class _Budget(Exception):
    pass


def _cached_run(ctx: Context, data_dir, reg_dir, overrides: dict, budget_s: float) -> dict[str, Any]:
    """Feature stage + training on cached features until the target, the epochs or the budget run out."""
    forget_workspaces()
    spec = RunSpec.build(data_dir, reg_dir, overrides=setup(overrides, data_dir))
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
    return _summary(curve, prep_s, clips=_split_sizes(df))


def _split_sizes(df: pl.DataFrame) -> dict[str, int]:
    return {name: df.filter(pl.col("split") == name).height for name in ("train", "eval")}


def _on_the_fly_run(data_dir, reg_dir, budget_s: float) -> dict[str, Any]:
    forget_workspaces()
    spec = RunSpec.build(data_dir, reg_dir, overrides=setup({}, data_dir))
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
        # The budget is training time, as for the cached runs.
        if (curve[-1][1] or 0.0) >= TARGET_AUC or time.perf_counter() - t0 - prep_s > budget_s:
            break
    forget_workspaces()
    return _summary(curve, prep_s, clips=_split_sizes(df))


def _summary(curve: list[tuple[float, float | None]], prep_s: float, clips: dict[str, int] | None = None) -> dict[str, Any]:
    hit = next((i for i, (_, auc) in enumerate(curve) if (auc or 0.0) >= TARGET_AUC), None)
    return {"reached": hit is not None, "seconds": curve[hit][0] if hit is not None else (curve[-1][0] if curve else None),
            "epochs": (hit + 1) if hit is not None else len(curve), "prep_s": prep_s, "clips": clips or {},
            "curve": [{"s": s, "val_auc": a} for s, a in curve]}


def run(ctx: Context) -> list[Result]:
    import torch

    speakers, budget = ctx.size(SPEAKERS, 12), ctx.size(60.0, 5.0)
    prev = torch.get_num_threads()
    with ctx.tempdir("bench-ttq") as tmp:
        # Generated once per scratch folder and reused (it is not timed); --quick keeps it in its temp dir.
        cache = tmp if ctx.quick else ctx.scratch / "spira-bench-quality"
        ctx.say(f"[time_to_quality] the quality benchmark's training set, {speakers} speakers (cached in {cache})")
        t0 = time.perf_counter()
        data = _gen(cache, "train", speakers)
        gen_s = time.perf_counter() - t0
        try:
            runs = {
                "default": _cached_run(ctx, data, tmp / "reg-default", {}, budget),
                "old_defaults": _cached_run(ctx, data, tmp / "reg-old", OLD_DEFAULTS, budget),
                "on_the_fly": _on_the_fly_run(data, tmp / "reg-otf", budget),
            }
        finally:
            torch.set_num_threads(prev)
    return _rows(runs, budget, {"speakers": speakers, "data_s": gen_s})


def _describe(r: dict[str, Any]) -> str:
    return (f"{r['seconds']:.0f} s ({r['epochs']} epochs)" if r["reached"]
            else f"not reached in {r['seconds']:.0f} s ({r['epochs']} epochs; best val AUC "
                 f"{max((c['val_auc'] or 0.0) for c in r['curve']) if r['curve'] else 0:.3f})")


def _rows(runs: dict[str, dict[str, Any]], budget: float, data: dict[str, Any]) -> list[Result]:
    d = runs["default"]
    clips = d["clips"]
    rows = [Result(
        name="time_to_quality.default", value=d["seconds"] if d["reached"] else None, unit="s",
        compares=(f"wall s from start (features included) to file-level val ROC-AUC >= {TARGET_AUC}, shipped recipe, "
                  f"on the quality benchmark's training set ({data['speakers']} speakers, seed {SETS['train']['seed']})"),
        target="reached", passed=d["reached"],
        notes=(f"{_describe(d)}; feature stage {d['prep_s']:.1f} s; {clips.get('train')} train / {clips.get('eval')} "
               f"validation clips (so the validation AUC moves in coarse steps); one torch thread, the quality "
               f"benchmark's set-up; making the set took {data['data_s']:.0f} s (about 0 when cached; not included)"),
        extra={**runs, "data": data},
    )]
    for name, what in (("old_defaults", "the quality benchmark's old_defaults recipe (SpiraConv v2, 40 MFCCs, Noam, 30 epochs)"),
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

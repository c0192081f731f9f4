"""Quality benchmark: does a training recipe learn the patient, not the synthesiser, the phone or the room?

Standalone::

    python -m bench.quality                       # full run (3 seeds, all recipes)
    python -m bench.quality --smoke               # small sets, 1 seed, few epochs
    python -m bench.quality --recipes old,new --seeds 0,1,2 --out results.json

What it does, with the pipeline's own code (snapshot, validation, split,
feature store, training loop, prediction, metrics):

1. Generates (once; cached under ``--workdir``) four synthetic SPIRA-format
   sets with ``spira_demo.generate_demo_dataset``:

   * ``train``: the default generator, ``--train-speakers`` speakers, split by
     the pipeline's default speaker-disjoint split (65% train / 15% eval used
     here; the 20% test part is left unused);
   * ``a_unseen``: unseen speakers of the same generator;
   * ``b_shifted``: another voice family (``voice="harmonic"``) AND another
     recording chain (``channel="mixed"``: telephone band / 8 kHz / gain /
     microphone EQ / clean per clip);
   * ``c_confound``: the default voice with ward noise in patients only.

2. Trains every recipe (a set of config overrides) for every seed, at most
   ``--jobs`` trainings at once with one torch thread each.

3. Reports per recipe and set mean +- sd over seeds of ROC-AUC and balanced
   accuracy, the shortcut drop on ``a_unseen`` (clean accuracy minus accuracy
   once ward noise from the HELD-OUT part of the training noise bank is mixed
   into the controls) and training wall time; also the ROC-AUC of the latent
   severity itself per set (the ceiling any model can reach there).

Writes JSON (``--out``) and prints a markdown table. ``--smoke`` is the tiny
mode (small sets, 1 seed, few epochs) that tests/unit/bench/test_quality.py
runs; its figures are not meaningful. Findings: docs/quality.md.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_WORKDIR = Path(os.environ.get("SPIRA_QUALITY_WORKDIR", "/tmp/spira-quality"))

# name -> (generate_demo_dataset kwargs, speakers key, seed)
SETS: dict[str, dict[str, Any]] = {
    "train": {"seed": 100, "kwargs": {}},
    "a_unseen": {"seed": 101, "kwargs": {}},
    "b_shifted": {"seed": 102, "kwargs": {"voice": "harmonic", "channel": "mixed"}},
    "c_confound": {"seed": 103, "kwargs": {"noise_placement": "patients"}},
    # --diagnose: the two halves of b's shift, one at a time.
    "b_voice_only": {"seed": 102, "kwargs": {"voice": "harmonic"}},
    "b_channel_only": {"seed": 102, "kwargs": {"channel": "mixed"}},
}
TEST_SETS = ("a_unseen", "b_shifted", "c_confound")
DIAGNOSTIC_SETS = ("b_voice_only", "b_channel_only")

# The old defaults, spelt out, so the baseline stays the baseline when defaults change.
OLD_DEFAULTS: dict[str, Any] = {
    "features.n_mfcc": 40,
    "model.arch": "spiraconv_v2",
    "model.input_norm": "none",
    "model.dropout": 0.7,
    "model.fc_hidden": 100,
    "training.epochs": 30,
    "training.lr": 1e-3,
    "training.schedule": "noam",
    "training.warmup_steps": 100,
    "training.early_stopping_patience": 10,
    "training.restore_best": True,
    "training.windows_per_clip": 3,
    "training.mixup_alpha": 0.0,
    "augment.noisy_copies": 2,
    "augment.snr_db_min": 0.0,
    "augment.snr_db_max": 15.0,
    "augment.snr_reference": "clip",
    "augment.channel_prob": 0.0,
    "augment.noise_prob": 1.0,
    "augment.synthetic_noise_prob": 0.0,
    "augment.specaugment": False,
    "augment.holdout_noise_fraction": 0.34,  # the check is always honest here
}

# The recommended recipe (the shipped defaults on this branch), spelt out.
NEW: dict[str, Any] = {
    "features.n_mfcc": 20,
    "model.arch": "convstats",
    "model.input_norm": "window",
    "model.dropout": 0.5,
    "model.conv_dropout": 0.1,
    "model.channels": 32,
    "model.fc_hidden": 64,
    "training.epochs": 30,
    "training.lr": 3e-3,
    "training.schedule": "onecycle",
    "training.warmup_fraction": 0.1,
    "training.restore_best": False,
    "training.windows_per_clip": 4,
    "training.mixup_alpha": 0.4,
    "augment.noisy_copies": 4,
    "augment.snr_db_min": -5.0,
    "augment.snr_db_max": 20.0,
    "augment.snr_reference": "active",
    "augment.noise_prob": 0.8,
    "augment.synthetic_noise_prob": 0.5,
    "augment.channel_prob": 0.5,
    "augment.holdout_noise_fraction": 0.34,
}


def _new(**changes: Any) -> dict[str, Any]:
    return {**OLD_DEFAULTS, **NEW, **changes}


RECIPES: dict[str, dict[str, Any]] = {
    "old_defaults": dict(OLD_DEFAULTS),
    "new": _new(),
    # One choice of the new recipe undone at a time (leave-one-out ablations).
    "new-arch=spiraconv": _new(**{"model.arch": "spiraconv_v2", "model.dropout": 0.7, "model.fc_hidden": 100}),
    "new-schedule=noam": _new(**{"training.schedule": "noam", "training.lr": 1e-3, "training.restore_best": True}),
    "new-norm=none": _new(**{"model.input_norm": "none"}),
    "new-norm=window_mean": _new(**{"model.input_norm": "window_mean"}),
    "new-no_channel_aug": _new(**{"augment.channel_prob": 0.0}),
    "new-no_synthetic_noise": _new(**{"augment.synthetic_noise_prob": 0.0}),
    "new-old_noise_aug": _new(**{"augment.snr_db_min": 0.0, "augment.snr_db_max": 15.0, "augment.snr_reference": "clip",
                                 "augment.noise_prob": 1.0, "augment.synthetic_noise_prob": 0.0}),
    "new-no_mixup": _new(**{"training.mixup_alpha": 0.0}),
    "new+channels64": _new(**{"model.channels": 64}),
    "new-mfcc40": _new(**{"features.n_mfcc": 40}),  # the recipe shipped before 20 coefficients won
    "new+noise_always": _new(**{"augment.noise_prob": 1.0, "augment.noisy_copies": 6}),
    # The augmentation-free convstats: what the architecture and schedule alone give.
    "convstats_old_aug": {**OLD_DEFAULTS, **{k: v for k, v in NEW.items() if k.startswith(("model.", "training."))}},
}
# old_defaults (SpiraConv v2) costs ~25 CPU-minutes per training at full size:
# it runs for the first seed only, and only with --baseline (then it is cached).
DEFAULT_RECIPES = ("convstats_old_aug", "new-no_mixup", "new-no_channel_aug", "new")


# --------------------------------------------------------------------------- data


def _gen(workdir: Path, name: str, speakers: int) -> Path:
    from spira_demo import generate_demo_dataset

    spec = SETS[name]
    out = workdir / "data" / f"{name}-{speakers}"
    stamp = out / ".generated.json"
    want = {"speakers": speakers, "seed": spec["seed"], **spec["kwargs"]}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return out
    t0 = time.perf_counter()
    generate_demo_dataset(out, speakers=speakers, seed=spec["seed"], **spec["kwargs"])
    stamp.write_text(json.dumps(want))
    print(f"[quality] generated {name} ({speakers} speakers) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def _overrides(overrides: dict[str, Any], noise_dir: Path, epochs: int | None, seed: int) -> dict[str, Any]:
    o = dict(overrides)
    o["augment.noise_dir"] = str(noise_dir)
    o["training.threads"] = 1
    o["training.device"] = "cpu"
    o["training.seed"] = seed
    if epochs is not None:
        o["training.epochs"] = epochs
    # Small test sets (--smoke) are still scored: validation must not refuse them.
    o.setdefault("validation.min_clips", 10)
    o.setdefault("validation.min_clips_per_class", 3)
    return o


def _prepare_set(workdir: Path, data_dir: Path, overrides: dict[str, Any], *, split: bool) -> dict:
    """Snapshot + validate (+ split) a set through the pipeline's steps; features for its rows under the config."""
    import polars as pl

    from spira_lib.feature_store import VariantPlan
    from spira_lib.features import FeatureExtractor
    from spira_lib.pipeline import RunSpec
    from spira_lib.pipeline.data_steps import feature_rows, snapshot_step, split_step, validate_step
    from spira_lib.pipeline.layout import get_frame

    spec = RunSpec.build(data_dir, workdir / "store", overrides=overrides)
    cfg, ws = spec.config, spec.workspace()
    checked = validate_step(spec, snapshot_step(spec))
    if split:
        df = get_frame(ws.store, split_step(spec, checked).split_key)
    else:
        df = get_frame(ws.store, checked.good_key).with_columns(pl.lit("test").alias("split"))
    noise = ws.noise_bank(cfg.audio.sample_rate)
    plan = VariantPlan.build(cfg.augment, cfg.evaluation, noise)
    extractor = FeatureExtractor(cfg.features)
    ws.features.ensure(ws.data, feature_rows(df), extractor, plan, noise, workers=2)
    return {"df": df, "ekey": extractor.key, "plan": plan, "ws": ws, "cfg": cfg}


def _latent_auc(df, latents: dict[str, dict]) -> float | None:
    from spira_lib.metrics.point import roc_auc

    sev = [latents.get(s, {}).get("severity") for s in df["speaker_id"].to_list()]
    if any(v is None for v in sev):
        return None
    return roc_auc(df["label"].to_numpy(), np.asarray(sev))


# --------------------------------------------------------------------------- one training


def _run_one(job: dict) -> dict:
    """Train one recipe/seed and score every set (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    import polars as pl

    from spira_lib.feature_store import ShortcutClipSource, StoreClipSource
    from spira_lib.metrics import binary_metrics
    from spira_lib.training import predict_clips, train_model

    workdir, dirs = Path(job["workdir"]), {k: Path(v) for k, v in job["dirs"].items()}
    overrides = _overrides(job["overrides"], dirs["train"] / "noises", job["epochs"], job["seed"])
    tr = _prepare_set(workdir, dirs["train"], overrides, split=True)
    cfg, df = tr["cfg"], tr["df"]

    def src(frame, augmented=False, cls=StoreClipSource, prep=tr):
        return cls(prep["ws"].features, prep["ekey"], frame["sha256"].to_list(), frame["label"].to_list(),
                   prep["plan"], augmented=augmented)

    train = src(df.filter(pl.col("split") == "train"), augmented=True)
    val = src(df.filter(pl.col("split") == "eval"))
    t0 = time.perf_counter()
    res = train_model(train, val, model_cfg=cfg.model, train_cfg=cfg.training, feat_cfg=cfg.features, aug_cfg=cfg.augment)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {
        "recipe": job["recipe"], "seed": job["seed"], "train_seconds": seconds,
        "epochs_run": len(res.history), "best_epoch": res.best_epoch,
        "final_train_loss": res.history[-1].train_loss, "first_train_loss": res.history[0].train_loss,
        "sets": {},
    }
    for name in [n for n in (*TEST_SETS, *DIAGNOSTIC_SETS) if n in dirs]:
        prep = _prepare_set(workdir, dirs[name], overrides, split=False)
        d = prep["df"]
        probs = predict_clips(res.model, src(d, prep=prep), model_cfg=cfg.model, feat_cfg=cfg.features)
        m = binary_metrics(d["label"].to_numpy(), probs, cfg.evaluation.threshold)
        entry = {"roc_auc": m["roc_auc"], "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                 "sensitivity": m["sensitivity"], "specificity": m["specificity"]}
        if name == "a_unseen":
            noisy = predict_clips(res.model, src(d, cls=ShortcutClipSource, prep=prep), model_cfg=cfg.model, feat_cfg=cfg.features)
            mn = binary_metrics(d["label"].to_numpy(), noisy, cfg.evaluation.threshold)
            entry["shortcut_accuracy"] = mn["accuracy"]
            entry["shortcut_drop"] = m["accuracy"] - mn["accuracy"]
        out["sets"][name] = entry
    return out


# --------------------------------------------------------------------------- summary


def _ms(values: list[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summarise(runs: list[dict], recipes: list[str]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for r in recipes:
        rr = [x for x in runs if x["recipe"] == r]
        if not rr:
            continue
        row: dict[str, Any] = {"n_seeds": len(rr)}
        for s in TEST_SETS:
            for metric in ("roc_auc", "balanced_accuracy"):
                row[f"{s}.{metric}"] = _ms([x["sets"][s][metric] for x in rr])
        row["shortcut_drop"] = _ms([x["sets"]["a_unseen"]["shortcut_drop"] for x in rr])
        row["train_seconds"] = _ms([x["train_seconds"] for x in rr])
        row["epochs_run"] = _ms([x["epochs_run"] for x in rr])
        table[r] = row
    return table


def _fmt(ms: tuple[float | None, float | None], digits: int = 3) -> str:
    m, s = ms
    if m is None:
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(table: dict[str, dict], latent: dict[str, float | None]) -> str:
    head = ("| recipe | seeds | AUC a (unseen) | AUC b (shifted) | AUC c (confound) | bal.acc a | bal.acc b | bal.acc c "
            "| shortcut drop | train s |")
    lines = [head, "|" + "---|" * 10]
    for r, row in table.items():
        lines.append(
            f"| {r} | {row['n_seeds']} | " + " | ".join(_fmt(row[f"{s}.roc_auc"]) for s in TEST_SETS) + " | "
            + " | ".join(_fmt(row[f"{s}.balanced_accuracy"]) for s in TEST_SETS)
            + f" | {_fmt(row['shortcut_drop'])} | {_fmt(row['train_seconds'], 0)} |"
        )
    lines.append("| latent severity (ceiling) | - | " + " | ".join(
        "n/a" if latent.get(s) is None else f"{latent[s]:.3f}" for s in TEST_SETS) + " | | | | | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _merge(paths: list[Path], out: Path | None) -> int:
    """One table from several runs of this script (e.g. an hour-long baseline measured once)."""
    runs, recipes, latent, meta = [], [], {}, []
    for p in paths:
        r = json.loads(Path(p).read_text())
        for x in r["runs"]:
            if x["recipe"] not in recipes:
                recipes.append(x["recipe"])
            if not any(y["recipe"] == x["recipe"] and y["seed"] == x["seed"] for y in runs):
                runs.append(x)
        latent.update({k: v for k, v in r["latent_severity_auc"].items() if v is not None})
        meta.append({"file": str(p), "train_speakers": r["train_speakers"], "test_speakers": r["test_speakers"],
                     "wall_seconds": r["wall_seconds"]})
    table = summarise(runs, recipes)
    result = {"merged_from": meta, "latent_severity_auc": latent, "table": table, "runs": runs}
    if out:
        out.write_text(json.dumps(result, indent=2, default=float))
    print(markdown(table, latent))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small sets, 1 seed, 6 epochs (a couple of minutes)")
    ap.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    ap.add_argument("--seeds", default=None, help="comma list of training seeds (default 0,1,2; smoke 0)")
    ap.add_argument("--train-speakers", type=int, default=None, help="default 400 (smoke 100)")
    ap.add_argument("--test-speakers", type=int, default=None, help="default 200 (smoke 60)")
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (smoke: 6)")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one torch thread each)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="generated sets + feature store (cached)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default WORKDIR/quality.json)")
    ap.add_argument("--baseline", action="store_true",
                    help="add old_defaults (SpiraConv v2, SPIRA's recipe) for the first seed; cached afterwards")
    ap.add_argument("--diagnose", action="store_true", help=f"also score {', '.join(DIAGNOSTIC_SETS)}")
    ap.add_argument("--fresh", action="store_true", help="retrain even when a cached run of the same job exists")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override k=v for EVERY recipe")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="only merge earlier result JSONs (same sets) into one table and JSON; no training")
    args = ap.parse_args(argv)
    if args.merge:
        return _merge(args.merge, args.out)

    from spira_lib.config import parse_override
    from spira_demo import speaker_latents

    smoke = args.smoke
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    seeds = [int(s) for s in (args.seeds or ("0" if smoke else "0,1,2")).split(",")]
    baseline_first_seed_only = args.baseline and "old_defaults" not in recipes
    if baseline_first_seed_only:
        recipes.insert(0, "old_defaults")
    n_train = args.train_speakers or (100 if smoke else 400)
    n_test = args.test_speakers or (60 if smoke else 200)
    epochs = args.epochs or (6 if smoke else None)
    extra = dict(parse_override(s) for s in args.sets)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    dirs = {"train": _gen(workdir, "train", n_train)}
    for name in TEST_SETS + (DIAGNOSTIC_SETS if args.diagnose else ()):
        dirs[name] = _gen(workdir, name, n_test)
    gen_s = time.perf_counter() - t0

    # Features for every recipe's plan, once, in this process (the store is shared and content-addressed).
    t1 = time.perf_counter()
    latent: dict[str, float | None] = {}
    for r in recipes:
        overrides = _overrides({**RECIPES[r], **extra}, dirs["train"] / "noises", epochs, 0)
        _prepare_set(workdir, dirs["train"], overrides, split=True)
        for name in [n for n in dirs if n != "train"]:
            prep = _prepare_set(workdir, dirs[name], overrides, split=False)
            if name not in latent:
                lat = speaker_latents(n_test, SETS[name]["seed"])
                latent[name] = _latent_auc(prep["df"], lat)
    feat_s = time.perf_counter() - t1

    pairs = [(s, r) for s in seeds for r in recipes if not (baseline_first_seed_only and r == "old_defaults")]
    if baseline_first_seed_only:
        pairs.insert(0, (seeds[0], "old_defaults"))
    jobs = [
        {"workdir": str(workdir), "dirs": {k: str(v) for k, v in dirs.items()}, "recipe": r,
         "overrides": {**RECIPES[r], **extra}, "seed": s, "epochs": epochs, "diagnose": args.diagnose}
        for s, r in pairs
    ]
    # Finished trainings are cached by their job (recipe overrides, seed, set
    # sizes, epochs), so a full run can reuse an expensive baseline measured
    # earlier. The model-code version is recorded in each run but NOT part of
    # the key (any edit would invalidate the hour-long SpiraConv baseline):
    # pass --fresh after changing training code.
    from spira_lib.hashing import stable_hash
    from spira_lib.pipeline.workspace import code_version

    cache_dir = workdir / "runs"
    cache_dir.mkdir(exist_ok=True)

    def job_key(job: dict) -> str:
        return stable_hash({k: job[k] for k in ("overrides", "seed", "epochs", "diagnose")} | {"n": [n_train, n_test]})[:16]

    runs: list[dict] = []
    todo = []
    for job in jobs:
        hit = cache_dir / f"{job_key(job)}.json"
        if hit.exists() and not args.fresh:
            cached = json.loads(hit.read_text())
            cached["recipe"] = job["recipe"]
            cached["cached"] = True
            runs.append(cached)
        else:
            todo.append(job)
    t2 = time.perf_counter()
    # spawn, not fork: the parent has run torch and thread pools already, and a
    # forked child can inherit a held OpenMP/thread-pool lock and hang.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        for job, res in zip(todo, pool.map(_run_one, todo)):
            res["code_version"] = code_version()
            (cache_dir / f"{job_key(job)}.json").write_text(json.dumps(res, default=float))
            runs.append(res)
            a = res["sets"]
            print(f"[quality] {res['recipe']:>22s} seed {res['seed']}: AUC a {a['a_unseen']['roc_auc']:.3f} "
                  f"b {a['b_shifted']['roc_auc']:.3f} c {a['c_confound']['roc_auc']:.3f} "
                  f"drop {a['a_unseen']['shortcut_drop']:+.3f} ({res['train_seconds']:.0f} s, "
                  f"{res['epochs_run']} ep)", file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t2

    table = summarise(runs, recipes)
    result = {
        "smoke": smoke, "seeds": seeds, "train_speakers": n_train, "test_speakers": n_test, "epochs_override": epochs,
        "extra_overrides": extra, "recipes": {r: {**RECIPES[r], **extra} for r in recipes},
        "latent_severity_auc": latent, "table": table, "runs": runs,
        "wall_seconds": {"generate": gen_s, "features": feat_s, "train_and_score": train_s,
                         "total": time.perf_counter() - t0},
    }
    out = args.out or (workdir / ("quality-smoke.json" if smoke else "quality.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(markdown(table, latent))
    print(f"\nwall: generate {gen_s:.0f} s, features {feat_s:.0f} s, train+score {train_s:.0f} s; JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

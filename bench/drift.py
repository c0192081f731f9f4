"""Benchmark: audio drift detection on batches of 100 clips.

    python -m bench.drift [--out FILE] [--quick] [--embedding] [--no-cache]

Data (``spira_demo.generate_demo_dataset``, the real files: WAV/FLAC, 16/22.05/44.1
kHz, mono/stereo, 40% with ward noise, three hospitals):

- reference: one demo dataset (the champion's training data);
- pool: another, speaker-disjoint; batch ``s`` (seed ``s`` = 0..19) is 100 clips
  drawn from it without replacement. Unshifted batches are those clips as they
  are; each shifted batch is the SAME clips after the shift (a paired design);
- other voices: a third dataset generated with every speaker's F0 x1.25 and
  formant scale x1.10 (``draw_profile`` wrapped inside this benchmark; the
  generator has no "voice family" option); batches drawn from it likewise.

Shifts, applied to the decoded frames at the file's own rate, written back as
PCM16 WAV and then read like any upload:

- ``snr_-10db``: ward noise (``synth_noise`` kind "ward") added with 9x the
  clip's own noise power (mean of its quietest 10% of 10 ms blocks), so the
  noise power is 10x and the SNR 10 dB lower, clip by clip;
- ``telephone``: 4th-order Butterworth band-pass 300-3400 Hz (causal);
- ``resample_8k``: polyphase resampling to 8 kHz and back (``resample_poly``);
- ``gain_-12db``: every sample x 10^(-12/20).

The decision per batch (``monitoring.drift_report``): one KS test per profile
feature (17) and one chi-square test per metadata column (label, sex, age band,
hospital), plus with ``--embedding`` the MMD test on clip embeddings of a
randomly initialised SpiraConvV2 (seed 0, not trained); all p-values
Benjamini-Hochberg adjusted together; alarm = any adjusted p < 0.01.

Per-clip results (profiles, metadata, embeddings) are cached under the scratch
folder, keyed by the sizes and code versions, so a rerun only redoes the tests.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from unittest import mock

import numpy as np
import polars as pl
import soundfile as sf
from scipy import signal

from bench.common import Context, Result, check, demo_dataset, print_table, write_results
from spira_lib.hashing import stable_hash
from spira_lib.monitoring import (
    FEATURE_NAMES,
    PROFILE_VERSION,
    ProfileTable,
    ReferenceProfile,
    audio_profile,
    categorical_counts,
    drift_report,
)

NAME = "drift"
BENCH_VERSION = 2  # bump when this file changes how clips are generated, shifted or profiled (the cache key)
ALPHA = 0.01
TARGET_DETECTION = 0.95
TARGET_FALSE_ALARM = 0.05
SIGNAL_SHIFTS = ("snr_-10db", "telephone", "resample_8k", "gain_-12db")
SHIFTS = (*SIGNAL_SHIFTS, "other_voice")
VOICE_F0, VOICE_FORMANT = 1.25, 1.10
META_COLUMNS = ("label", "sex", "age", "hospital")


@dataclasses.dataclass(frozen=True)
class Sizes:
    # 300 rather than the 400 of the first runs: generating, shifting and profiling these clips is what the
    # module's time is (the tests over seeds take seconds), and make bench must stay within 15 minutes.
    reference: int = 300
    pool: int = 300
    batch: int = 100
    seeds: int = 20
    extra_null: int = 200  # resampled (overlapping) null batches for a finer false-alarm estimate
    chunks: int = 2  # each dataset is generated in this many speaker-disjoint parts (results do not depend on --workers)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(reference=24, pool=24, batch=12, seeds=2, extra_null=4, chunks=1)


# --------------------------------------------------------------------------- data


def _rows(root: Path) -> list[dict]:
    """Every clip of a generated dataset with its metadata, in speaker order."""
    rows = []
    for meta in sorted(root.rglob("metadata.csv")):
        with meta.open(newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({"path": meta.parent / r["file_path"], "speaker": r["speaker_id"], "label": int(r["class"]),
                             "sex": r["sexo"], "age": float(r["idade"]), "hospital": r["hospital"]})
    return sorted(rows, key=lambda r: r["speaker"])


def _other_voice(original: Callable) -> Callable:
    def draw(rng, label, severity=None, **kwargs):
        prof = original(rng, label, severity, **kwargs)
        return dataclasses.replace(prof, f0_hz=prof.f0_hz * VOICE_F0, formant_scale=prof.formant_scale * VOICE_FORMANT)

    return draw


def _generate(path: Path, speakers: int, seed: int, *, other_voice: bool = False) -> list[dict]:
    if other_voice:
        from spira_demo import generator

        with mock.patch.object(generator, "draw_profile", _other_voice(generator.draw_profile)):
            demo_dataset(path, speakers, seed, noise_files=0)
    else:
        demo_dataset(path, speakers, seed, noise_files=0)
    return _rows(path)


# --------------------------------------------------------------------------- shifts


def _noise_bank(seed: int = 77, n: int = 6) -> list[np.ndarray]:
    from spira_demo import synth_noise

    return [synth_noise(np.random.default_rng([seed, k]), "ward", 16000, 12.0).astype(np.float64) for k in range(n)]


def _noise_power(mono: np.ndarray, sr: int) -> float:
    block = max(1, int(round(0.01 * sr)))
    k = len(mono) // block
    power = np.mean(np.square(mono[: k * block].reshape(k, block)), axis=1)
    return float(np.mean(np.sort(power)[: max(1, k // 10)]))


def _add_noise(frames: np.ndarray, sr: int, rng: np.random.Generator, bank: list[np.ndarray]) -> np.ndarray:
    n = frames.shape[0]
    src = bank[int(rng.integers(len(bank)))]
    seg_16k = int(np.ceil(n / sr * 16000)) + 2
    start = int(rng.integers(0, max(1, src.size - seg_16k)))
    piece = np.resize(src[start:], seg_16k)
    noise = np.interp(np.arange(n) / sr, np.arange(seg_16k) / 16000.0, piece)
    target = 9.0 * _noise_power(frames.mean(axis=1), sr)  # floor x10: SNR -10 dB
    noise *= np.sqrt(target / max(float(np.mean(noise**2)), 1e-20))
    out = frames + noise[:, None]
    peak = float(np.max(np.abs(out)))
    return out / peak * 0.99 if peak > 0.99 else out


def _telephone(frames: np.ndarray, sr: int) -> np.ndarray:
    sos = signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, frames, axis=0)


def _resample_8k(frames: np.ndarray, sr: int) -> np.ndarray:
    g = np.gcd(8000, sr)
    down = signal.resample_poly(frames, 8000 // g, sr // g, axis=0)
    up = signal.resample_poly(down, sr // g, 8000 // g, axis=0)
    out = np.zeros_like(frames)
    m = min(len(up), len(out))
    out[:m] = up[:m]
    return out


def _shifted(name: str, frames: np.ndarray, sr: int, rng: np.random.Generator, bank: list[np.ndarray]) -> np.ndarray:
    x = frames.astype(np.float64)
    if name == "snr_-10db":
        return _add_noise(x, sr, rng, bank)
    if name == "telephone":
        return _telephone(x, sr)
    if name == "resample_8k":
        return _resample_8k(x, sr)
    if name == "gain_-12db":
        return x * 10.0 ** (-12.0 / 20.0)
    raise ValueError(f"unknown shift {name!r}")


def _wav(frames: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(frames, -1.0, 1.0).astype(np.float32), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


# --------------------------------------------------------------------------- per-clip work


class _Embedder:
    """MFCC (the production front end) -> randomly initialised SpiraConvV2 -> mean window embedding."""

    def __init__(self) -> None:
        import torch

        from spira_lib.config import FeatureConfig, ModelConfig
        from spira_lib.features import FeatureExtractor
        from spira_lib.model import SpiraConvV2, window_frames

        torch.manual_seed(0)
        self.fc, self.mc = FeatureConfig(), ModelConfig()
        self.extractor = FeatureExtractor(self.fc)
        self.model = SpiraConvV2(self.fc.n_features, window_frames(self.mc, self.fc), self.mc).eval()

    def __call__(self, blobs: Sequence[bytes]) -> np.ndarray:
        from spira_lib.audio import decode_audio, preprocess
        from spira_lib.monitoring import clip_embeddings

        sr = self.fc.sample_rate
        feats = [self.extractor(preprocess(decode_audio(b, target_sr=sr)[0], sr)) for b in blobs]
        return clip_embeddings(self.model, feats, model_cfg=self.mc, feat_cfg=self.fc)


def _profiles(blobs: Sequence[bytes]) -> np.ndarray:
    rows = [audio_profile(b) for b in blobs]
    return np.array([[r[k] for k in FEATURE_NAMES] for r in rows], dtype=np.float64)


def _meta(rows: list[dict]) -> dict[str, np.ndarray]:
    return {c: np.array([r[c] for r in rows]) for c in META_COLUMNS}


def _task(tag: str, speakers: int, seed: int, tmp: str, with_embedding: bool) -> dict[str, np.ndarray]:
    """One chunk of one dataset: generate it, shift it (pool), profile (and embed) every variant."""
    import torch

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process per core; restored below for in-process (workers=1) runs
    try:
        return _task_body(tag, speakers, seed, tmp, with_embedding)
    finally:
        torch.set_num_threads(prev_threads)


def _task_body(tag: str, speakers: int, seed: int, tmp: str, with_embedding: bool) -> dict[str, np.ndarray]:
    embed = _Embedder() if with_embedding else None
    out: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    rows = _generate(Path(tmp) / f"{tag}-{seed}", speakers, seed, other_voice=tag == "other_voice")
    blobs = [r["path"].read_bytes() for r in rows]
    out["time/generate_s"] = np.array(time.perf_counter() - t0)

    def add(name: str, clips: list[bytes]) -> None:
        t1 = time.perf_counter()
        out[f"{name}/profiles"] = _profiles(clips)
        out["time/profile_s"] = out.get("time/profile_s", np.array(0.0)) + (time.perf_counter() - t1)
        out["time/audio_s"] = out.get("time/audio_s", np.array(0.0)) + out[f"{name}/profiles"][:, FEATURE_NAMES.index("duration_s")].sum()
        for c, v in _meta(rows).items():
            out[f"{name}/meta/{c}"] = v
        if embed is not None:
            t1 = time.perf_counter()
            out[f"{name}/embeddings"] = embed(clips)
            out["time/embed_s"] = out.get("time/embed_s", np.array(0.0)) + (time.perf_counter() - t1)

    if tag != "pool":
        add(tag, blobs)
        return out
    add("pool/none", blobs)
    bank = _noise_bank()
    decoded = [sf.read(io.BytesIO(b), dtype="float32", always_2d=True) for b in blobs]
    for k, shift in enumerate(SIGNAL_SHIFTS):
        t1 = time.perf_counter()
        rng = np.random.default_rng([9400, seed, k])
        shifted = [_wav(_shifted(shift, frames, sr, rng, bank), sr) for frames, sr in decoded]
        out["time/shift_s"] = out.get("time/shift_s", np.array(0.0)) + (time.perf_counter() - t1)
        add(f"pool/{shift}", shifted)
    return out


def _collect(ctx: Context, sizes: Sizes, tmp: Path, with_embedding: bool, workers: int) -> dict[str, np.ndarray]:
    """Profiles (and embeddings) of the reference, the pool under every shift, and the other-voice pool.

    Each dataset is generated in ``sizes.chunks`` speaker-disjoint parts (own seeds),
    spread over ``workers`` processes and concatenated in order: results do not
    depend on the number of workers or on scheduling.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    tasks = []
    for tag, n, base in (("reference", sizes.reference, 9100), ("pool", sizes.pool, 9200), ("other_voice", sizes.pool, 9300)):
        bounds = np.linspace(0, n, sizes.chunks + 1).astype(int)
        tasks += [(tag, int(b - a), base + i, str(tmp), with_embedding) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]
    ctx.say(f"[drift] generating, shifting and profiling {sizes.reference} + {sizes.pool} + {sizes.pool} demo clips "
            f"in {len(tasks)} chunks on {workers} process(es)")
    if workers <= 1:
        parts_out = [_task(*t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            parts_out = list(pool.map(_task, *zip(*tasks)))
    data: dict[str, np.ndarray] = {}
    for part in parts_out:
        for key, value in part.items():
            if key.startswith("time/"):
                data[key] = data.get(key, np.array(0.0)) + value
            else:
                data[key] = value if key not in data else np.concatenate([data[key], value])
    return data


# --------------------------------------------------------------------------- tests


def _table(profiles: np.ndarray) -> ProfileTable:
    data: dict[str, Any] = {"clip": [str(i) for i in range(len(profiles))]}
    data.update({name: profiles[:, j] for j, name in enumerate(FEATURE_NAMES)})
    return ProfileTable(pl.DataFrame(data))


def _meta_frame(data: dict[str, np.ndarray], tag: str, idx: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({c: data[f"{tag}/meta/{c}"][idx] for c in META_COLUMNS})


def _reference(data: dict[str, np.ndarray], with_embedding: bool) -> tuple[ReferenceProfile, int]:
    n = len(data["reference/profiles"])
    ref = ReferenceProfile.build(
        _table(data["reference/profiles"]), categorical=categorical_counts(_meta_frame(data, "reference", np.arange(n))),
        embeddings=data["reference/embeddings"] if with_embedding else None,
    )
    text = ref.to_json()  # test what a registered model would store, after a round trip
    return ReferenceProfile.from_json(text), len(text.encode())


def _batch_report(ref: ReferenceProfile, data: dict[str, np.ndarray], tag: str, idx: np.ndarray, seed: int, with_embedding: bool):
    emb = data[f"{tag}/embeddings"][idx] if with_embedding else None
    return drift_report(
        ref, _table(data[f"{tag}/profiles"][idx]), batch=f"{tag}#{seed}", cur_embeddings=emb,
        cur_categorical=categorical_counts(_meta_frame(data, tag, idx)), n_permutations=1000, seed=seed,
    )


def _summarise(reports: list) -> dict[str, Any]:
    moved: dict[str, int] = {}
    for r in reports:
        for name in r.moved:
            moved[name] = moved.get(name, 0) + 1
    min_p = [min([f.p_adjusted for f in r.features] + ([r.embedding.p_adjusted] if r.embedding else [])
                 + [c.p_adjusted for c in r.categorical]) for r in reports]
    return {
        "batches": len(reports), "alarms": sum(r.drifted for r in reports),
        "rate": sum(r.drifted for r in reports) / max(1, len(reports)),
        "median_min_p_adjusted": float(np.median(min_p)), "max_min_p_adjusted": float(np.max(min_p)),
        "severity": {s: sum(r.severity == s for r in reports) for s in ("none", "minor", "major")},
        "moved_counts": dict(sorted(moved.items(), key=lambda kv: -kv[1])),
        "embedding_alarms": sum(bool(r.embedding and r.embedding.moved) for r in reports),
    }


def evaluate(data: dict[str, np.ndarray], sizes: Sizes, with_embedding: bool) -> dict[str, Any]:
    ref, ref_bytes = _reference(data, with_embedding)
    n_pool = len(data["pool/none/profiles"])
    conditions: dict[str, list] = {c: [] for c in ("none", *SHIFTS)}
    for seed in range(sizes.seeds):
        idx = np.sort(np.random.default_rng([seed, 1]).choice(n_pool, sizes.batch, replace=False))
        for cond in ("none", *SIGNAL_SHIFTS):
            conditions[cond].append(_batch_report(ref, data, f"pool/{cond}", idx, seed, with_embedding))
        vidx = np.sort(np.random.default_rng([seed, 2]).choice(len(data["other_voice/profiles"]), sizes.batch, replace=False))
        conditions["other_voice"].append(_batch_report(ref, data, "other_voice", vidx, seed, with_embedding))
    extra = [
        _batch_report(ref, data, "pool/none", np.sort(np.random.default_rng([1000 + s, 3]).choice(n_pool, sizes.batch, replace=False)), 1000 + s, with_embedding)
        for s in range(sizes.extra_null)
    ]
    return {
        "reference_json_bytes": ref_bytes,
        "conditions": {c: _summarise(r) for c, r in conditions.items()},
        "extra_null": _summarise(extra),
        "example_report": conditions["telephone"][0].model_dump(mode="json") if conditions["telephone"] else None,
    }


# --------------------------------------------------------------------------- entry points


def _cache_path(ctx: Context, sizes: Sizes) -> Path:
    """Keyed by what shapes the per-clip results: sizes, BENCH_VERSION, the generator's and the profile's source."""
    import spira_demo.generator
    import spira_lib.monitoring.profile

    sources = [Path(spira_demo.generator.__file__), Path(spira_lib.monitoring.profile.__file__)]
    key = stable_hash({"v": BENCH_VERSION, "profile": PROFILE_VERSION, "sizes": dataclasses.asdict(sizes),
                       "sources": [stable_hash(p.read_text()) for p in sources]})[:16]
    return ctx.scratch / "spira-bench-drift-cache" / f"{key}.npz"


def measure(ctx: Context, sizes: Sizes, *, with_embedding: bool = False, use_cache: bool = True, workers: int = 2) -> dict[str, Any]:
    cache = _cache_path(ctx, sizes)
    t0 = time.perf_counter()
    data: dict[str, np.ndarray] = {}
    if use_cache and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        # A cache made with --embedding serves plain runs too; the reverse needs the embeddings computed.
        if with_embedding and "reference/embeddings" not in data:
            data = {}
    cached = bool(data)
    if cached:
        ctx.say(f"[drift] per-clip results from the cache {cache}")
    else:
        with ctx.tempdir("bench-drift") as tmp:
            data = _collect(ctx, sizes, tmp, with_embedding, workers)
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **data)
    collect_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate(data, sizes, with_embedding)
    prof_s, audio_s = float(data["time/profile_s"]), float(data["time/audio_s"])
    result.update({
        "sizes": dataclasses.asdict(sizes), "alpha": ALPHA, "embedding": with_embedding, "cached": cached,
        "collect_s": collect_s, "tests_s": time.perf_counter() - t1,
        "profile_x_realtime": audio_s / prof_s if prof_s > 0 else None,
        "cpu_s": {k.removeprefix("time/"): float(v) for k, v in data.items() if k.startswith("time/")},
        "voice_family": {"f0_scale": VOICE_F0, "formant_scale": VOICE_FORMANT},
    })
    return result


def _sizes_note(sizes: dict[str, int]) -> str:
    note = f"reference {sizes['reference']} clips, batches drawn from {sizes['pool']} pool clips"
    if sizes == dataclasses.asdict(Sizes()):
        note += " (400 each until make bench also ran spira train and make demo: shrunk to stay within 15 minutes)"
    return note


def results_from(m: dict[str, Any]) -> list[Result]:
    conds, n = m["conditions"], m["sizes"]["seeds"]
    batch = m["sizes"]["batch"]
    rows = []
    for shift in SHIFTS:
        c = conds[shift]
        top = ", ".join(list(c["moved_counts"])[:3])
        rows.append(Result(
            name=f"drift.detect.{shift}", value=c["rate"], unit="", target=f">= {TARGET_DETECTION:.2f}",
            passed=check(c["rate"], minimum=TARGET_DETECTION),
            compares=f"batches of {batch} flagged (BH-adjusted p < {ALPHA}) / {n} seeds",
            notes=f"{c['alarms']}/{n}; most moved: {top}; {_sizes_note(m['sizes'])}", extra=c,
        ))
    null = conds["none"]
    rows.append(Result(
        name="drift.false_alarm", value=null["rate"], unit="", target=f"<= {TARGET_FALSE_ALARM:.2f}",
        passed=check(null["rate"], maximum=TARGET_FALSE_ALARM), compares=f"unshifted batches flagged / {n} seeds",
        notes=(f"{null['alarms']}/{n}; resampled null batches: {m['extra_null']['alarms']}/{m['extra_null']['batches']}; "
               f"{_sizes_note(m['sizes'])}"),
        extra={"seeds": null, "resampled": m["extra_null"]},
    ))
    rows.append(Result(
        name="drift.profile_speed", value=m["profile_x_realtime"], unit="x real time", compares="audio seconds / audio_profile seconds (one core)",
        notes="from the cache" if m["cached"] else "", extra={"reference_json_bytes": m["reference_json_bytes"], "collect_s": m["collect_s"],
                                                             "tests_s": m["tests_s"], "embedding": m["embedding"]},
    ))
    return rows


def run(ctx: Context) -> list[Result]:
    """Entry point for ``bench.run_all`` (``--quick`` leaves nothing in the scratch folder)."""
    return results_from(measure(ctx, Sizes.quick() if ctx.quick else Sizes(), use_cache=not ctx.quick))


def _print(m: dict[str, Any]) -> None:
    print(f"\n{'condition':<14} {'alarms':>8} {'rate':>6} {'median min p_adj':>17} {'embedding':>9}  most often moved")
    for cond in ("none", *SHIFTS):
        c = m["conditions"][cond]
        top = ", ".join(f"{k} ({v})" for k, v in list(c["moved_counts"].items())[:4])
        print(f"{cond:<14} {c['alarms']:>4}/{c['batches']:<3} {c['rate']:>6.2f} {c['median_min_p_adjusted']:>17.2g} "
              f"{c['embedding_alarms']:>9}  {top}")
    e = m["extra_null"]
    print(f"{'null, resampled':<14} {e['alarms']:>4}/{e['batches']:<3} {e['rate']:>6.2f} {e['median_min_p_adjusted']:>17.2g}")
    print(f"\nreference JSON: {m['reference_json_bytes'] / 1024:.0f} KiB; profiles {m['profile_x_realtime']:.0f}x real time; "
          f"data {m['collect_s']:.0f} s ({'cached' if m['cached'] else 'generated'}), tests {m['tests_s']:.0f} s")
    print("CPU seconds per stage (summed over workers): " + ", ".join(f"{k} {v:.0f}" for k, v in m["cpu_s"].items() if k != "audio_s"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the results (JSON) here")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--embedding", action="store_true", help="add the MMD test on random-init SpiraConvV2 embeddings (slow on CPU)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache of per-clip results")
    p.add_argument("--scratch", type=Path, default=None, help="scratch/cache folder (default: the system temp dir)")
    p.add_argument("--workers", type=int, default=2, help="processes that generate and profile clips (default 2)")
    ns = p.parse_args(argv)
    ctx = Context(quick=ns.quick)
    if ns.scratch:
        ns.scratch.mkdir(parents=True, exist_ok=True)
        ctx = dataclasses.replace(ctx, scratch=ns.scratch)
    t0 = time.perf_counter()
    m = measure(ctx, Sizes.quick() if ns.quick else Sizes(), with_embedding=ns.embedding, use_cache=not ns.no_cache, workers=ns.workers)
    m["wall_s"] = time.perf_counter() - t0
    _print(m)
    rows = results_from(m)
    print()
    print_table(rows)
    print(f"\nwall time {m['wall_s']:.0f} s")
    if ns.out:
        write_results(rows, ns.out)
        ns.out.with_suffix(".full.json").write_text(json.dumps(m, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

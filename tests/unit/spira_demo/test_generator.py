"""Synthetic SPIRA demo dataset: layout, formats, determinism, and class cues."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spira_demo import (
    CSV_COLUMNS,
    NOISE_KINDS,
    DemoSummary,
    generate_demo_dataset,
    synth_clip,
    synth_noise,
)


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC via the rank-sum statistic (ties count one half)."""
    score = np.asarray(score, dtype=float)
    y = np.asarray(y)
    pos, neg = score[y == 1], score[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def _rows(summary: DemoSummary) -> list[dict]:
    rows = []
    for csv_path in summary.csv_paths:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == CSV_COLUMNS, csv_path
            for row in reader:
                row["_abs"] = Path(csv_path).parent / row["file_path"]
                row["_csv"] = csv_path
                rows.append(row)
    return rows


def _mono(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def _frame_energy_db(x: np.ndarray, sr: int, frame_s: float = 0.02, lo: float = 0.0, hi: float | None = None):
    hop = int(frame_s * sr)
    n = x.size // hop
    frames = x[: n * hop].reshape(n, hop) * np.hanning(hop)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(hop, 1.0 / sr)
    band = (f >= lo) & (f <= (hi if hi is not None else sr / 2))
    return 10 * np.log10(power[:, band].sum(axis=1) + 1e-20), 10 * np.log10(power.sum(axis=1) + 1e-20)


def _pause_fraction(path: Path) -> float:
    """Share of the speech span (after trimming) with little voiced (80-1000 Hz) energy.

    Independent of gain (thresholds are relative to the clip's own levels) and
    of leading/trailing silence (trimmed first), like the real pipeline.
    """
    x, sr = _mono(path)
    low, total = _frame_energy_db(x, sr, lo=80.0, hi=1000.0)
    active = np.flatnonzero(total > np.percentile(total, 95) - 35)
    low = low[active[0] : active[-1] + 1]
    return float(np.mean(low < np.percentile(low, 90) - 15))


@pytest.fixture(scope="module")
def ds60(tmp_path_factory) -> DemoSummary:
    # One 60-speaker set serves the layout checks and the separability check.
    return generate_demo_dataset(tmp_path_factory.mktemp("demo60"), speakers=60, seed=3, noise_files=3)


@pytest.fixture(scope="module")
def rows60(ds60) -> list[dict]:
    return _rows(ds60)


# ----------------------------------------------------------------- layout / CSV


def test_two_csvs_with_spira_columns_and_valid_values(ds60, rows60):
    root = Path(ds60.out_dir)
    assert [Path(p) for p in ds60.csv_paths] == [root / "metadata.csv", root / "hospital_b" / "metadata.csv"]
    assert len(rows60) == ds60.n_clips == 60
    by_csv = {p: [r for r in rows60 if r["_csv"] == p] for p in ds60.csv_paths}
    # About a third of the rows live in the second CSV.
    assert 15 <= len(by_csv[ds60.csv_paths[1]]) <= 25
    assert {r["hospital"] for r in by_csv[ds60.csv_paths[0]]} <= {"HC-SP", "ICESP"}
    assert {r["hospital"] for r in by_csv[ds60.csv_paths[1]]} == {"HU-B"}

    assert len({r["speaker_id"] for r in rows60}) == 60
    for r in rows60:
        assert r["class"] in ("0", "1")
        assert r["sexo"] in ("F", "M")
        assert 18 <= int(r["idade"]) <= 90
        level = int(r["nivel_falta_de_ar"])
        assert level == 0 if r["class"] == "0" else 1 <= level <= 4
    patient_levels = {int(r["nivel_falta_de_ar"]) for r in rows60 if r["class"] == "1"}
    assert len(patient_levels) >= 3, "severity levels should spread over the scale"
    assert {r["sexo"] for r in rows60} == {"F", "M"}


def test_file_paths_are_relative_to_their_csv_and_exist(ds60, rows60):
    for r in rows60:
        rel = r["file_path"]
        assert not rel.startswith("/") and ".." not in rel.split("/"), rel
        assert rel.startswith("audio/")
        assert r["_abs"].is_file(), f"{r['_csv']}: {rel} does not resolve next to the CSV"
    # No label leaks through the file name.
    assert not any(word in r["file_path"].lower() for r in rows60 for word in ("patient", "control", "pac", "ctrl"))


def test_classes_are_balanced(ds60, rows60):
    labels = [int(r["class"]) for r in rows60]
    assert ds60.n_patients == sum(labels) == 30
    assert ds60.n_controls == 30


def test_audio_formats_vary_but_are_mostly_16k_mono_wav(ds60, rows60):
    rates, channels, formats = [], [], []
    for r in rows60:
        info = sf.info(r["_abs"])
        rates.append(info.samplerate)
        channels.append(info.channels)
        formats.append(info.format)
        assert info.subtype == "PCM_16"
        assert 5.0 <= info.duration <= 10.0, f"{r['file_path']}: {info.duration:.2f} s"
    assert set(rates) >= {16000, 22050, 44100}
    assert set(channels) == {1, 2}
    assert set(formats) == {"WAV", "FLAC"}
    plain = sum(sr == 16000 and ch == 1 and fmt == "WAV" for sr, ch, fmt in zip(rates, channels, formats))
    assert plain / len(rows60) > 0.55
    assert ds60.sample_rates == {sr: rates.count(sr) for sr in set(rates)}
    assert ds60.n_stereo == channels.count(2) and ds60.n_flac == formats.count("FLAC")


def test_clips_are_not_clipped_or_silent(ds60, rows60):
    for r in rows60[:20]:
        x, _ = sf.read(r["_abs"], dtype="float64")
        peak = np.max(np.abs(x))
        assert 0.01 < peak < 0.99, f"{r['file_path']}: peak {peak}"


def test_noise_folder_holds_ward_noise_and_no_csv(ds60):
    noise_dir = Path(ds60.noise_dir)
    files = sorted(noise_dir.iterdir())
    assert [p.name for p in files] == ["ward_00.wav", "ward_01.wav", "ward_02.wav"]
    assert [Path(p) for p in ds60.noise_paths] == files
    for p in files:
        info = sf.info(p)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert 10.0 <= info.duration <= 20.0
        x, _ = sf.read(p, dtype="float64")
        assert np.sqrt(np.mean(x**2)) > 1e-3, f"{p.name} is silent"


def test_summary_to_dict_is_json_friendly(ds60):
    import json

    d = json.loads(json.dumps(ds60.to_dict()))
    assert d["n_clips"] == 60 and d["n_patients"] == 30
    assert sum(d["sample_rates"].values()) == 60
    assert d["noise_dir"] == ds60.noise_dir


# ------------------------------------------------------------- determinism


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    # 16 speakers: one full block of the format schedule, so FLAC and stereo are included.
    a = generate_demo_dataset(tmp_path / "a", speakers=16, seed=11, noise_files=1)
    b = generate_demo_dataset(tmp_path / "b", speakers=16, seed=11, noise_files=1)
    c = generate_demo_dataset(tmp_path / "c", speakers=16, seed=12, noise_files=1)
    ta, tb, tc = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b"), _tree_bytes(tmp_path / "c")
    assert a.n_flac >= 1 and a.n_stereo >= 1
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key] == tb[key], f"{key} differs between two runs with the same seed"
    paths = ("out_dir", "csv_paths", "noise_dir", "noise_paths")
    assert {k: v for k, v in a.to_dict().items() if k not in paths} == {
        k: v for k, v in b.to_dict().items() if k not in paths
    }
    # Another seed: other speakers (ids stay disjoint when datasets are merged), other audio.
    ids_a = {r["speaker_id"] for r in _rows(a)}
    ids_c = {r["speaker_id"] for r in _rows(c)}
    assert not ids_a & ids_c
    assert ta["noises/ward_00.wav"] != tc["noises/ward_00.wav"]
    audio_a = sorted(v for k, v in ta.items() if "/audio/" in f"/{k}")
    audio_c = sorted(v for k, v in tc.items() if "/audio/" in f"/{k}")
    assert not set(audio_a) & set(audio_c)


def test_speaker_prefix_and_odd_speaker_count(tmp_path):
    s = generate_demo_dataset(tmp_path, speakers=5, seed=0, noise_files=0, speaker_prefix="new-")
    rows = _rows(s)
    assert sorted(r["speaker_id"] for r in rows) == [f"new-{i:04d}" for i in range(5)]
    assert {s.n_patients, s.n_controls} == {2, 3}
    assert Path(s.noise_dir).is_dir() and not any(Path(s.noise_dir).iterdir())


@pytest.mark.parametrize(
    "kwargs, field",
    [({"speakers": 1}, "speakers"), ({"seed": -1}, "seed"), ({"noise_files": -2}, "noise_files")],
)
def test_invalid_arguments_name_the_parameter(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        generate_demo_dataset(tmp_path, **kwargs)


# ------------------------------------------------------------- class cues


def test_pause_fraction_separates_classes_but_overlaps(rows60):
    y = np.array([int(r["class"]) for r in rows60])
    pause = np.array([_pause_fraction(r["_abs"]) for r in rows60])
    assert pause[y == 1].mean() > pause[y == 0].mean(), "patients should pause more"
    auc = _auc(pause, y)
    print(f"pause-fraction AUC on 60 speakers: {auc:.3f}")
    assert 0.7 < auc < 0.99, f"pause-fraction AUC {auc:.3f}: should be learnable but not trivial"
    # Overlap: several controls pause more than the quieter quarter of patients.
    assert (pause[y == 0] > np.percentile(pause[y == 1], 25)).sum() >= 3


def test_loudness_lead_silence_and_ward_noise_are_not_class_cues(ds60, rows60):
    y = np.array([int(r["class"]) for r in rows60])
    level, lead, duration = [], [], []
    for r in rows60:
        x, sr = _mono(r["_abs"])
        _, total = _frame_energy_db(x, sr)
        level.append(np.percentile(total, 95))
        lead.append(np.argmax(total > np.percentile(total, 95) - 35) * 0.02)
        duration.append(x.size / sr)
    for name, values in (("loudness", level), ("leading silence", lead), ("duration", duration)):
        auc = _auc(np.array(values), y)
        assert 0.25 < auc < 0.75, f"{name} separates the classes (AUC {auc:.2f}): a shortcut"
    # Ward background noise is drawn independently of the class.
    by_class = ds60.ward_noise_by_class
    assert sum(by_class.values()) == ds60.n_ward_noise
    for label in (0, 1):
        assert 0.15 <= by_class.get(label, 0) / 30 <= 0.7


# ------------------------------------------------------------- helpers


def test_synth_clip_shape_range_and_severity_effect():
    rng = np.random.default_rng(0)
    clip = synth_clip(rng, 1, sample_rate=16000, duration_s=6.0)
    assert clip.dtype == np.float32 and clip.shape == (96000,)
    assert np.all(np.isfinite(clip)) and np.max(np.abs(clip)) <= 1.0
    assert synth_clip(np.random.default_rng(1), 0, sample_rate=22050, duration_s=2.0).shape == (44100,)

    def voiced_share(x: np.ndarray) -> float:
        low, _ = _frame_energy_db(x.astype(np.float64), 16000, lo=80.0, hi=1000.0)
        return float(np.mean(low > np.percentile(low, 90) - 15))

    mild = [voiced_share(synth_clip(np.random.default_rng(i), 0, duration_s=7.0, severity=0.0)) for i in range(4)]
    severe = [voiced_share(synth_clip(np.random.default_rng(i), 1, duration_s=7.0, severity=1.0)) for i in range(4)]
    assert np.mean(severe) < np.mean(mild) - 0.05, (mild, severe)
    with pytest.raises(ValueError, match="label"):
        synth_clip(rng, 2)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_synth_noise_kinds(kind):
    x = synth_noise(np.random.default_rng(4), kind, 16000, 2.0)
    assert x.dtype == np.float32 and x.shape == (32000,)
    assert np.all(np.isfinite(x)) and 0 < np.max(np.abs(x)) <= 0.95
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 1e-3


def test_synth_noise_has_the_expected_character():
    sr = 16000
    spec = lambda x: np.abs(np.fft.rfft(x.astype(np.float64))) ** 2  # noqa: E731
    f = np.fft.rfftfreq(4 * sr, 1.0 / sr)
    hum = spec(synth_noise(np.random.default_rng(5), "hum", sr, 4.0))
    # Mains hum: 60 Hz and its harmonics dominate the spectrum.
    assert abs(f[np.argmax(hum)] % 60.0) < 1.0 or abs(f[np.argmax(hum)] % 60.0 - 60.0) < 1.0
    beeps = spec(synth_noise(np.random.default_rng(5), "beeps", sr, 4.0))
    assert 800.0 <= f[np.argmax(beeps)] <= 1300.0
    with pytest.raises(ValueError, match="babble"):
        synth_noise(np.random.default_rng(0), "traffic", sr, 1.0)

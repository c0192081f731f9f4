"""Validation: each kind of bad row is quarantined with a plain reason and a reason code, and the good rows go on."""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import AudioConfig, ModelConfig, SpiraConfig, ValidationConfig
from spira_lib.dataset import snapshot
from spira_lib.validation import validate
from tests.unit.spira_lib.validation._helpers import encode, voice


HEADER = "file_path,class,sexo,idade,nivel_falta_de_ar,speaker_id,split"


def config(**validation) -> SpiraConfig:
    # Short clips keep the tests fast; the model window must fit in the minimum duration.
    v = {"min_clips": 4, "min_clips_per_class": 2, "max_quarantined_fraction": 0.5, **validation}
    return SpiraConfig(
        audio=AudioConfig(min_duration_s=0.5),
        model=ModelConfig(window_s=0.5, step_s=0.25),
        validation=ValidationConfig(**v),
    )


GOOD = {f"g{i}.wav": (i % 2, encode(voice(i))) for i in range(6)}


def dataset(extra_files: dict[str, bytes] | None = None, extra_lines: list[str] | None = None) -> MemoryStore:
    """Six good clips (three per class) plus whatever the test adds."""
    store = MemoryStore()
    lines = []
    for i, (key, (label, data)) in enumerate(GOOD.items()):
        store.put(key, data)
        lines.append(f"{key},{label},M,40,1,spk{i},")
    for key, data in (extra_files or {}).items():
        store.put(key, data)
    lines += extra_lines or []
    store.put("metadata.csv", ("\n".join([HEADER, *lines]) + "\n").encode())
    return store


def run(store, cfg: SpiraConfig | None = None, **kw):
    return validate(store, snapshot(store), cfg or config(), **kw)


def wav_bytes_truncated() -> bytes:
    data = encode(voice(50), subtype="PCM_16")
    return data[: len(data) // 2]


def nan_clip() -> bytes:
    x = voice(51)
    x[300] = np.nan
    return encode(x)


def clipped_clip() -> bytes:
    loud = 2.0 * np.random.default_rng(52).standard_normal(9600)
    return encode(np.clip(loud, -1, 1).astype(np.float32))


CASES = {
    "missing file": ({}, ["x.wav,1,M,40,1,sx,"], {"x.wav": ("missing_file", "audio file not found: x.wav")}),
    "label 2": (
        {"x.wav": encode(voice(60))},
        ["x.wav,2,M,40,1,sx,"],
        {"x.wav": ("bad_label", "invalid label '2' in column 'class' (expected 0 or 1)")},
    ),
    "label sim": (
        {"x.wav": encode(voice(61))},
        ["x.wav,sim,M,40,1,sx,"],
        {"x.wav": ("bad_label", "invalid label 'sim'")},
    ),
    "non-numeric age": (
        {"x.wav": encode(voice(62))},
        ["x.wav,1,M,abc,1,sx,"],
        {"x.wav": ("bad_age", "non-numeric age 'abc' in column 'idade'")},
    ),
    "age out of range": (
        {"x.wav": encode(voice(63))},
        ["x.wav,1,M,150,1,sx,"],
        {"x.wav": ("bad_age", "age 150 is outside the accepted range 0-120")},
    ),
    "unreadable": (
        {"x.wav": b"definitely not audio" * 20},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("unreadable", "unreadable audio")},
    ),
    "truncated": (
        {"x.wav": wav_bytes_truncated()},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("truncated", "truncated WAV")},
    ),
    "empty file": ({"x.wav": b""}, ["x.wav,1,M,40,1,sx,"], {"x.wav": ("empty_file", "empty file (0 bytes)")}),
    "zero-length": (
        {"x.wav": encode(np.zeros(0, np.float32))},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("zero_length", "zero-length clip")},
    ),
    "near-silent": (
        {"x.wav": encode(voice(64, amp=1e-5))},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("silent", "near-silent clip")},
    ),
    "too short": (
        {"x.wav": encode(voice(65, seconds=0.3))},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("too_short", "clip is 0.3 s, shorter than the 0.5 s window")},
    ),
    "clipped": ({"x.wav": clipped_clip()}, ["x.wav,1,M,40,1,sx,"], {"x.wav": ("clipped", "clipped: ")}),
    "nan samples": (
        {"x.wav": nan_clip()},
        ["x.wav,1,M,40,1,sx,"],
        {"x.wav": ("nan_samples", "1 of 9600 samples are NaN or infinite")},
    ),
    "duplicate, same label": (
        {"x.wav": GOOD["g2.wav"][1]},
        ["x.wav,0,M,40,1,sx,"],
        {"x.wav": ("duplicate", "duplicate of g2.wav")},
    ),
    "same file listed twice": (
        {},
        ["g2.wav,0,M,40,1,spk2,"],
        {"g2.wav": ("duplicate", "duplicate of g2.wav (also listed in metadata.csv row 3)")},
    ),
    "duplicate, conflicting labels": (
        {"x.wav": GOOD["g2.wav"][1]},
        ["x.wav,1,M,40,1,sx,"],
        {
            "x.wav": ("label_conflict", "same audio as g2.wav but the labels disagree (0 vs 1)"),
            "g2.wav": ("label_conflict", "same audio as x.wav but the labels disagree (0 vs 1)"),
        },
    ),
    "speaker in two splits": (
        {"x.wav": encode(voice(66)), "y.wav": encode(voice(67))},
        ["x.wav,1,M,40,1,L,train", "y.wav,1,M,40,1,L,test"],
        {
            "x.wav": ("speaker_leak", "speaker 'L' appears in more than one split (test, train)"),
            "y.wav": ("speaker_leak", "speaker 'L' appears in more than one split (test, train)"),
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_quarantined_and_good_rows_continue(case):
    files, lines, expected = CASES[case]
    result = run(dataset(files, lines))
    got = {(q.file, q.row): q for q in result.quarantine}
    assert sorted(q.file for q in result.quarantine) == sorted(expected), result.quarantine
    for q in got.values():
        kind, reason = expected[q.file]
        assert q.kind == kind
        assert reason in q.reason
        assert q.csv == "metadata.csv"
    quarantined_rows = {(q.csv, q.row) for q in result.quarantine}
    assert len(quarantined_rows) == len(result.quarantine)  # one entry per row
    good_rows = set(result.good.select("source_csv", "row").iter_rows())
    assert good_rows.isdisjoint(quarantined_rows)
    assert len(good_rows) + len(quarantined_rows) == 6 + len(lines)
    assert result.ok, result.message


def test_quarantine_points_at_the_csv_row():
    result = run(dataset({"x.wav": encode(voice(70))}, ["x.wav,9,M,40,1,sx,"]))
    (entry,) = result.quarantine
    assert entry.to_dict() == {
        "file": "x.wav",
        "reason": "invalid label '9' in column 'class' (expected 0 or 1)",
        "csv": "metadata.csv",
        "row": 7,
        "kind": "bad_label",
    }
    table = result.quarantine_table()
    assert table.columns == ["file", "reason", "csv", "row", "kind"] and table.height == 1


def test_good_rows_carry_duration_and_original_rate():
    stereo = np.stack([voice(80, sr=44100), voice(81, sr=44100)], axis=1)
    result = run(dataset({"s.flac": encode(stereo, 44100, "FLAC", "PCM_16")}, ["s.flac,1,F,40,1,ss,"]))
    assert result.ok and not result.quarantine
    good = {k: (d, r) for k, d, r in result.good.select("key", "duration_s", "orig_sample_rate").iter_rows()}
    assert good["s.flac"] == (pytest.approx(0.6), 44100)
    assert good["g0.wav"] == (pytest.approx(0.6), 16000)


def test_ok_message_summarises_counts():
    result = run(dataset({}, ["x.wav,1,M,40,1,sx,"]))
    assert result.ok
    assert result.message == (
        "6 of 7 clips passed validation (class 0 (control): 3, class 1 (patient): 3); 1 quarantined (1 missing file)"
    )


def test_not_enough_data_gives_a_clear_message():
    lines = [f"m{i}.wav,{i % 2},M,40,1,m{i}," for i in range(4)]
    result = run(dataset({}, lines), config(min_clips=8))
    assert not result.ok
    assert result.message.startswith("only 6 of 10 clips passed validation (need 8): 4 quarantined (4 missing file)")


def test_too_few_clips_of_one_class():
    store = dataset()
    result = run(store, config(min_clips_per_class=4))
    assert not result.ok
    assert "class 0 (control) has 3 good clips (need 4)" in result.message
    assert "class 1 (patient) has 3 good clips (need 4)" in result.message


def test_too_much_quarantined():
    lines = [f"m{i}.wav,{i % 2},M,40,1,m{i}," for i in range(5)]
    result = run(dataset({}, lines), config(max_quarantined_fraction=0.3))
    assert not result.ok
    assert "45% of rows were quarantined (limit 30%)" in result.message


def test_everything_broken_does_not_raise():
    store = MemoryStore()
    store.put("metadata.csv", (HEADER + "\na.wav,1,M,40,1,a,\nb.wav,x,M,40,1,b,\n").encode())
    result = run(store)
    assert not result.ok
    assert result.good.height == 0
    assert "duration_s" in result.good.columns
    assert [q.kind for q in result.quarantine] == ["missing_file", "missing_file"]
    # Every problem of a row is reported, not just the first.
    assert result.quarantine[1].reason == (
        "audio file not found: b.wav; invalid label 'x' in column 'class' (expected 0 or 1)"
    )


def test_empty_dataset_is_not_ok():
    result = validate(MemoryStore(), snapshot(MemoryStore()), config())
    assert not result.ok and "no metadata rows" in result.message


class CountingStore:
    def __init__(self, inner) -> None:
        self.inner, self.gets, self._lock = inner, Counter(), threading.Lock()

    @property
    def uri(self):
        return self.inner.uri

    def get(self, key):
        with self._lock:
            self.gets[key] += 1
        return self.inner.get(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def exists(self, key):
        return self.inner.exists(key)

    def put(self, key, data):
        self.inner.put(key, data)

    def delete(self, key):
        self.inner.delete(key)

    def local_path(self, key):
        return None


def test_clip_cache_skips_decoding_known_content():
    store = CountingStore(dataset({"x.wav": encode(voice(90, seconds=0.3))}, ["x.wav,1,M,40,1,sx,"]))
    snap = snapshot(store)
    cache: dict = {}
    first = validate(store, snap, config(), clip_cache=cache)
    assert len(cache) == 7

    store.gets.clear()
    second = validate(store, snap, config(), clip_cache=cache)
    assert not [k for k in store.gets if k.endswith(".wav")]
    assert second.quarantine == first.quarantine
    assert second.good.equals(first.good)

    # Results made under other audio settings are not trusted.
    looser = SpiraConfig(
        audio=AudioConfig(min_duration_s=0.25),
        model=ModelConfig(window_s=0.25, step_s=0.25),
        validation=ValidationConfig(min_clips=4, min_clips_per_class=2),
    )
    store.gets.clear()
    third = validate(store, snap, looser, clip_cache=cache)
    assert store.gets["x.wav"] == 1
    assert third.quarantine == []


def test_file_changed_after_snapshot_is_quarantined():
    store = dataset()
    snap = snapshot(store)
    store.put("g1.wav", encode(voice(99)))
    result = validate(store, snap, config())
    assert [(q.file, q.kind) for q in result.quarantine] == [("g1.wav", "changed")]


def test_validate_local_folder_with_flac(tmp_path):
    store = LocalFolderStore(tmp_path)
    for i in range(6):
        store.put(f"audios/c{i}.flac", encode(voice(200 + i), fmt="FLAC", subtype="PCM_16"))
    store.put("audios/short.flac", encode(voice(210, seconds=0.2), fmt="FLAC", subtype="PCM_16"))
    rows = [f"audios/c{i}.flac,{i % 2},F,30,0" for i in range(6)] + ["audios/short.flac,1,F,30,0"]
    store.put("meta.csv", ("file_path,class,sexo,idade,nivel_falta_de_ar\n" + "\n".join(rows) + "\n").encode())
    result = run(store)
    assert result.ok
    assert [(q.file, q.kind) for q in result.quarantine] == [("audios/short.flac", "too_short")]
    assert result.good.height == 6


def test_a_file_over_the_configured_size_limit_is_quarantined_unread():
    big = encode(voice(91, seconds=2.0))  # 2 s of float32 at 16 kHz: 128 kB
    store = CountingStore(dataset({"big.wav": big}, ["big.wav,1,M,40,1,sb,"]))
    cfg = config().model_copy(update={"audio": AudioConfig(min_duration_s=0.5, max_file_mb=0.1)})
    snap = snapshot(store)  # the snapshot's own limit is the default; the run's config is stricter
    store.gets.clear()
    result = validate(store, snap, cfg)
    entry = next(q for q in result.quarantine if q.file == "big.wav")
    assert entry.kind == "too_large" and "larger than the 0.1 MB limit (audio.max_file_mb)" in entry.reason
    assert store.gets["big.wav"] == 0


def test_limits_of_the_audio_config_reach_the_clip_checks():
    from spira_lib.validation import check_clip

    data = encode(voice(92, seconds=1.0))
    assert check_clip(data, AudioConfig(min_duration_s=0.5, max_clip_s=0.9)).code == "too_long"
    assert check_clip(data, AudioConfig(min_duration_s=0.5, min_sample_rate=22050)).code == "bad_sample_rate"
    assert check_clip(data, AudioConfig(min_duration_s=0.5, max_file_mb=0.01)).code == "too_large"
    assert check_clip(data, AudioConfig(min_duration_s=0.5)).ok

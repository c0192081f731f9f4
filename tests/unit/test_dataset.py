"""Metadata reading, snapshots, the content digest, splits and summaries."""
from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import Counter

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import SplitConfig
from spira_lib.dataset import (
    MANIFEST_SCHEMA,
    DatasetError,
    assign_splits,
    find_metadata_csvs,
    manifest_digest,
    manifest_from_bytes,
    manifest_to_bytes,
    read_metadata,
    snapshot,
    summarize,
)

HEADER = "file_path,class,sexo,idade,nivel_falta_de_ar"


def wav(seed: int, seconds: float = 0.2, sr: int = 8000) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def csv(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


class CountingStore:
    """Wraps a store and counts get() calls per key (thread-safe: snapshot reads in parallel)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gets: Counter = Counter()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key):
        with self._lock:
            self.gets[key] += 1
        return self.inner.get(key)

    def put(self, key, data):
        self.inner.put(key, data)

    def exists(self, key):
        return self.inner.exists(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def delete(self, key):
        self.inner.delete(key)

    def local_path(self, key):
        return self.inner.local_path(key)


def small_store() -> MemoryStore:
    store = MemoryStore()
    store.put("a.wav", wav(1))
    store.put("b.wav", wav(2))
    store.put("c.wav", wav(3))
    store.put("metadata.csv", csv("a.wav,1,M,50,2", "b.wav,0,F,30,0", "c.wav,1,F,61,3"))
    return store


# --------------------------------------------------------------------------- reading CSVs


def test_read_metadata_builds_canonical_rows():
    store = MemoryStore()
    store.put(
        "hosp/meta.csv",
        csv(
            "audios/p1.wav,1,masculino,45,2,S1,HC,Train",
            "./audios/../audios/c1.flac,0,F,\"33,5\",0,,HC,validation",
            header=HEADER + ",speaker_id,hospital,split",
        ),
    )
    df = read_metadata(store, "hosp/meta.csv")
    assert df.columns == list(MANIFEST_SCHEMA)
    assert df["key"].to_list() == ["hosp/audios/p1.wav", "hosp/audios/c1.flac"]
    assert df["label"].to_list() == [1, 0] and df["label"].dtype == pl.Int8
    assert df["sex"].to_list() == ["M", "F"]
    assert df["age"].to_list() == [45.0, 33.5]
    assert df["dyspnea"].to_list() == ["2", "0"]
    assert df["speaker_id"].to_list() == ["S1", "c1"]  # given, else the file stem
    assert df["speaker_derived"].to_list() == [False, True]
    assert df["hospital"].to_list() == ["HC", "HC"]
    assert df["split"].to_list() == ["train", "eval"]
    assert df["row"].to_list() == [1, 2]
    assert df["source_csv"].to_list() == ["hosp/meta.csv"] * 2
    assert df["problem"].to_list() == [None, None]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("a.wav,2,M,40,1", "invalid label '2' in column 'class' (expected 0 or 1)"),
        ("a.wav,sim,M,40,1", "invalid label 'sim' in column 'class' (expected 0 or 1)"),
        ("a.wav,,M,40,1", "missing label in column 'class'"),
        ("a.wav,1,M,quarenta,1", "non-numeric age 'quarenta' in column 'idade'"),
        ("../outside.wav,1,M,40,1", "file_path '../outside.wav' points outside the dataset"),
        ("/abs/a.wav,1,M,40,1", "file_path '/abs/a.wav' is absolute; it must be relative to the CSV's folder"),
        (",1,M,40,1", "file_path is empty"),
    ],
)
def test_bad_cells_become_row_problems_not_errors(line, problem):
    store = MemoryStore()
    store.put("meta.csv", csv("ok.wav,0,F,20,0", line))
    df = read_metadata(store, "meta.csv")
    assert df.height == 2
    assert df["problem"].to_list() == [None, problem]


def test_blank_rows_are_skipped_but_row_numbers_follow_the_file():
    store = MemoryStore()
    store.put("meta.csv", csv("a.wav,1,M,40,1", "", "b.wav,0,F,30,0", ",,,,"))
    df = read_metadata(store, "meta.csv")
    assert df["key"].to_list() == ["a.wav", "b.wav"]
    assert df["row"].to_list() == [1, 3]
    assert df["problem"].to_list() == [None, None]


def test_missing_required_columns_name_the_csv_and_columns():
    store = MemoryStore()
    store.put("sub/meta.csv", b"file_path,sexo,nivel_falta_de_ar\na.wav,M,1\n")
    with pytest.raises(DatasetError, match=r"'sub/meta.csv' is missing required column\(s\): class, idade"):
        read_metadata(store, "sub/meta.csv")


def test_empty_csv_is_a_dataset_error():
    store = MemoryStore()
    store.put("meta.csv", b"")
    with pytest.raises(DatasetError, match="'meta.csv' is empty"):
        read_metadata(store, "meta.csv")


def test_semicolon_cp1252_csv_from_excel():
    store = MemoryStore()
    text = "File_Path;Class;Sexo;Idade;Nivel_Falta_De_Ar;Hospital\r\nx.wav;1;F;70,0;3;São Paulo\r\n"
    store.put("meta.csv", text.encode("cp1252"))
    df = read_metadata(store, "meta.csv")
    assert df["hospital"].to_list() == ["São Paulo"]
    assert df["age"].to_list() == [70.0]
    assert df["label"].to_list() == [1]


def test_find_metadata_csvs_skips_noise_and_hidden_folders():
    store = MemoryStore()
    for key in ["b/meta.csv", "a.csv", "noises/list.csv", ".ipynb_checkpoints/a-checkpoint.csv", "x.wav"]:
        store.put(key, b"x")
    assert find_metadata_csvs(store) == ["a.csv", "b/meta.csv"]
    assert find_metadata_csvs(store, noise_dir="other") == ["a.csv", "b/meta.csv", "noises/list.csv"]


# --------------------------------------------------------------------------- snapshot


def test_snapshot_reads_several_csvs_with_relative_paths():
    store = MemoryStore()
    store.put("hc/audio/p1.wav", wav(1))
    store.put("hc/meta.csv", csv("audio/p1.wav,1,M,50,2"))
    store.put("ctrl/c1.wav", wav(2))
    store.put("ctrl/lists/meta.csv", csv("../c1.wav,0,F,30,0", "../gone.wav,0,F,31,0"))
    snap = snapshot(store)
    assert snap.csvs == ["ctrl/lists/meta.csv", "hc/meta.csv"]
    m = snap.manifest.sort("key")
    assert m["key"].to_list() == ["ctrl/c1.wav", "ctrl/gone.wav", "hc/audio/p1.wav"]
    assert m["sha256"].to_list() == [
        hashlib.sha256(wav(2)).hexdigest(),
        None,
        hashlib.sha256(wav(1)).hexdigest(),
    ]
    assert m["size"].to_list() == [len(wav(2)), None, len(wav(1))]
    assert m["problem"].to_list() == [None, "audio file not found: ctrl/gone.wav", None]
    assert len(snap.digest) == 64


def test_snapshot_of_local_folder(tmp_path):
    (tmp_path / "audios").mkdir()
    (tmp_path / "audios" / "a.wav").write_bytes(wav(4))
    (tmp_path / "metadata.csv").write_bytes(csv("audios/a.wav,1,M,50,2"))
    (tmp_path / "noises").mkdir()
    (tmp_path / "noises" / "n.csv").write_bytes(b"not,metadata\n")
    snap = snapshot(LocalFolderStore(tmp_path))
    assert snap.csvs == ["metadata.csv"]
    assert snap.manifest["sha256"].to_list() == [hashlib.sha256(wav(4)).hexdigest()]


def test_snapshot_raises_on_structurally_broken_csv():
    store = small_store()
    store.put("other.csv", b"name,value\nx,1\n")
    with pytest.raises(DatasetError, match="'other.csv' is missing required column"):
        snapshot(store)


def test_hash_cache_avoids_rereading_unchanged_audio():
    inner = small_store()
    store = CountingStore(inner)
    cache: dict = {}
    first = snapshot(store, hash_cache=cache)
    assert sum(store.gets[k] for k in ("a.wav", "b.wav", "c.wav")) == 3
    assert len(cache) == 3

    store.gets.clear()
    second = snapshot(store, hash_cache=cache)
    assert second.digest == first.digest
    assert [k for k in store.gets if k.endswith(".wav")] == []  # no audio downloaded
    assert store.gets["metadata.csv"] == 1

    inner.put("b.wav", wav(99))  # content (and so the etag) changes
    store.gets.clear()
    third = snapshot(store, hash_cache=cache)
    assert {k for k in store.gets if k.endswith(".wav")} == {"b.wav"}
    assert third.digest != first.digest


def test_without_cache_every_audio_file_is_read():
    store = CountingStore(small_store())
    snapshot(store)
    snapshot(store)
    assert store.gets["a.wav"] == 2


# --------------------------------------------------------------------------- digest


def test_digest_ignores_renames_and_row_order():
    store = small_store()
    base = snapshot(store).digest

    renamed = MemoryStore()
    renamed.put("audio/x1.wav", wav(3))
    renamed.put("audio/x2.wav", wav(1))
    renamed.put("audio/x3.wav", wav(2))
    renamed.put("lists/all.csv", csv("../audio/x1.wav,1,F,61,3", "../audio/x3.wav,0,F,30,0", "../audio/x2.wav,1,M,50,2"))
    assert snapshot(renamed).digest == base


def test_digest_ignores_renames_with_given_speaker_ids():
    header = HEADER + ",speaker_id"
    a, b = MemoryStore(), MemoryStore()
    a.put("one.wav", wav(1))
    a.put("m.csv", csv("one.wav,1,M,50,2,S9", header=header))
    b.put("renamed.wav", wav(1))
    b.put("m.csv", csv("renamed.wav,1,M,50,2,S9", header=header))
    assert snapshot(a).digest == snapshot(b).digest


def test_digest_changes_with_label_or_new_clip():
    store = small_store()
    base = snapshot(store).digest

    store.put("metadata.csv", csv("a.wav,0,M,50,2", "b.wav,0,F,30,0", "c.wav,1,F,61,3"))
    relabelled = snapshot(store).digest
    assert relabelled != base

    store.put("metadata.csv", csv("a.wav,1,M,50,2", "b.wav,0,F,30,0", "c.wav,1,F,61,3", "d.wav,0,M,22,0"))
    store.put("d.wav", wav(4))
    grown = snapshot(store).digest
    assert grown not in (base, relabelled)


def test_digest_treats_equal_ages_alike():
    store = small_store()
    base = snapshot(store).digest
    store.put("metadata.csv", csv("a.wav,1,M,50.0,2", "b.wav,0,F,30,0", "c.wav,1,F,61,3"))
    assert snapshot(store).digest == base


# --------------------------------------------------------------------------- splits


def synthetic_manifest(n_speakers: int, clips_per_speaker: int = 2, start: int = 0) -> pl.DataFrame:
    cols: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA}
    for s in range(start, start + n_speakers):
        for j in range(clips_per_speaker):
            key = f"spk{s:04d}_{j}.wav"
            row = {
                "key": key, "sha256": hashlib.sha256(key.encode()).hexdigest(), "size": 10,
                "label": s % 2, "sex": "M", "age": 40.0, "dyspnea": "0", "speaker_id": f"spk{s:04d}",
                "speaker_derived": False, "hospital": None, "split": None, "source_csv": "m.csv",
                "row": len(cols["key"]) + 1, "problem": None,
            }  # fmt: skip
            for c, v in row.items():
                cols[c].append(v)
    return pl.DataFrame(cols, schema=MANIFEST_SCHEMA)


def speaker_splits(df: pl.DataFrame) -> dict[str, str]:
    return dict(df.select("speaker_id", "split").unique().iter_rows())


def test_splits_are_speaker_disjoint_and_stratified():
    cfg = SplitConfig(eval_fraction=0.15, test_fraction=0.2, seed=3)
    out = assign_splits(synthetic_manifest(400), cfg)
    assert out["split"].null_count() == 0
    per_speaker = out.group_by("speaker_id").agg(pl.col("split").n_unique().alias("n"))
    assert per_speaker["n"].max() == 1  # no speaker in two splits
    for label in (0, 1):
        speakers = out.filter(pl.col("label") == label).unique("speaker_id")
        share = speakers["split"].value_counts(normalize=True)
        frac = dict(share.iter_rows())
        assert frac["test"] == pytest.approx(0.2, abs=0.07)
        assert frac["eval"] == pytest.approx(0.15, abs=0.07)
        assert frac["train"] == pytest.approx(0.65, abs=0.08)


def test_splits_are_deterministic_and_seeded():
    m = synthetic_manifest(60)
    a = assign_splits(m, SplitConfig(seed=1))
    b = assign_splits(m, SplitConfig(seed=1))
    c = assign_splits(m, SplitConfig(seed=2))
    assert a["split"].to_list() == b["split"].to_list()
    assert a["split"].to_list() != c["split"].to_list()


def test_adding_speakers_does_not_move_existing_ones():
    cfg = SplitConfig()
    before = speaker_splits(assign_splits(synthetic_manifest(100), cfg))
    grown = pl.concat([synthetic_manifest(100), synthetic_manifest(10, start=100)])
    after = speaker_splits(assign_splits(grown, cfg))
    assert {s: after[s] for s in before} == before
    assert len(after) == 110


def test_row_order_does_not_change_splits():
    m = synthetic_manifest(50)
    a = speaker_splits(assign_splits(m, SplitConfig()))
    b = speaker_splits(assign_splits(m.reverse(), SplitConfig()))
    assert a == b


def test_given_splits_are_kept_and_fill_the_speaker():
    m = synthetic_manifest(40).with_columns(
        pl.when(pl.col("key") == "spk0003_0.wav").then(pl.lit("test")).otherwise(pl.col("split")).alias("split")
    )
    out = assign_splits(m, SplitConfig())
    assert out.filter(pl.col("speaker_id") == "spk0003")["split"].to_list() == ["test", "test"]


def test_fully_given_splits_are_left_alone():
    m = synthetic_manifest(4).with_columns(pl.lit("eval").alias("split"))
    assert assign_splits(m, SplitConfig())["split"].to_list() == ["eval"] * 8


def test_tiny_dataset_gets_each_class_in_each_split():
    for seed in range(10):
        out = assign_splits(synthetic_manifest(6, clips_per_speaker=1), SplitConfig(seed=seed))
        pairs = set(out.select("split", "label").iter_rows())
        assert pairs == {(s, c) for s in ("train", "eval", "test") for c in (0, 1)}, seed


def test_stem_derived_speakers_keep_their_split_when_renamed():
    store = MemoryStore()
    lines = []
    for i in range(30):
        store.put(f"f{i}.wav", wav(i))
        lines.append(f"f{i}.wav,{i % 2},M,40,0")
    store.put("m.csv", csv(*lines))
    renamed = MemoryStore()
    for i in range(30):
        renamed.put(f"new_{i}.wav", wav(i))
    renamed.put("m.csv", csv(*[ln.replace(f"f{i}.wav", f"new_{i}.wav") for i, ln in enumerate(lines)]))

    def by_sha(s):
        out = assign_splits(snapshot(s).manifest, SplitConfig())
        return dict(out.select("sha256", "split").iter_rows())

    assert by_sha(store) == by_sha(renamed)


# --------------------------------------------------------------------------- summary and persistence


def test_summarize_counts_with_string_keys():
    store = small_store()
    store.put("metadata.csv", csv("a.wav,1,M,50,2,H1,train", "b.wav,0,F,30,0,,test", "c.wav,1,F,61,3,H1,", header=HEADER + ",hospital,split"))
    summary = summarize(snapshot(store).manifest)
    assert summary["n_clips"] == 3
    assert summary["counts"]["class"] == {"0": 1, "1": 2}
    assert summary["counts"]["split"] == {"test": 1, "train": 1, "unassigned": 1}
    assert summary["counts"]["sex"] == {"F": 2, "M": 1}
    assert summary["counts"]["hospital"] == {"H1": 2, "unknown": 1}
    json.dumps(summary)


def test_manifest_round_trips_through_parquet():
    m = snapshot(small_store()).manifest
    back = manifest_from_bytes(manifest_to_bytes(m))
    assert back.equals(m)
    assert back.schema == m.schema
    assert manifest_digest(back) == manifest_digest(m)


def test_manifest_from_bad_bytes_is_a_dataset_error():
    with pytest.raises(DatasetError, match="not valid parquet"):
        manifest_from_bytes(b"nope")

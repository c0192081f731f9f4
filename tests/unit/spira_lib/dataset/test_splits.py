"""Speaker-disjoint, stratified, seeded and stable splits."""
from __future__ import annotations

import hashlib

import polars as pl
import pytest

from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import SplitConfig
from spira_lib.dataset import MANIFEST_SCHEMA, assign_splits, snapshot
from tests.unit.spira_lib.dataset._helpers import csv, wav


def synthetic_manifest(n_speakers: int, clips_per_speaker: int = 2, start: int = 0) -> pl.DataFrame:
    cols: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA}
    for s in range(start, start + n_speakers):
        for j in range(clips_per_speaker):
            key = f"spk{s:04d}_{j}.wav"
            row = {
                "key": key, "sha256": hashlib.sha256(key.encode()).hexdigest(), "size": 10,
                "label": s % 2, "sex": "M", "age": 40.0, "dyspnea": "0", "speaker_id": f"spk{s:04d}",
                "speaker_derived": False, "hospital": None, "split": None, "source_csv": "m.csv",
                "row": len(cols["key"]) + 1, "problem_code": None, "problem": None,
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

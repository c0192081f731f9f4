"""The manifest: its content digest, summaries and stored form."""
from __future__ import annotations

import json

import pytest

from spira_lib.adapters.memory import MemoryStore
from spira_lib.dataset import DatasetError, manifest_digest, manifest_from_bytes, manifest_to_bytes, snapshot, summarize
from tests.unit.spira_lib.dataset._helpers import HEADER, csv, small_store, wav


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

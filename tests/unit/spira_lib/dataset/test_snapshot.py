"""Snapshots: several CSVs, relative paths, content hashes and the hash cache."""
from __future__ import annotations

import hashlib
import threading
from collections import Counter

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.dataset import DatasetError, snapshot
from tests.unit.spira_lib.dataset._helpers import csv, small_store, wav


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

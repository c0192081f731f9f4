"""Snapshots: several CSVs, relative paths, content hashes and the hash cache."""
from __future__ import annotations

import hashlib
import os
import threading
import unicodedata
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


# --- files that are not what file_path promises -----------------------------------------------------
def test_an_oversized_file_is_refused_from_the_listing_without_reading():
    store = CountingStore(small_store())
    snap = snapshot(store, max_file_bytes=len(wav(1)) - 1)
    assert set(snap.manifest["problem_code"].to_list()) == {"too_large"}
    assert "larger than the" in snap.manifest["problem"][0] and "it was not read" in snap.manifest["problem"][0]
    assert [k for k in store.gets if k.endswith(".wav")] == []


def test_file_path_to_a_csv_or_a_noise_recording_is_not_a_clip():
    store = small_store()
    store.put("noises/ward.wav", wav(9))
    store.put("metadata.csv", csv("a.wav,1,M,50,2", "metadata.csv,0,F,30,0", "noises/ward.wav,1,F,61,3"))
    m = snapshot(store).manifest
    assert m["problem_code"].to_list() == [None, "bad_path", "bad_path"]
    assert "metadata CSV" in m["problem"][1] and "noise folder" in m["problem"][2]


def test_local_folder_unlisted_files_get_precise_reasons(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav(1))
    (tmp_path / "folder.wav").mkdir()
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "cache" / "blob")
    (tmp_path / ".trash").mkdir()
    (tmp_path / ".trash" / "t.wav").write_bytes(wav(2))
    rows = ["a.wav", "folder.wav", "pipe.wav", "gone.wav", ".trash/t.wav", "A.WAV", "never.wav"]
    (tmp_path / "metadata.csv").write_bytes(csv(*(f"{r},1,M,50,2" for r in rows)))
    m = snapshot(LocalFolderStore(tmp_path)).manifest
    got = dict(zip(m["key"].to_list(), zip(m["problem_code"].to_list(), m["problem"].to_list())))
    assert got["a.wav"] == (None, None)
    assert got["folder.wav"][0] == "not_a_file" and "folder" in got["folder.wav"][1]
    assert got["pipe.wav"][0] == "not_a_file" and "named pipe" in got["pipe.wav"][1]
    assert got["gone.wav"][0] == "symlink" and "broken symbolic link" in got["gone.wav"][1]
    assert got[".trash/t.wav"][0] == "bad_path" and "hidden folder" in got[".trash/t.wav"][1]
    assert got["A.WAV"][0] == "missing_file" and "differ in letter case" in got["A.WAV"][1]
    assert got["never.wav"] == ("missing_file", "audio file not found: never.wav")


def test_a_name_in_another_unicode_form_is_the_same_file(tmp_path):
    nfd = unicodedata.normalize("NFD", "ação.wav")
    (tmp_path / nfd).write_bytes(wav(1))
    (tmp_path / "metadata.csv").write_bytes(csv(f"{unicodedata.normalize('NFC', 'ação.wav')},1,M,50,2"))
    m = snapshot(LocalFolderStore(tmp_path)).manifest
    assert m["key"].to_list() == [nfd] and m["problem"].to_list() == [None]

"""The ObjectStore contract, run against every in-process adapter."""
import os

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.bootstrap import open_store
from spira_lib.ports import ObjectNotFound, ObjectStore, StoreError


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> ObjectStore:
    return MemoryStore() if request.param == "memory" else LocalFolderStore(tmp_path / "root")


def test_roundtrip_and_listing(store):
    store.put("a/b/c.bin", b"123")
    store.put("a/x.txt", b"hello")
    store.put("z.txt", b"")
    assert store.get("a/b/c.bin") == b"123"
    assert store.exists("a/x.txt") and not store.exists("a/nope")
    assert [o.key for o in store.list("a/")] == ["a/b/c.bin", "a/x.txt"]
    assert [o.key for o in store.list()] == ["a/b/c.bin", "a/x.txt", "z.txt"]
    assert {o.key: o.size for o in store.list()}["a/x.txt"] == 5
    assert isinstance(store, ObjectStore)


def test_prefix_is_a_string_prefix_not_a_folder(store):
    store.put("snap/1.json", b"1")
    store.put("snapshots/2.json", b"2")
    assert [o.key for o in store.list("snap")] == ["snap/1.json", "snapshots/2.json"]
    assert [o.key for o in store.list("snap/")] == ["snap/1.json"]


def test_missing_key_and_delete(store):
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    store.put("k", b"v")
    store.delete("k")
    store.delete("k")  # idempotent
    assert not store.exists("k")


def test_overwrite_replaces_whole_object(store):
    store.put("k", b"long value")
    store.put("k", b"s")
    assert store.get("k") == b"s"


def test_local_store_never_leaves_partial_files(tmp_path):
    store = LocalFolderStore(tmp_path)

    class Boom(bytes):
        pass

    store.put("obj", b"old")
    with pytest.raises(TypeError):
        store.put("obj", object())  # fails mid-write
    assert store.get("obj") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["obj"]


def test_local_store_refuses_keys_outside_root(tmp_path):
    store = LocalFolderStore(tmp_path / "root")
    with pytest.raises(StoreError, match="escapes"):
        store.put("../evil", b"x")


def test_local_path_only_for_local(tmp_path):
    local = LocalFolderStore(tmp_path)
    local.put("f.npy", b"x")
    assert local.local_path("f.npy") == tmp_path / "f.npy"
    assert local.local_path("missing") is None
    assert MemoryStore().local_path("f.npy") is None


def test_named_memory_stores_share_contents():
    a = open_store("memory://shared-test")
    a.put("k", b"v")
    assert open_store("memory://shared-test").get("k") == b"v"
    assert not open_store("memory://other-test").exists("k")


def test_open_store_dispatch(tmp_path):
    assert isinstance(open_store(tmp_path), LocalFolderStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalFolderStore)
    with pytest.raises(ValueError, match="unsupported"):
        open_store("ftp://host/x")


def test_local_listing_skips_in_flight_temp_files(tmp_path):
    store = LocalFolderStore(tmp_path)
    store.put("a", b"1")
    (tmp_path / ".a.xyz.tmp").write_bytes(b"partial")
    os.makedirs(tmp_path / ".hidden")
    (tmp_path / ".hidden" / "b").write_bytes(b"2")
    assert [o.key for o in store.list()] == ["a"]

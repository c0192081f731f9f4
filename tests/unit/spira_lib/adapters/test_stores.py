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


# --- the local store and what a folder may hold: links, special files, odd names --------------------
import socket  # noqa: E402
import threading  # noqa: E402

from spira_lib.reasons import Reason, UnusableObject  # noqa: E402


def _refusal(store, key) -> UnusableObject:
    with pytest.raises(UnusableObject) as info:
        store.get(key)
    return info.value


def test_local_store_follows_links_to_files_and_folders_outside_the_root(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "blob").write_bytes(b"audio")
    (tmp_path / "cache" / "dir").mkdir()
    (tmp_path / "cache" / "dir" / "x.wav").write_bytes(b"xx")
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.wav").symlink_to(tmp_path / "cache" / "blob")
    (root / "linked").symlink_to(tmp_path / "cache" / "dir", target_is_directory=True)
    store = LocalFolderStore(root)
    assert {o.key: o.size for o in store.list()} == {"a.wav": 5, "linked/x.wav": 2}
    assert store.get("a.wav") == b"audio" and store.get("linked/x.wav") == b"xx"
    assert store.exists("a.wav") and store.local_path("a.wav") == root / "a.wav"


def test_local_store_refuses_dotdot_keys_even_when_they_stay_inside(tmp_path):
    store = LocalFolderStore(tmp_path)
    store.put("a/b", b"1")
    for key in ("../x", "a/../b", "a/../../x"):
        with pytest.raises(StoreError, match="escapes"):
            store.get(key)


def test_listing_skips_broken_looping_and_special_entries(tmp_path, caplog):
    root = tmp_path
    (root / "ok.wav").write_bytes(b"1")
    (root / "dangling.wav").symlink_to(tmp_path / "nowhere")
    (root / "loop.wav").symlink_to("loop.wav")
    os.mkfifo(root / "pipe.wav")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock.wav"))
        keys = [o.key for o in LocalFolderStore(root).list()]
    assert keys == ["ok.wav"]
    for what in ("broken symbolic link", "loops", "named pipe", "socket"):
        assert what in caplog.text


def test_reading_a_special_file_says_what_it_is_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    store = LocalFolderStore(tmp_path)
    box = {}
    reader = threading.Thread(target=lambda: box.setdefault("e", _refusal(store, "pipe.wav")), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the stuck reader before failing
        os.close(os.open(tmp_path / "pipe.wav", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert box["e"].problem.code is Reason.NOT_A_FILE and "named pipe" in str(box["e"])
    assert _refusal(store, "dir.wav").problem.code is Reason.NOT_A_FILE
    broken = _refusal(store, "dangling.wav").problem
    assert broken.code is Reason.SYMLINK and "broken symbolic link" in broken.message and "nowhere.wav" in broken.message
    assert _refusal(store, "loop.wav").problem.code is Reason.SYMLINK
    assert not any(store.exists(k) for k in ("pipe.wav", "dir.wav", "dangling.wav", "loop.wav"))
    with pytest.raises(ObjectNotFound):
        store.get("absent.wav")


def test_a_folder_link_back_up_is_walked_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"1")
    (tmp_path / "a" / "up").symlink_to("..", target_is_directory=True)
    (tmp_path / "twin").symlink_to("a", target_is_directory=True)  # a second way into a/: listed under both
    assert [o.key for o in LocalFolderStore(tmp_path).list()] == ["a/x.wav", "twin/x.wav"]


def test_non_utf8_names_are_skipped_and_named_when_asked_for(tmp_path):
    (tmp_path / "ok.wav").write_bytes(b"1")
    with open(os.path.join(os.fsencode(tmp_path), "áudio.wav".encode("cp1252")), "wb") as fh:
        fh.write(b"2")
    store = LocalFolderStore(tmp_path)
    assert [o.key for o in store.list()] == ["ok.wav"]
    problem = _refusal(store, "áudio.wav").problem
    assert problem.code is Reason.BAD_PATH and "not UTF-8" in problem.message


def test_permission_denied_is_named(tmp_path, monkeypatch):
    """Root reads any file, so the denial is simulated at os.open for this one path."""
    import errno

    (tmp_path / "locked.wav").write_bytes(b"1")
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if str(path).endswith("locked.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    problem = _refusal(LocalFolderStore(tmp_path), "locked.wav").problem
    assert problem.code is Reason.UNREADABLE and "permission denied" in problem.message


def test_folder_links_to_the_whole_machine_are_not_walked(tmp_path, caplog):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.wav").write_bytes(b"1")
    (root / "slash").symlink_to("/", target_is_directory=True)
    (root / "up").symlink_to("..", target_is_directory=True)
    (root / "sys").symlink_to("/sys", target_is_directory=True)
    assert [o.key for o in LocalFolderStore(root).list()] == ["a.wav"]
    assert caplog.text.count("which holds more than a dataset") == 3

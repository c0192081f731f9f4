"""``put(..., if_absent=True)``: a conditional create with exactly one winner, on every in-process adapter."""
from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.ports import ObjectExists, ObjectStore, StoreError


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> ObjectStore:
    return MemoryStore() if request.param == "memory" else LocalFolderStore(tmp_path / "root")


def test_create_then_refuse_and_keep_the_first(store):
    store.put("a/claim.json", b"first", if_absent=True)
    with pytest.raises(ObjectExists, match="claim.json"):
        store.put("a/claim.json", b"second", if_absent=True)
    assert store.get("a/claim.json") == b"first"
    assert not isinstance(ObjectExists("x"), StoreError)  # an answer, not a failure to retry
    store.put("a/claim.json", b"overwrite")  # a plain put still replaces
    assert store.get("a/claim.json") == b"overwrite"


def test_racing_threads_have_one_winner(store):
    winners, barrier = [], threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        for n in range(30):
            try:
                store.put(f"k/{n}", f"{i}".encode(), if_absent=True)
                winners.append((n, i))
            except ObjectExists:
                pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(n for n, _ in winners) == list(range(30))  # every key won exactly once
    for n, i in winners:
        assert store.get(f"k/{n}") == f"{i}".encode()


def test_local_create_leaves_no_temp_files(tmp_path):
    store = LocalFolderStore(tmp_path)
    store.put("x", b"1", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put("x", b"2", if_absent=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def _race_in_process(root: str, worker: int, keys: int, queue) -> None:
    store, won = LocalFolderStore(root), []
    for n in range(keys):
        try:
            store.put(f"v/{n:04d}", str(worker).encode(), if_absent=True)
            won.append(n)
        except ObjectExists:
            pass
    queue.put((worker, won))


def test_local_create_is_atomic_across_processes(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_in_process, args=(str(tmp_path), w, 200, queue)) for w in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    won = sorted(results[0] + results[1])
    assert won == list(range(200))
    store = LocalFolderStore(tmp_path)
    for w, keys in results.items():
        assert all(store.get(f"v/{n:04d}") == str(w).encode() for n in keys)

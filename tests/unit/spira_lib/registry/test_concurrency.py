"""Concurrent writers on one registry: numbers, ledger and champion never collide (threads; processes in tests/integration)."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from spira_lib.registry import ModelRegistry
from spira_lib.registry.claims import CLAIM, VersionWriter, claim_doc
from spira_lib.registry.ledger import champion_history
from tests.unit.spira_lib.registry._helpers import _register


def _in_threads(n: int, fn) -> list:
    out, errors, barrier = [None] * n, [], threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_concurrent_registers_take_distinct_numbers(store):
    # Separate registry objects, as separate processes would have; one shared store.
    regs = [ModelRegistry(store) for _ in range(4)]
    got = _in_threads(4, lambda i: [_register(regs[i], payload=f"{i}-{k}".encode()).version for k in range(10)])
    flat = [v for vs in got for v in vs]
    assert sorted(flat) == list(range(1, 41))
    reg = regs[0]
    for i, versions in enumerate(got):
        for k, v in enumerate(versions):
            assert reg.load_artifact(reg.get("spira", v), "model.pt") == f"{i}-{k}".encode()
    ledger = reg.ledger("spira")
    assert [e["seq"] for e in ledger] == list(range(1, 41))
    assert Counter(e["version"] for e in ledger if e["action"] == "register") == Counter(range(1, 41))
    assert reg.fsck("spira") == []


def test_concurrent_promotions_leave_the_pointer_on_the_ledger(store):
    reg = ModelRegistry(store)
    for k in range(8):
        _register(reg, payload=str(k).encode())
    regs = [ModelRegistry(store) for _ in range(8)]
    _in_threads(8, lambda i: regs[i].promote("spira", i + 1, reason=f"writer {i}"))
    ledger = reg.ledger("spira")
    promotions = [e for e in ledger if e["action"] == "promote"]
    assert len(promotions) >= 1
    assert reg.champion("spira").version == champion_history(ledger, None)[-1]
    assert reg.fsck("spira") == []


def test_a_lagging_pointer_is_settled_by_the_next_promotion(reg, store):
    for k in range(3):
        _register(reg, payload=str(k).encode())
    reg.promote("spira", 1, reason="r")
    # Another writer appended 'promote 2' and died before moving the pointer.
    reg._ledger.append("spira", "promote", 2, 1, "other writer", None, "x")
    assert reg.champion("spira").version == 1
    assert any("ledger says 2" in p for p in reg.fsck("spira"))
    reg.promote("spira", 3, reason="r")
    assert reg.champion("spira").version == 3
    assert [e["previous"] for e in reg.ledger("spira") if e["action"] == "promote"] == [None, 1, 2]
    assert reg.fsck("spira") == []


def test_a_taken_claim_makes_the_writer_take_the_next_number(reg, store):
    _register(reg, payload=b"1")
    # A second writer holds number 2 (claimed, artifacts still being written).
    store.put(f"models/spira/versions/0002/{CLAIM}", claim_doc("other", reg._ledger.now(), 900), if_absent=True)
    assert _register(reg, payload=b"3").version == 3
    assert [mv.version for mv in reg.list_versions("spira")] == [1, 3]
    problems = reg.fsck("spira")
    assert len(problems) == 1 and "has no version.json yet" in problems[0] and "claim expires" in problems[0]
    assert reg.sweep("spira") == []  # its lease still runs: hands off


def test_an_abandoned_claim_is_reported_and_swept(reg, store):
    _register(reg, payload=b"1")
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat(timespec="milliseconds")
    store.put(f"models/spira/versions/0002/{CLAIM}", claim_doc("dead", old, 900), if_absent=True)
    store.put("models/spira/versions/0002/model.pt", b"half")
    # The registry's clock (StepClock) is at 2025; use a registry on the real clock for the expiry check.
    real = ModelRegistry(store)
    problems = real.fsck("spira")
    assert len(problems) == 1 and "abandoned register" in problems[0]
    assert real.sweep("spira") == [2]
    assert real.fsck("spira") == []
    assert not store.exists("models/spira/versions/0002/model.pt")
    assert _register(real, payload=b"2").version == 2  # nobody ever saw the swept number


def test_a_failed_register_releases_its_claim(reg, store):
    _register(reg, payload=b"1")
    store.fail_next = lambda key: key.endswith("model_card.md")
    with pytest.raises(OSError):
        _register(reg, payload=b"2")
    assert not any("/0002/" in o.key for o in store.list("models/"))
    assert reg.fsck("spira") == []
    assert _register(reg, payload=b"2").version == 2


def test_a_writer_past_its_lease_does_not_commit(reg, store):
    ticks = iter([0.0, 10_000.0])
    reg._writer = VersionWriter(reg, lease_s=900, monotonic=lambda: next(ticks))
    with pytest.raises(Exception, match="longer than its 900 s lease"):
        _register(reg, payload=b"slow")
    assert reg.list_models() == []

"""Storage faults on every S3 operation, injected in front of the S3 test server (botocore event hooks).

Throttling (503 SlowDown), 500 InternalError, connection resets and read
timeouts hit a set share of all requests, plus lost replies on writes (the
server applied the PUT, the client saw a reset). The real S3 adapter must
survive them all through its retries (botocore's standard mode, then its own),
give correct answers, and fail with a clear, bounded error when the endpoint
never recovers. The registry on top stays consistent.
"""
from __future__ import annotations

import json
import time

import pytest

from spira_lib.adapters.s3 import S3Store, make_s3_client
from spira_lib.ports import ObjectExists, ObjectNotFound, StoreError
from spira_lib.registry import ModelRegistry
from tests.faults import KINDS, CountingStore, S3Faults

pytestmark = pytest.mark.integration

RATE = 0.2  # a fifth of all requests fail
OPS = 40  # port operations of each type


@pytest.fixture
def bucket(aws_env: str, unique_name: str) -> str:
    name = f"spira-faults-{unique_name}"
    make_s3_client().create_bucket(Bucket=name)
    return name


def faulty_store(bucket: str, faults: S3Faults, prefix: str = "f") -> CountingStore:
    return CountingStore(S3Store(bucket, prefix, client=faults.install(make_s3_client())), faults)


def test_every_operation_survives_injected_faults(bucket: str, record_property) -> None:
    faults = S3Faults(RATE, seed=1, lost_reply_rate=0.15)
    store = faulty_store(bucket, faults)
    t0 = time.perf_counter()
    for i in range(OPS):
        store.put(f"obj/{i:03d}", f"payload-{i}".encode())
    for i in range(OPS):
        assert store.get(f"obj/{i:03d}") == f"payload-{i}".encode()
    for i in range(OPS):
        assert store.exists(f"obj/{i:03d}")
        assert not store.exists(f"missing/{i:03d}")
    for _ in range(20):
        assert [o.key for o in store.list("obj/")] == [f"obj/{i:03d}" for i in range(OPS)]
    for i in range(OPS):  # conditional creates: a lost reply must not turn our own write into "exists"
        store.put(f"claims/{i:03d}", f"mine-{i}".encode(), if_absent=True)
    for i in range(0, OPS, 6):
        with pytest.raises(ObjectExists):
            store.put(f"claims/{i:03d}", b"someone else", if_absent=True)
        assert store.get(f"claims/{i:03d}") == f"mine-{i}".encode()
    for i in range(OPS):
        store.delete(f"obj/{i:03d}")
    faults.enabled = False
    assert list(store.list("obj/")) == []
    with pytest.raises(ObjectNotFound):
        store.get("obj/000")

    table = faults.stats.by_operation()
    record_property("s3_faults", json.dumps(table))
    print("\nS3 faults per operation:", json.dumps(table, indent=1), f"\n{time.perf_counter() - t0:.1f} s")
    for op in ("get", "put", "exists", "list", "delete"):
        assert table[op]["injected"] > 0, op
        assert table[op]["survived"] == table[op]["faulted_ops"] > 0, op
    injected_kinds = {k for row in table.values() for k in row["kinds"]}
    assert injected_kinds == set(KINDS) | {"lost-reply"}


def test_an_endpoint_that_never_recovers_fails_clearly_and_boundedly(bucket: str) -> None:
    faults = S3Faults(1.0, seed=2, kinds=("500",))
    store = S3Store(bucket, "down", client=faults.install(make_s3_client()), retry_base_delay_s=0.01, retry_max_delay_s=0.02)
    t0 = time.perf_counter()
    for call, what in ((lambda: store.put("k", b"v"), "write"), (lambda: store.get("k"), "read"),
                       (lambda: store.exists("k"), "check"), (lambda: list(store.list("x/")), "list"),
                       (lambda: store.delete("k"), "delete"), (lambda: store.put("k", b"v", if_absent=True), "create")):
        with pytest.raises(StoreError, match=rf"cannot {what} s3://{bucket}/down/.* after 5 attempts: .*InternalError"):
            call()
    assert time.perf_counter() - t0 < 60
    # At most 5 adapter attempts x 4 botocore attempts per operation. botocore's retry quota
    # (500 tokens, 14 per retry) runs dry under a sustained outage; the adapter's 5 attempts remain.
    for op in ("get", "put", "exists", "list", "delete"):
        per_op = 2 if op == "put" else 1
        assert 5 * per_op <= faults.stats.calls[op] <= 5 * 4 * per_op, (op, faults.stats.calls[op])


def test_registry_on_faulty_s3_stays_consistent(bucket: str) -> None:
    faults = S3Faults(0.2, seed=3, lost_reply_rate=0.1)
    reg = ModelRegistry(faulty_store(bucket, faults, "reg"))
    for i in range(8):
        mv = reg.register("spira", {"model.pt": f"w{i}".encode(), "model_card.md": b"# card"}, {"training_key": str(i)})
        assert mv.version == i + 1
        if i % 2:
            reg.promote("spira", mv.version, reason="better")
        else:
            reg.record_rejection("spira", mv.version, reason="worse")
    reg.rollback("spira")
    faults.enabled = False
    clean = ModelRegistry(S3Store(bucket, "reg"))
    assert [mv.version for mv in clean.list_versions("spira")] == list(range(1, 9))
    assert clean.champion("spira").version == 6
    assert clean.fsck("spira") == []
    assert faults.stats.total_injected > 20

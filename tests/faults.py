"""Fault injection for the storage port and for the S3 endpoint.

Two layers, the same four kinds of fault (throttling, a 500, a connection
reset, a timeout) at a set rate on every operation:

* ``FaultyStore`` wraps any ``ObjectStore`` and raises what an adapter raises
  once its own retries are used up (``StoreError``), before the operation or,
  for ``lost-reply``, after a write landed (the caller cannot tell which).
  It tests the layers above the port: registry, pipeline, flows.
* ``S3Faults`` hooks into a real boto3 S3 client (botocore events) in front
  of the S3 test server: ``before-send`` answers with a canned 503 SlowDown or
  500 InternalError, or raises ``ConnectionClosedError`` / ``ReadTimeoutError``
  before the request leaves; ``after-call`` raises a reset after the server
  applied the request (a lost reply). It tests the S3 adapter's retries.

Both are seeded, decide per (operation, key, n-th call) so that thread
scheduling does not change which call fails, and count what they injected per
operation type; ``survived`` counts operations that met at least one fault
and still succeeded.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import botocore.exceptions as bexc
from botocore.awsrequest import AWSResponse

from spira_lib.ports import ObjectExists, ObjectInfo, ObjectNotFound, ObjectStore, StoreError

KINDS = ("throttle", "500", "reset", "timeout")
WRITE_KINDS = KINDS + ("lost-reply",)

_MESSAGES = {
    "throttle": "SlowDown (503): Please reduce your request rate",
    "500": "InternalError (500): We encountered an internal error. Please try again",
    "reset": "Connection reset by peer",
    "timeout": "Read timeout on endpoint URL",
    "lost-reply": "Connection reset by peer after the request was sent (it may have been applied)",
}


def _draw(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``seed`` and ``parts``."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FaultStats:
    """Faults injected, operations that met a fault, and how many of those still succeeded, per operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.injected: Counter[tuple[str, str]] = Counter()  # (operation, kind)
        self.faulted_ops: Counter[str] = Counter()  # operations that met >= 1 fault (per call of the wrapper)
        self.survived: Counter[str] = Counter()

    def record(self, op: str, kind: str | None) -> None:
        with self._lock:
            self.calls[op] += 1
            if kind:
                self.injected[(op, kind)] += 1

    def outcome(self, op: str, faulted: bool, ok: bool) -> None:
        with self._lock:
            if faulted:
                self.faulted_ops[op] += 1
                if ok:
                    self.survived[op] += 1

    def by_operation(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for op in sorted(self.calls):
            kinds = {k: n for (o, k), n in sorted(self.injected.items()) if o == op}
            out[op] = {"calls": self.calls[op], "injected": sum(kinds.values()), "kinds": kinds,
                       "faulted_ops": self.faulted_ops[op], "survived": self.survived[op]}
        return out

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())


class FaultyStore:
    """An ``ObjectStore`` that fails a share ``rate`` of calls the way an exhausted adapter does."""

    def __init__(self, inner: ObjectStore, *, rate: float, seed: int = 0, kinds: Sequence[str] = KINDS,
                 ops: Sequence[str] = ("get", "put", "exists", "list", "delete"), lost_reply_rate: float = 0.0) -> None:
        self.inner = inner
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        self.ops = frozenset(ops)
        self.lost_reply_rate = lost_reply_rate
        self.enabled = True
        self.stats = FaultStats()
        self._n: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _fault(self, op: str, key: str) -> str | None:
        if not self.enabled or op not in self.ops:
            self.stats.record(op, None)
            return None
        with self._lock:
            self._n[(op, key)] += 1
            n = self._n[(op, key)]
        roll = _draw(self.seed, op, key, n)
        kind = None
        if roll < self.rate:
            kind = self.kinds[int(_draw(self.seed, "kind", op, key, n) * len(self.kinds))]
        elif op == "put" and roll < self.rate + self.lost_reply_rate:
            kind = "lost-reply"
        self.stats.record(op, kind)
        return kind

    def _raise(self, op: str, key: str, kind: str) -> None:
        raise StoreError(f"cannot {op} {self.inner.uri}/{key} after 3 attempts: {_MESSAGES[kind]} [injected {kind}]")

    def get(self, key: str) -> bytes:
        kind = self._fault("get", key)
        if kind:
            self._raise("get", key, kind)
        return self.inner.get(key)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        kind = self._fault("put", key)
        if kind and kind != "lost-reply":
            self._raise("put", key, kind)
        self.inner.put(key, data, if_absent=if_absent)
        if kind == "lost-reply":
            self._raise("put", key, kind)

    def exists(self, key: str) -> bool:
        kind = self._fault("exists", key)
        if kind:
            self._raise("exists", key, kind)
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        kind = self._fault("list", prefix)
        if kind:
            self._raise("list", prefix, kind)
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        kind = self._fault("delete", key)
        if kind:
            self._raise("delete", key, kind)
        self.inner.delete(key)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)


# --------------------------------------------------------------------------- S3 endpoint

class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _canned(url: str, status: int, code: str, message: str) -> AWSResponse:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>INJECTED</RequestId></Error>").encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml", "Content-Length": str(len(body))}, _Raw(body))


# S3 operation name -> the port operation it serves.
PORT_OP = {"GetObject": "get", "PutObject": "put", "HeadObject": "exists", "ListObjectsV2": "list",
           "DeleteObject": "delete"}


class S3Faults:
    """Inject faults into every request a boto3 S3 client sends (see the module docstring)."""

    def __init__(self, rate: float, *, seed: int = 0, kinds: Sequence[str] = KINDS, lost_reply_rate: float = 0.0,
                 operations: Sequence[str] = tuple(PORT_OP)) -> None:
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        self.lost_reply_rate = lost_reply_rate
        self.operations = frozenset(operations)
        self.enabled = True
        self.stats = FaultStats()
        self._n: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._pending: defaultdict[int, bool] = defaultdict(bool)

    def _next(self, op: str, key: str) -> float:
        with self._lock:
            self._n[(op, key)] += 1
            return _draw(self.seed, op, key, self._n[(op, key)])

    @staticmethod
    def _key_of(url: Any) -> str:
        """The request's path (bucket/key): not its host, so the draws do not depend on the server's port."""
        path = str(url or "").split("?", 1)[0]
        return path.split("://", 1)[-1].partition("/")[2]

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        s3_op = event_name.rsplit(".", 1)[-1]
        if not self.enabled or s3_op not in self.operations:
            return None
        op = PORT_OP.get(s3_op, s3_op)
        key = self._key_of(request.url)
        roll = self._next(op, key)
        if roll >= self.rate:
            self.stats.record(op, None)
            return None
        kind = self.kinds[int(_draw(self.seed, "kind", op, key, roll) * len(self.kinds))]
        self.stats.record(op, kind)
        self._pending[threading.get_ident()] = True
        if kind == "throttle":
            return _canned(request.url, 503, "SlowDown", "Please reduce your request rate.")
        if kind == "500":
            return _canned(request.url, 500, "InternalError", "We encountered an internal error. Please try again.")
        if kind == "reset":
            raise bexc.ConnectionClosedError(endpoint_url=request.url)
        raise bexc.ReadTimeoutError(endpoint_url=request.url, error="injected read timeout")

    def _after_call(self, model: Any, http_response: Any, **_: Any) -> None:
        if not self.enabled or model.name != "PutObject" or not self.lost_reply_rate or http_response.status_code >= 300:
            return
        url = str(getattr(http_response, "url", "") or "")
        if self._next("lost-reply", self._key_of(url)) < self.lost_reply_rate:
            self.stats.record("put", "lost-reply")
            self._pending[threading.get_ident()] = True
            raise bexc.ConnectionClosedError(endpoint_url=url)

    def install(self, client: Any) -> Any:
        """Hook this injector into ``client`` (a boto3 S3 client); returns the client."""
        client.meta.events.register("before-send.s3", self._before_send)
        client.meta.events.register("after-call.s3", self._after_call)
        return client

    @contextlib.contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Wrap one port operation to count whether it met a fault and survived it."""
        self._pending[threading.get_ident()] = False
        ok = False
        try:
            yield
            ok = True
        except (ObjectExists, ObjectNotFound):
            ok = True  # a correct answer, not a failure
            raise
        finally:
            self.stats.outcome(name, self._pending.pop(threading.get_ident(), False), ok)


class CountingStore:
    """Delegates to a store, telling ``faults`` where each port operation starts and ends (for ``survived``)."""

    def __init__(self, inner: ObjectStore, faults: S3Faults) -> None:
        self.inner, self.faults = inner, faults

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        with self.faults.operation(op):
            return fn()

    def get(self, key: str) -> bytes:
        return self._call("get", lambda: self.inner.get(key))

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        return self._call("put", lambda: self.inner.put(key, data, if_absent=if_absent))

    def exists(self, key: str) -> bool:
        return self._call("exists", lambda: self.inner.exists(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._call("list", lambda: list(self.inner.list(prefix))))

    def delete(self, key: str) -> None:
        return self._call("delete", lambda: self.inner.delete(key))

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

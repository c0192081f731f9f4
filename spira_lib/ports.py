"""Ports: the small interfaces the core depends on.

The domain code (dataset, features, registry, pipeline) talks to storage only
through :class:`ObjectStore`, a flat key -> bytes store with S3's semantics.
Adapters in ``spira_lib.adapters`` implement it for a local folder, for memory
(tests) and for S3; ``spira_lib.bootstrap`` picks one from a URI.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable


class StoreError(RuntimeError):
    """A storage operation failed for a reason other than a missing key."""


class ObjectExists(RuntimeError):
    """A conditional create (``put(..., if_absent=True)``) found the key already taken.

    Not a ``StoreError``: it is an answer, not a failure, and retrying the same
    write cannot change it (the caller picks another key, e.g. the next version).
    """


class ObjectNotFound(KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "object not found"


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store root, '/'-separated
    size: int
    etag: str = ""  # content tag when the backend has one (S3 ETag, mtime-size locally)


@runtime_checkable
class ObjectStore(Protocol):
    """A flat, prefix-listable key -> bytes store.

    Keys are relative, '/'-separated, never start with '/'. ``put`` is atomic:
    readers see the whole new object or the old state, never a partial write.
    ``put(..., if_absent=True)`` is a conditional create: it writes only when
    the key does not exist yet, atomically with respect to other writers
    (S3 ``If-None-Match: *``, a hard link locally, a lock in memory), and
    raises :class:`ObjectExists` otherwise. Two writers racing for one key:
    exactly one wins.
    """

    @property
    def uri(self) -> str:
        """Where the store lives (``/abs/path``, ``s3://bucket/prefix``, ``memory://name``)."""
        ...

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """All objects whose key starts with ``prefix`` (recursive), sorted by key."""
        ...

    def delete(self, key: str) -> None: ...

    def local_path(self, key: str) -> Path | None:
        """A local file holding the object, when the backend has one (for mmap); else None."""
        ...


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and stray slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass(frozen=True)
class PublishedModel:
    """Where a promoted model was handed off to the serving side."""

    name: str
    version: str  # the serving registry's own version id
    uri: str  # what the inference service loads, e.g. models:/spira@champion
    stage: str | None = None
    reused: bool = False  # the same checkpoint was published before; only the pointers moved
    location: str = ""  # the serving registry (e.g. the MLflow tracking URI)


@runtime_checkable
class ModelPublisher(Protocol):
    """Hands a promoted checkpoint to the service that serves it (SPIRA's is MLflow)."""

    def publish(
        self, name: str, version: int, checkpoint: bytes, metadata: dict, *, threshold: float = 0.5
    ) -> PublishedModel: ...

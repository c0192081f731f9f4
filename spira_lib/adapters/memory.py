"""In-memory ObjectStore: the fake used by unit tests (and ``memory://`` URIs)."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Iterator

from spira_lib.ports import ObjectExists, ObjectInfo, ObjectNotFound, join_key

# memory://name stores with the same name share contents within one process,
# so code that reopens a store by URI sees what an earlier step wrote.
_NAMED: dict[str, dict[str, bytes]] = {}
_LOCK = threading.Lock()


class MemoryStore:
    def __init__(self, name: str = "") -> None:
        self._name = name
        with _LOCK:
            self._objects = _NAMED.setdefault(name, {}) if name else {}

    @property
    def uri(self) -> str:
        return f"memory://{self._name}"

    def get(self, key: str) -> bytes:
        try:
            return self._objects[join_key(key)]
        except KeyError:
            raise ObjectNotFound(f"{self.uri}/{key}") from None

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        key, data = join_key(key), bytes(data)
        if not if_absent:
            self._objects[key] = data
            return
        with _LOCK:  # check and set as one step: two racing creators, one winner
            if key in self._objects:
                raise ObjectExists(f"{self.uri}/{key}")
            self._objects[key] = data

    def exists(self, key: str) -> bool:
        return join_key(key) in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in sorted(k for k in list(self._objects) if k.startswith(prefix)):
            data = self._objects.get(key)
            if data is not None:
                yield ObjectInfo(key, len(data), hashlib.md5(data).hexdigest())

    def delete(self, key: str) -> None:
        self._objects.pop(join_key(key), None)

    def local_path(self, key: str) -> Path | None:
        return None

"""The project's one way to hash bytes and JSON-able values.

Content hashes (sha256 of bytes) identify audio, checkpoints and artifacts;
``stable_hash`` identifies configs, plans and cache keys. Both are hex
strings, identical across processes and machines.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable


def sha256_hex(data: bytes) -> str:
    """sha256 of ``data`` as 64 hex characters."""
    return hashlib.sha256(data).hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-able object with sorted keys (stable across processes)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_files(named_blobs: Iterable[tuple[str, bytes]]) -> str:
    """One sha256 over (name, bytes) pairs in the given order (e.g. the source of some modules)."""
    h = hashlib.sha256()
    for name, blob in named_blobs:
        h.update(name.encode())
        h.update(blob)
    return h.hexdigest()

"""Composition root: the one place that turns URIs and config into concrete adapters.

Everything else receives ports (``ObjectStore``) and never constructs a
backend itself, so tests can hand the core a ``MemoryStore`` and production an
S3 store without the domain code knowing.
"""
from __future__ import annotations

from pathlib import Path

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.ports import ObjectStore


def open_store(uri: str | Path) -> ObjectStore:
    """``/path`` or ``file:///path`` -> local folder, ``s3://bucket/prefix`` -> S3, ``memory://name`` -> memory."""
    text = str(uri)
    if text.startswith("s3://"):
        # Imported lazily: boto3 is only needed when S3 is actually used.
        from spira_lib.adapters.s3 import S3Store

        return S3Store.from_uri(text)
    if text.startswith("memory://"):
        return MemoryStore(text.removeprefix("memory://"))
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    if "://" in text:
        raise ValueError(f"unsupported storage URI {text!r}: use a local path, file://, s3:// or memory://")
    return LocalFolderStore(text)

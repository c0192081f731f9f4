"""Composition root: the one place that turns URIs and config into concrete adapters.

Everything else receives ports (``ObjectStore``) and never constructs a
backend itself, so tests can hand the core a ``MemoryStore`` and production an
S3 store without the domain code knowing.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.ports import ObjectStore

if TYPE_CHECKING:
    from spira_lib.config import SpiraConfig


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


def open_workspace(data_uri: str | Path, registry_uri: str | Path, cfg: "SpiraConfig"):
    """Wire a pipeline Workspace: dataset store, registry-side store, registry, feature store, noise."""
    from spira_lib.feature_store import FeatureStore
    from spira_lib.pipeline import Workspace
    from spira_lib.registry import ModelRegistry

    data = open_store(data_uri)
    store = open_store(registry_uri)
    noise_dir = cfg.augment.noise_dir
    if "://" in noise_dir or noise_dir.startswith("/"):
        noise, noise_prefix = open_store(noise_dir), ""
    else:
        noise, noise_prefix = data, noise_dir
    return Workspace(
        data=data,
        store=store,
        noise=noise,
        noise_prefix=noise_prefix,
        registry=ModelRegistry(store),
        features=FeatureStore(store),
    )

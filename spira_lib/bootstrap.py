"""Composition root: the one place that turns URIs into concrete adapters and wires them.

Everything else receives ports (``ObjectStore``, ``ModelRegistry``,
``Workspace``) and never constructs a backend itself, so tests can hand the
core a ``MemoryStore`` and production an S3 store without the domain code
knowing. ``workspace_for`` keeps one workspace per (dataset, registry, noise)
in each process, so every step of a run shares the same ports and the ward
noise is decoded once.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.feature_store import FeatureStore
from spira_lib.pipeline.workspace import Workspace
from spira_lib.ports import ModelPublisher, ObjectStore
from spira_lib.privacy import KEY_ENV
from spira_lib.registry import ModelRegistry

_WORKSPACES: dict[tuple[str, str, str], Workspace] = {}
_LOCK = threading.Lock()


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


def open_registry(uri: str | Path) -> ModelRegistry:
    """The model registry stored at ``uri``."""
    return ModelRegistry(open_store(uri))


def open_workspace(data_uri: str | Path, registry_uri: str | Path, noise_dir: str = "noises") -> Workspace:
    """Wire a Workspace: dataset store, registry-side store, registry, feature store, noise location.

    ``noise_dir`` is a folder of the dataset, or an absolute path/URI of its own.
    """
    data = open_store(data_uri)
    store = open_store(registry_uri)
    if "://" in noise_dir or noise_dir.startswith("/"):
        noise, noise_prefix = open_store(noise_dir), ""
    else:
        noise, noise_prefix = data, noise_dir
    return Workspace(
        data=data, store=store, noise=noise, noise_prefix=noise_prefix,
        registry=ModelRegistry(store), features=FeatureStore(store), privacy_key=os.environ.get(KEY_ENV) or None,
        publisher=open_publisher(),
    )


MLFLOW_URI_ENV = "SPIRA_MLFLOW_TRACKING_URI"


def open_publisher(tracking_uri: str | None = None) -> ModelPublisher | None:
    """The MLflow hand-off at ``tracking_uri`` (default: $SPIRA_MLFLOW_TRACKING_URI); None when it is off."""
    uri = (tracking_uri or os.environ.get(MLFLOW_URI_ENV, "")).strip()
    if not uri:
        return None
    # Imported lazily: mlflow is only needed when the hand-off is configured.
    from spira_lib.adapters.mlflow_hand_off import MlflowPublisher

    return MlflowPublisher(uri, experiment=os.environ.get("SPIRA_MLFLOW_EXPERIMENT", "spira-ct"))


def workspace_for(data_uri: str, registry_uri: str, noise_dir: str) -> Workspace:
    """The process's workspace for these locations, opened on first use."""
    key = (str(data_uri), str(registry_uri), noise_dir)
    with _LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            ws = _WORKSPACES[key] = open_workspace(data_uri, registry_uri, noise_dir)
        return ws


def forget_workspaces() -> None:
    """Drop the cached workspaces (tests that recreate stores under the same URIs)."""
    with _LOCK:
        _WORKSPACES.clear()

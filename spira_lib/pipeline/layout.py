"""Where a run keeps its work on the registry-side store, and small typed I/O over it.

Layout (next to ``models/`` of the registry and ``features/`` of the feature store)::

    workspace.json                               the workspace's random id (see workspace.py)
    snapshots/<digest>/manifest.parquet          every metadata row + content hash
    snapshots/<digest>/csvs.json                 the metadata CSVs the snapshot read
    snapshots/<digest>/validated-<k>.parquet     rows that passed validation
    snapshots/<digest>/quarantine-<k>.json       rows that did not, with reasons
    snapshots/<digest>/split-<k>.parquet         validated rows with their split
    staging/<training_key>/...                   a trained model before registration
    cache/hashes/<k>.json                        content hashes by (key, etag) of one dataset
    cache/clipchecks/<k>.json                    audio checks by content hash
"""
from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

from spira_lib.dataset import manifest_from_bytes, manifest_to_bytes
from spira_lib.hashing import stable_hash
from spira_lib.ports import ObjectNotFound, ObjectStore, join_key

WORKSPACE_DOC = "workspace.json"


def snapshot_dir(digest: str) -> str:
    return join_key("snapshots", digest)


def manifest_key(digest: str) -> str:
    return join_key(snapshot_dir(digest), "manifest.parquet")


def csvs_key(digest: str) -> str:
    return join_key(snapshot_dir(digest), "csvs.json")


def validated_key(digest: str, validation_key: str) -> str:
    return join_key(snapshot_dir(digest), f"validated-{validation_key}.parquet")


def quarantine_key(digest: str, validation_key: str) -> str:
    return join_key(snapshot_dir(digest), f"quarantine-{validation_key}.json")


def split_key(digest: str, split_digest: str) -> str:
    return join_key(snapshot_dir(digest), f"split-{split_digest[:16]}.parquet")


def staged(training_key: str, name: str = "") -> str:
    """A staged object of one training (``name``), or the staging folder itself."""
    return join_key("staging", training_key, name)


def hash_cache_key(data_uri: str) -> str:
    return join_key("cache", "hashes", stable_hash(data_uri)[:16] + ".json")


def clip_cache_key(audio_digest: str) -> str:
    return join_key("cache", "clipchecks", audio_digest[:16] + ".json")


# --------------------------------------------------------------------------- typed I/O


def put_json(store: ObjectStore, key: str, obj: Any) -> None:
    store.put(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def get_json(store: ObjectStore, key: str, default: Any = None) -> Any:
    try:
        return json.loads(store.get(key))
    except ObjectNotFound:
        return default


def put_frame(store: ObjectStore, key: str, df: pl.DataFrame) -> None:
    """A manifest (or a frame derived from one), as parquet."""
    store.put(key, manifest_to_bytes(df))


def get_frame(store: ObjectStore, key: str) -> pl.DataFrame:
    return manifest_from_bytes(store.get(key))


def put_table(store: ObjectStore, key: str, df: pl.DataFrame) -> None:
    """Any small table (not a manifest), as parquet."""
    buf = io.BytesIO()
    df.write_parquet(buf)
    store.put(key, buf.getvalue())


def get_table(store: ObjectStore, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.get(key)))

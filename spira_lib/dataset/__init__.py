"""Datasets in SPIRA's format: metadata CSVs + audio -> a manifest, its digest and its splits.

``metadata`` parses the CSVs, ``snapshot`` hashes the audio they point to,
``manifest`` holds the schema, digest and stored form, ``splits`` assigns
speaker-disjoint splits.
"""
from spira_lib.dataset.manifest import (
    MANIFEST_SCHEMA,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SPLITS,
    DatasetError,
    Snapshot,
    empty_manifest,
    manifest_digest,
    manifest_from_bytes,
    manifest_to_bytes,
    summarize,
)
from spira_lib.dataset.metadata import find_metadata_csvs, read_metadata
from spira_lib.dataset.snapshot import snapshot
from spira_lib.dataset.splits import assign_splits

__all__ = [
    "MANIFEST_SCHEMA",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "DatasetError",
    "Snapshot",
    "assign_splits",
    "empty_manifest",
    "find_metadata_csvs",
    "manifest_digest",
    "manifest_from_bytes",
    "manifest_to_bytes",
    "read_metadata",
    "snapshot",
    "summarize",
]

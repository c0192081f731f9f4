"""Snapshot: metadata CSVs + audio objects -> one manifest with content hashes and a digest.

Nothing here writes to the dataset store: raw data is never modified. Rows
that cannot be used are kept with their problem, so validation can quarantine
them with the file and CSV row a person needs to fix them.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl

from spira_lib.dataset.manifest import Snapshot, empty_manifest, manifest_digest
from spira_lib.dataset.metadata import metadata_keys, read_metadata
from spira_lib.hashing import sha256_hex
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, StoreError
from spira_lib.reasons import Problem, Reason

# key -> (sha256, size, problem): what hashing one referenced object found.
_Hashed = tuple[str | None, int | None, Problem | None]


def snapshot(
    store: ObjectStore,
    *,
    noise_dir: str = "noises",
    hash_cache: dict[tuple[str, str], str] | None = None,
    workers: int = 8,
) -> Snapshot:
    """Read every metadata CSV and hash every referenced audio object.

    ``hash_cache`` maps ``(key, etag) -> sha256``. The etag comes from
    ``store.list`` (S3 ETag, mtime+size locally, md5 in memory) and changes
    whenever the object does, so a cache hit means the bytes are unchanged and
    need not be downloaded again. The dict is read and updated in place (only for
    objects with a non-empty etag); persist it between runs to make re-snapshots
    of a large, mostly unchanged bucket cheap.

    A referenced file that does not exist or cannot be read becomes that row's
    problem; it does not stop the snapshot. ``workers`` threads download in
    parallel (network stores are latency-bound).
    """
    # One listing serves both CSV discovery and the etags (a bucket listing is paged and slow).
    listing: dict[str, ObjectInfo] = {info.key: info for info in store.list("")}
    csvs = metadata_keys(listing.values(), noise_dir)
    frames = [read_metadata(store, key) for key in csvs]
    manifest = pl.concat(frames, how="vertical") if frames else empty_manifest()
    keys = sorted({k for k in manifest["key"].to_list() if k is not None})
    hashes = _hash_objects(store, keys, listing, hash_cache, workers)
    manifest = _with_hashes(manifest, hashes)
    return Snapshot(manifest=manifest, digest=manifest_digest(manifest), csvs=csvs)


def _hash_objects(
    store: ObjectStore, keys: list[str], listing: dict[str, ObjectInfo],
    hash_cache: dict[tuple[str, str], str] | None, workers: int,
) -> dict[str, _Hashed]:
    hashes: dict[str, _Hashed] = {}
    to_read: list[str] = []
    for key in keys:
        info = listing.get(key)
        if info is None:
            hashes[key] = (None, None, Problem(Reason.MISSING_FILE, f"audio file not found: {key}"))
        elif hash_cache is not None and info.etag and (key, info.etag) in hash_cache:
            hashes[key] = (hash_cache[(key, info.etag)], info.size, None)
        else:
            to_read.append(key)

    def read(key: str) -> tuple[str, _Hashed]:
        try:
            data = store.get(key)
        except ObjectNotFound:
            return key, (None, None, Problem(Reason.MISSING_FILE, f"audio file not found: {key}"))
        except StoreError as exc:
            return key, (None, None, Problem(Reason.UNREADABLE, f"cannot read audio file {key}: {exc}"))
        return key, (sha256_hex(data), len(data), None)

    if to_read:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_read)))) as pool:
            for key, result in pool.map(read, to_read):
                hashes[key] = result
                etag = listing[key].etag
                if hash_cache is not None and etag and result[0] is not None:
                    hash_cache[(key, etag)] = result[0]
    return hashes


def _with_hashes(manifest: pl.DataFrame, hashes: dict[str, _Hashed]) -> pl.DataFrame:
    """Fill sha256/size; a file problem comes before the row's own (it is the one to fix first)."""
    shas, sizes, codes, problems = [], [], [], []
    rows = manifest.select("key", "problem_code", "problem").iter_rows()
    for key, code, problem in rows:
        sha, size, file_problem = hashes.get(key, (None, None, None)) if key is not None else (None, None, None)
        shas.append(sha)
        sizes.append(size)
        codes.append(file_problem.code.value if file_problem else code)
        problems.append("; ".join(p for p in (file_problem and file_problem.message, problem) if p) or None)
    return manifest.with_columns(
        pl.Series("sha256", shas, dtype=pl.String),
        pl.Series("size", sizes, dtype=pl.Int64),
        pl.Series("problem_code", codes, dtype=pl.String),
        pl.Series("problem", problems, dtype=pl.String),
    )


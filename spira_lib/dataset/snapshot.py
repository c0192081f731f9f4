"""Snapshot: metadata CSVs + audio objects -> one manifest with content hashes and a digest.

Nothing here writes to the dataset store: raw data is never modified. Rows
that cannot be used are kept with their problem, so validation can quarantine
them with the file and CSV row a person needs to fix them.
"""
from __future__ import annotations

import unicodedata
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from spira_lib.config import AudioConfig
from spira_lib.dataset.manifest import Snapshot, empty_manifest, manifest_digest
from spira_lib.dataset.metadata import metadata_keys, noise_prefix, read_metadata
from spira_lib.hashing import sha256_hex
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore
from spira_lib.reasons import Problem, Reason, UnusableObject, problem_of

# key -> (sha256, size, problem): what hashing one referenced object found.
_Hashed = tuple[str | None, int | None, Problem | None]


def snapshot(
    store: ObjectStore,
    *,
    noise_dir: str = "noises",
    hash_cache: dict[tuple[str, str], str] | None = None,
    workers: int = 8,
    max_file_bytes: int | None = None,
) -> Snapshot:
    """Read every metadata CSV and hash every referenced audio object.

    ``hash_cache`` maps ``(key, etag) -> sha256``. The etag comes from
    ``store.list`` (S3 ETag, mtime+size locally, md5 in memory) and changes
    whenever the object does, so a cache hit means the bytes are unchanged and
    need not be downloaded again. The dict is read and updated in place (only for
    objects with a non-empty etag); persist it between runs to make re-snapshots
    of a large, mostly unchanged bucket cheap.

    A referenced file that does not exist or cannot be read becomes that row's
    problem; it does not stop the snapshot. So does one that is larger than
    ``max_file_bytes`` (default: ``audio.max_file_mb``), judged from the listing
    without reading it. ``workers`` threads download in parallel (network stores
    are latency-bound).
    """
    limit = AudioConfig().max_file_bytes if max_file_bytes is None else max_file_bytes
    # One listing serves both CSV discovery and the etags (a bucket listing is paged and slow).
    listing: dict[str, ObjectInfo] = {info.key: info for info in store.list("")}
    csvs = metadata_keys(listing.values(), noise_dir)
    frames = [read_metadata(store, key, max_bytes=limit, size=listing[key].size) for key in csvs]
    manifest = pl.concat(frames, how="vertical") if frames else empty_manifest()
    manifest = _match_listed_names(manifest, listing)
    keys = sorted({k for k in manifest["key"].to_list() if k is not None})
    hashes = _path_problems(keys, csvs, noise_prefix(noise_dir))
    hashes |= _hash_objects(store, [k for k in keys if k not in hashes], listing, hash_cache, workers, limit)
    manifest = _with_hashes(manifest, hashes)
    return Snapshot(manifest=manifest, digest=manifest_digest(manifest), csvs=csvs)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _match_listed_names(manifest: pl.DataFrame, listing: dict[str, ObjectInfo]) -> pl.DataFrame:
    """A file_path that names a listed file in another Unicode form (NFC in the CSV, NFD on macOS) is that file."""
    by_nfc = {_nfc(k): k for k in listing}
    keys = manifest["key"].to_list()
    matched = [k if k is None or k in listing else by_nfc.get(_nfc(k), k) for k in keys]
    if matched == keys:
        return manifest
    return manifest.with_columns(pl.Series("key", matched, dtype=pl.String))


def _path_problems(keys: list[str], csvs: list[str], noise: str) -> dict[str, _Hashed]:
    """Keys that exist but are not audio clips: a metadata CSV, or a recording in the noise folder."""
    found: dict[str, _Hashed] = {}
    csv_set = set(csvs)
    for key in keys:
        if key in csv_set:
            found[key] = (None, None, Problem(Reason.BAD_PATH, f"file_path points at the metadata CSV {key}, not at audio"))
        elif noise and key.startswith(noise):
            found[key] = (None, None, Problem(
                Reason.BAD_PATH, f"file_path points into the noise folder ({noise}): its recordings are ward noise "
                "for augmentation, not labelled clips",
            ))  # fmt: skip
    return found


def _unlisted_problem(store: ObjectStore, key: str, listing: dict[str, ObjectInfo]) -> Problem:
    """Why a referenced key is not in the listing, as precisely as the store can tell without reading a file."""
    hidden = next((part for part in key.split("/") if part.startswith(".")), None)
    if hidden is not None:
        return Problem(Reason.BAD_PATH, f"file_path {key} is inside a hidden folder ({hidden}), which is not part of the dataset")
    try:
        if store.exists(key):
            return Problem(Reason.MISSING_FILE, f"audio file {key} was not in the dataset listing (added during the snapshot?)")
        store.get(key)  # nothing readable is there: the store says what is (a folder, a named pipe, a broken link)
    except ObjectNotFound:
        pass
    # The store's verdict on the object itself; any other storage error fails the run (a retry
    # may succeed), so a passing fault never quarantines a good clip.
    except UnusableObject as exc:
        return problem_of(exc, Reason.UNREADABLE, f"cannot read audio file {key}: ")
    else:
        return Problem(Reason.MISSING_FILE, f"audio file {key} was not in the dataset listing (added during the snapshot?)")
    folded = _nfc(key).casefold()
    twins = sorted(k for k in listing if _nfc(k).casefold() == folded)
    if twins:
        return Problem(Reason.MISSING_FILE, f"audio file not found: {key} (the dataset has {twins[0]}: file names differ in letter case)")
    return Problem(Reason.MISSING_FILE, f"audio file not found: {key}")


def _too_large(key: str, size: int, limit: int) -> Problem:
    return Problem(
        Reason.TOO_LARGE,
        f"audio file {key} is {size / 2**20:.0f} MB, larger than the {limit / 2**20:g} MB limit (audio.max_file_mb); it was not read",
    )


def _hash_objects(
    store: ObjectStore, keys: list[str], listing: dict[str, ObjectInfo],
    hash_cache: dict[tuple[str, str], str] | None, workers: int, limit: int,
) -> dict[str, _Hashed]:
    hashes: dict[str, _Hashed] = {}
    to_read: list[str] = []
    for key in keys:
        info = listing.get(key)
        if info is None:
            hashes[key] = (None, None, _unlisted_problem(store, key, listing))
        elif info.size > limit:
            hashes[key] = (None, info.size, _too_large(key, info.size, limit))
        elif hash_cache is not None and info.etag and (key, info.etag) in hash_cache:
            hashes[key] = (hash_cache[(key, info.etag)], info.size, None)
        else:
            to_read.append(key)

    def read(key: str) -> tuple[str, _Hashed]:
        try:
            data = store.get(key)
        except ObjectNotFound:
            return key, (None, None, Problem(Reason.MISSING_FILE, f"audio file not found: {key}"))
        # The store's verdict on the object itself; any other storage error fails the run (a retry
        # may succeed), so a passing fault never quarantines a good clip.
        except UnusableObject as exc:
            return key, (None, None, problem_of(exc, Reason.UNREADABLE, f"cannot read audio file {key}: "))
        if len(data) > limit:  # grew since the listing
            return key, (None, len(data), _too_large(key, len(data), limit))
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


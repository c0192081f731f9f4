"""Per-clip audio profiles cached next to the features, keyed by content.

Layout on the registry-side ObjectStore (beside ``features/<extractor_key>/``)::

    features/profile-v<PROFILE_VERSION>/<sha[:2]>/<sha256>.json

A profile depends only on the clip's bytes and the profile code, so a clip is
profiled once, whatever snapshot, split or feature config it later appears in;
bumping ``PROFILE_VERSION`` makes every cached profile stale.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import polars as pl

from spira_lib.audio import AudioError
from spira_lib.monitoring.profile import PROFILE_VERSION, audio_profile
from spira_lib.monitoring.reference import ProfileTable, ReferenceProfile, categorical_counts
from spira_lib.ports import ObjectNotFound, ObjectStore, join_key


def _encode(profile: dict[str, float]) -> bytes:
    # NaN is not JSON: stored as null.
    return json.dumps({k: (None if not math.isfinite(v) else v) for k, v in profile.items()}, sort_keys=True).encode()


def _decode(data: bytes) -> dict[str, float]:
    return {k: (float("nan") if v is None else float(v)) for k, v in json.loads(data).items()}


class ProfileStore:
    def __init__(self, store: ObjectStore, prefix: str = "features") -> None:
        self.store = store
        self.prefix = join_key(prefix, f"profile-v{PROFILE_VERSION}")

    def key(self, sha: str) -> str:
        return join_key(self.prefix, sha[:2], f"{sha}.json")

    def get(self, sha: str) -> dict[str, float] | None:
        try:
            return _decode(self.store.get(self.key(sha)))
        except ObjectNotFound:
            return None

    def put(self, sha: str, profile: dict[str, float]) -> None:
        self.store.put(self.key(sha), _encode(profile))

    def ensure(
        self, data_store: ObjectStore, rows: Iterable[dict], *, workers: int = 2
    ) -> tuple[ProfileTable, list[dict], int]:
        """Profiles of ``rows`` (dicts with ``key`` and ``sha256``): cached ones read, the rest computed and cached.

        Returns the table (column ``clip`` = sha256, in row order, failures
        left out), the failures (``{"file", "reason"}``) and how many were computed.
        """
        rows = list(rows)

        def work(row: dict) -> tuple[dict[str, float] | None, bool, dict | None]:
            cached = self.get(row["sha256"])
            if cached is not None:
                return cached, False, None
            try:
                profile = audio_profile(data_store.get(row["key"]), name=row["key"])
            except (AudioError, ObjectNotFound) as exc:
                return None, False, {"file": row["key"], "reason": str(exc)}
            self.put(row["sha256"], profile)
            return profile, True, None

        done: list[tuple[str, dict[str, float]]] = []
        failed: list[dict] = []
        computed = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for row, (profile, fresh, failure) in zip(rows, pool.map(work, rows)):
                if failure:
                    failed.append(failure)
                    continue
                computed += fresh
                done.append((row["sha256"], profile))
        return ProfileTable.from_profiles(done), failed, computed


def build_reference(
    profiles: ProfileStore,
    data_store: ObjectStore,
    frame: pl.DataFrame,
    *,
    embeddings: np.ndarray | None = None,
    embedding_model: str | None = None,
    workers: int = 2,
) -> tuple[ReferenceProfile, list[dict]]:
    """The reference of the clips in ``frame`` (manifest rows: ``key``, ``sha256``, and label/sex/age/hospital when present).

    For a registered model: ``frame`` = its training split's train rows,
    ``embeddings`` = ``clip_embeddings`` of the same clips by that model (in
    any order: they are subsampled, not matched to rows). Returns the reference
    and the clips that could not be read.
    """
    table, failed, _ = profiles.ensure(data_store, frame.select("key", "sha256").to_dicts(), workers=workers)
    ref = ReferenceProfile.build(
        table, categorical=categorical_counts(frame), embeddings=embeddings, embedding_model=embedding_model
    )
    return ref, failed

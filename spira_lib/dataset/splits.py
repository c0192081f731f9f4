"""Speaker-disjoint, class-stratified, seeded and stable train/eval/test splits."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from spira_lib.config import SplitConfig
from spira_lib.dataset.manifest import SPLITS
from spira_lib.hashing import sha256_hex


def _unit_hash(seed: int, text: str) -> float:
    digest = bytes.fromhex(sha256_hex(f"{seed}\x1f{text}".encode("utf-8")))
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _bucket(u: float, cfg: SplitConfig) -> str:
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.eval_fraction:
        return "eval"
    return "train"


def _interval(split: str, cfg: SplitConfig) -> tuple[float, float]:
    t, e = cfg.test_fraction, cfg.eval_fraction
    return {"test": (0.0, t), "eval": (t, t + e), "train": (t + e, 1.0)}[split]


@dataclass
class _Speaker:
    """One speaker (or one row without a speaker id): its labels, given splits and clips."""

    labels: Counter = field(default_factory=Counter)
    given: Counter = field(default_factory=Counter)
    shas: list[str] = field(default_factory=list)
    all_derived: bool = True

    @property
    def majority_class(self) -> int:
        # Majority label; a tie (a speaker labelled both ways) counts as patient.
        return max(self.labels, key=lambda lab: (self.labels[lab], lab)) if self.labels else -1


def _group_rows(manifest: pl.DataFrame) -> tuple[dict[str, _Speaker], list[str]]:
    derived = manifest["speaker_derived"].to_list() if "speaker_derived" in manifest.columns else [False] * manifest.height
    groups: dict[str, _Speaker] = {}
    row_group: list[str] = []
    rows = manifest.select("speaker_id", "label", "split", "sha256", "source_csv", "row").iter_rows()
    for i, (sid, label, split, sha, csv, row) in enumerate(rows):
        gid = sid if sid is not None else f"\x00{csv}:{row}"
        row_group.append(gid)
        g = groups.setdefault(gid, _Speaker())
        if label is not None:
            g.labels[int(label)] += 1
        if split is not None:
            g.given[split] += 1
        if sha is not None:
            g.shas.append(sha)
        g.all_derived = g.all_derived and bool(derived[i])
    return groups, row_group


def _patch_small_classes(
    by_class: dict[int, list[str]], placed: dict[str, str], fixed: set[str], u_of: dict[str, float], cfg: SplitConfig
) -> None:
    """Give each split at least one speaker of each class when the class has enough speakers."""
    for cls, members in sorted(by_class.items()):
        if cls < 0:
            continue
        for target in ("train", "test", "eval"):
            count = Counter(placed[g] for g in members)
            if count[target]:
                continue
            donors = [
                s for s in SPLITS if s != target and count[s] >= 2
                and any(placed[g] == s and g not in fixed for g in members)
            ]  # fmt: skip
            if not donors:
                continue
            donor = max(donors, key=lambda s: count[s])
            lo, hi = _interval(target, cfg)
            movable = sorted(g for g in members if placed[g] == donor and g not in fixed)
            chosen = min(movable, key=lambda g: (min(abs(u_of[g] - lo), abs(u_of[g] - hi)), g))
            placed[chosen] = target


def assign_splits(manifest: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """Fill the ``split`` column: speaker-disjoint, stratified by class, seeded and stable.

    Rows that already have a split keep it (and so does the rest of their
    speaker). Every other speaker gets a number in [0, 1) from a seeded hash of
    its identity and lands in test / eval / train by comparing it with
    ``test_fraction`` and ``test_fraction + eval_fraction``. Because each
    speaker's placement depends only on itself, adding speakers never moves
    existing ones; stratification holds in expectation within each class (the
    speaker's majority label). Small datasets are then patched so that each
    split has at least one speaker of each class when the class has enough
    speakers; only that patch can move a speaker when the dataset grows.

    Identity is ``speaker_id``, except for stem-derived ids, where it is the
    clip's content hash, so renaming a file does not change its split.
    """
    if manifest.height == 0 or manifest["split"].null_count() == 0:
        return manifest
    groups, row_group = _group_rows(manifest)
    placed: dict[str, str] = {}
    fixed: set[str] = set()
    by_class: dict[int, list[str]] = {}
    u_of: dict[str, float] = {}
    for gid, g in groups.items():
        by_class.setdefault(g.majority_class, []).append(gid)
        if g.given:
            placed[gid] = max(sorted(g.given), key=lambda s: g.given[s])
            fixed.add(gid)
            continue
        ident = min(g.shas) if g.all_derived and g.shas else gid
        u_of[gid] = _unit_hash(cfg.seed, ident)
        placed[gid] = _bucket(u_of[gid], cfg)
    _patch_small_classes(by_class, placed, fixed, u_of, cfg)
    splits = [s if s is not None else placed[g] for s, g in zip(manifest["split"].to_list(), row_group)]
    # A speaker with a given split on some rows gets it on all of them.
    splits = [placed[g] if g in fixed else s for s, g in zip(splits, row_group)]
    return manifest.with_columns(pl.Series("split", splits, dtype=pl.String))

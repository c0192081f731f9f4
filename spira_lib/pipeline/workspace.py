"""The ports one run works with, and the identities its results are keyed by.

``Workspace`` is built by the composition root (``spira_lib.bootstrap``) once
per process and dataset/registry pair. ``code_version`` and ``training_key``
decide when a model must be trained again; ``workspace_id`` lets caches tell a
recreated registry from the old one.
"""
from __future__ import annotations

import functools
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import spira_lib
from spira_lib.config import SpiraConfig
from spira_lib.feature_store import FeatureStore
from spira_lib.hashing import hash_files, stable_hash
from spira_lib.noise import NoiseBank, listing_digest
from spira_lib.pipeline.layout import WORKSPACE_DOC, get_frame, get_json, put_json
from spira_lib.ports import ModelPublisher, ObjectStore
from spira_lib.privacy import Pseudonymizer, Redactor, key_from
from spira_lib.registry import ModelRegistry

# Config sections that change what gets trained (evaluation and gate settings do not).
TRAINING_SECTIONS = ("audio", "features", "augment", "model", "training", "split", "validation")

# Source of the core that decides what model comes out of a given snapshot +
# config. Its hash is part of every training key: changing it retrains once.
# (The CLI, reports, registry and the demo generator do not change the model.)
MODEL_CODE = (
    "audio.py", "channels.py", "config.py", "reasons.py", "noise.py", "features.py", "feature_store.py", "model.py", "spiraconv_cpu.py",
    "spiraconv_kernels.py", "spiraconv_kernels.c", "spiraconv_native.py",
    "checkpoint.py",
    "dataset", "validation", "training",
)


class PipelineError(RuntimeError):
    """The pipeline cannot go on (e.g. not enough valid data); the message says why."""


@dataclass
class Workspace:
    """The ports one run works with."""

    data: ObjectStore  # the labelled dataset (read only)
    store: ObjectStore  # registry side: models, features, snapshots, staging, caches
    noise: ObjectStore  # where the ward-noise recordings live
    noise_prefix: str
    registry: ModelRegistry
    features: FeatureStore
    # Where promoted models are handed off for serving (None: off).
    publisher: ModelPublisher | None = field(default=None, repr=False)
    # The pseudonym key from the environment (None: the one stored with the registry).
    privacy_key: str | None = field(default=None, repr=False)
    # Decoded noise banks by sample rate, with the listing digest they were decoded from.
    _banks: dict[int, tuple[str, NoiseBank]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def noise_bank(self, sample_rate: int) -> NoiseBank:
        """The ward-noise bank at ``sample_rate``, decoded again only when the noise files changed."""
        current = listing_digest(self.noise, self.noise_prefix)
        with self._lock:
            cached = self._banks.get(sample_rate)
            if cached is None or cached[0] != current:
                self._banks[sample_rate] = (current, NoiseBank.load(self.noise, self.noise_prefix, sample_rate))
            return self._banks[sample_rate][1]

    def pseudonyms(self, cfg: SpiraConfig) -> Pseudonymizer:
        """How names are shown to people other than the data owners (see spira_lib.privacy)."""
        return Pseudonymizer(key_from(self.store, self.privacy_key), show_raw=cfg.privacy.show_raw_names)

    def redactor(self, cfg: SpiraConfig, manifest_key: str) -> Redactor:
        """Hides the names of one snapshot (file keys, given speaker ids) in text shown to people."""
        manifest = get_frame(self.store, manifest_key)
        names = manifest["key"].to_list() + manifest.filter(~manifest["speaker_derived"])["speaker_id"].to_list()
        return Redactor.of(self.pseudonyms(cfg), names)

    def read_id(self) -> str | None:
        """The workspace id, or None when nothing was written here yet (never writes)."""
        doc = get_json(self.store, WORKSPACE_DOC)
        return doc.get("id") if isinstance(doc, dict) else None

    def ensure_id(self) -> str:
        """The workspace id, created on first use: a random id, so caches never mistake a deleted and
        recreated registry for the old one."""
        wid = self.read_id()
        if wid is None:
            wid = uuid.uuid4().hex
            put_json(self.store, WORKSPACE_DOC, {"id": wid, "created_by": code_version()})
        return wid


def _sources(root: Path) -> list[tuple[str, bytes]]:
    files = []
    for name in MODEL_CODE:
        path = root / name
        paths = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files += [(p.relative_to(root).as_posix(), p.read_bytes()) for p in paths]
    return files


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the model-shaping source, recorded in every checkpoint."""
    return f"{spira_lib.__version__}+{hash_files(_sources(Path(spira_lib.__file__).parent))[:8]}"


def training_key(split_digest: str, cfg: SpiraConfig) -> str:
    """Identity of a training: data (with its split) + config that shapes the model + code."""
    return stable_hash({"data": split_digest, "config": cfg.digest(*TRAINING_SECTIONS), "code": code_version()})[:20]

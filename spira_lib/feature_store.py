"""Per-clip feature cache on the storage side, keyed by content, not paths.

Layout on the registry/storage ObjectStore::

    features/<extractor_key>/<sha[:2]>/<sha256>.<variant>.npy

``extractor_key`` hashes the feature config and feature-code version; the
variant is ``clean``, ``aug-<aug_key>-<i>`` (training noise copies) or
``shortcut-<key>`` (test controls with ward noise, for the shortcut check).
Because the key is the clip's sha256, renaming or re-uploading a file reuses its
features, and a snapshot with 5% new clips computes features for those only.

Integrity: each file is a plain ``.npy`` followed by a 40-byte trailer
(``SPIRASUM`` + the sha256 of the ``.npy`` bytes); numpy ignores bytes after
the array, so the files stay ordinary ``.npy`` files. On read, the size the
header implies and the checksum are checked (files written before the
trailer existed get the size check only). ``ensure`` treats a damaged file
as missing and recomputes it; ``get`` refuses one with ``DamagedFeatures``.
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from spira_lib.audio import AudioError, decode_audio, preprocess
from spira_lib.config import AugmentConfig, EvaluationConfig
from spira_lib.hashing import stable_hash
from spira_lib.features import FEATURE_CODE_VERSION, FeatureExtractor
from spira_lib.noise import NoiseBank, augment_wave
from spira_lib.ports import ObjectNotFound, ObjectStore, join_key

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class VariantPlan:
    """Which feature variants a run needs, and the keys that identify them."""

    noisy_copies: int
    aug_key: str
    shortcut_key: str | None
    aug_cfg: AugmentConfig
    eval_cfg: EvaluationConfig

    @classmethod
    def build(cls, aug: AugmentConfig, ev: EvaluationConfig, noise: NoiseBank) -> "VariantPlan":
        if len(noise) == 0:
            # No noise recordings: no augmentation and no shortcut check; the
            # gate then refuses promotion with that reason instead of passing silently.
            return cls(0, "none", None, aug, ev)
        aug_noise, check_noise = noise.split(aug.holdout_noise_fraction)
        recipe: dict = {"noise": aug_noise.digest, "snr": [aug.snr_db_min, aug.snr_db_max], "code": FEATURE_CODE_VERSION}
        # Only non-default options enter the key, so existing caches stay valid.
        if aug.noise_prob != 1.0:
            recipe["noise_prob"] = aug.noise_prob
        if aug.channel_prob > 0:
            recipe["channel_prob"] = aug.channel_prob
        if aug.synthetic_noise_prob > 0:
            recipe["synthetic_noise_prob"] = aug.synthetic_noise_prob
        if aug.snr_reference != "clip":
            recipe["snr_reference"] = aug.snr_reference
        aug_key = stable_hash(recipe)[:12]
        shortcut_key = stable_hash(
            {"noise": check_noise.digest, "snr": [ev.shortcut_snr_db_min, ev.shortcut_snr_db_max], "seed": ev.seed}
        )[:12]
        return cls(aug.noisy_copies, aug_key, shortcut_key, aug, ev)

    def noise_parts(self, noise: NoiseBank) -> tuple[NoiseBank, NoiseBank]:
        """(bank for augmentation, bank for the shortcut check) of ``noise`` under this plan."""
        return noise.split(self.aug_cfg.holdout_noise_fraction)

    def aug_variant(self, i: int) -> str:
        return f"aug-{self.aug_key}-{i}"

    @property
    def shortcut_variant(self) -> str:
        return f"shortcut-{self.shortcut_key}"

    def variants_for(self, split: str | None, label: int) -> list[str]:
        out = ["clean"]
        if split == "train":
            out += [self.aug_variant(i) for i in range(1, self.noisy_copies + 1)]
        if split == "test" and label == 0 and self.shortcut_key:
            out.append(self.shortcut_variant)
        return out


def _rng_for(sha: str, variant: str, salt: int = 0) -> np.random.Generator:
    # Seeded by the clip's content and the variant name, never by processing
    # order, so results do not depend on threading or on which clips are new.
    return np.random.default_rng([int(sha[:15], 16), int(stable_hash(variant)[:12], 16), salt])


# --------------------------------------------------------------------------- integrity

TRAILER_MAGIC = b"SPIRASUM"
TRAILER_LEN = len(TRAILER_MAGIC) + 32


class DamagedFeatures(ValueError):
    """A cached feature file is truncated, extended or corrupted; the feature step recomputes it."""


def seal(npy: bytes) -> bytes:
    """``.npy`` bytes with the checksum trailer appended."""
    return npy + TRAILER_MAGIC + hashlib.sha256(npy).digest()


def check_sealed(raw: bytes, where: str) -> None:
    """Raise DamagedFeatures unless ``raw`` is a complete ``.npy`` whose trailer (if any) matches."""
    try:
        fp = io.BytesIO(raw)
        fmt = np.lib.format
        major, _ = fmt.read_magic(fp)
        read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, dtype = read_header(fp)
        expected = fp.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged header
        raise DamagedFeatures(f"feature file {where} is damaged: unreadable .npy header ({exc})") from None
    if len(raw) == expected:
        return  # written before checksums: the size is all we can check
    if len(raw) != expected + TRAILER_LEN or raw[expected:expected + len(TRAILER_MAGIC)] != TRAILER_MAGIC:
        raise DamagedFeatures(
            f"feature file {where} is damaged: {len(raw)} bytes, expected {expected + TRAILER_LEN} (truncated or extended)"
        )
    if hashlib.sha256(raw[:expected]).digest() != raw[expected + len(TRAILER_MAGIC):]:
        raise DamagedFeatures(f"feature file {where} is damaged: its sha256 does not match the checksum stored with it")


# --------------------------------------------------------------------------- store


@dataclass
class FeatureStats:
    clips: int = 0
    computed: int = 0  # feature arrays written
    reused: int = 0  # feature arrays already present
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0  # seconds of audio decoded

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureStore:
    def __init__(self, store: ObjectStore, prefix: str = "features", cache_bytes: int = 512 << 20) -> None:
        self.store = store
        self.prefix = prefix
        # Small LRU of decoded arrays: training touches each clip once per epoch.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        # Local files already checked in this process, by (path, size, mtime): mmap reads stay cheap.
        self._checked: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()

    def key(self, extractor_key: str, sha: str, variant: str) -> str:
        return join_key(self.prefix, extractor_key, sha[:2], f"{sha}.{variant}.npy")

    def has(self, extractor_key: str, sha: str, variant: str) -> bool:
        """True when the file exists and is intact (a damaged one counts as missing, so it gets recomputed)."""
        key = self.key(extractor_key, sha, variant)
        try:
            self._load(key)
        except ObjectNotFound:
            return False
        except DamagedFeatures as exc:
            log.warning("%s; recomputing it", exc)
            with self._lock:
                self._cache.pop(key, None)
            return False
        return True

    def put(self, extractor_key: str, sha: str, variant: str, feats: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(feats, dtype=np.float32), allow_pickle=False)
        self.store.put(self.key(extractor_key, sha, variant), seal(buf.getvalue()))

    def get(self, extractor_key: str, sha: str, variant: str = "clean") -> np.ndarray:
        """The features of one clip variant; DamagedFeatures when the stored file is not intact."""
        key = self.key(extractor_key, sha, variant)
        try:
            return self._load(key)
        except ObjectNotFound:
            raise ObjectNotFound(f"features for clip {sha[:12]} ({variant}) missing at {key}") from None

    def _load(self, key: str) -> np.ndarray:
        hit = self._cache.get(key)
        if hit is not None:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
            return hit
        path = self.store.local_path(key)
        if path is not None:
            st = path.stat()
            stamp = (str(path), st.st_size, st.st_mtime_ns)
            if stamp not in self._checked:
                check_sealed(path.read_bytes(), str(path))
                self._checked.add(stamp)
            # Memory-mapped: large datasets stream from disk instead of sitting in RAM.
            return np.load(path, mmap_mode="r", allow_pickle=False)
        raw = self.store.get(key)
        check_sealed(raw, key)
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        self._remember(key, arr)
        return arr

    def _remember(self, key: str, arr: np.ndarray) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = arr
            self._cached += arr.nbytes
            while self._cached > self._cache_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes

    def ensure(
        self,
        data_store: ObjectStore,
        rows: Iterable[dict],
        extractor: FeatureExtractor,
        plan: VariantPlan,
        noise: NoiseBank,
        *,
        workers: int = 2,
        on_clip: Callable[[int, int], None] | None = None,
    ) -> FeatureStats:
        """Make sure every needed variant exists for each row (dict with key, sha256, split, label).

        Work is per clip: decode once, then produce every missing variant. A
        clip that fails to decode is reported in ``failed`` (validation normally
        caught it earlier) and the others go on.
        """
        start = time.perf_counter()
        rows = list(rows)
        stats = FeatureStats(clips=len(rows))
        ekey = extractor.key
        aug_noise, check_noise = plan.noise_parts(noise)
        sr = extractor.cfg.sample_rate

        def work(row: dict) -> tuple[int, int, float, dict | None]:
            wanted = plan.variants_for(row.get("split"), int(row["label"]))
            missing = [v for v in wanted if not self.has(ekey, row["sha256"], v)]
            if not missing:
                return 0, len(wanted), 0.0, None
            try:
                wave, _ = decode_audio(data_store.get(row["key"]), target_sr=extractor.cfg.sample_rate, name=row["key"])
            except (AudioError, ObjectNotFound) as exc:
                return 0, 0, 0.0, {"file": row["key"], "reason": str(exc)}
            wave = preprocess(wave, extractor.cfg.sample_rate)
            for variant in missing:
                if variant == "clean":
                    x = wave
                elif variant.startswith("aug-"):
                    x = augment_wave(wave, sr, _rng_for(row["sha256"], variant), plan.aug_cfg, aug_noise)
                else:
                    ev = plan.eval_cfg
                    x = check_noise.mix(wave, _rng_for(row["sha256"], variant, ev.seed), ev.shortcut_snr_db_min, ev.shortcut_snr_db_max)
                self.put(ekey, row["sha256"], variant, extractor(x))
            return len(missing), len(wanted) - len(missing), len(wave) / extractor.cfg.sample_rate, None

        done = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for computed, reused, secs, failure in pool.map(work, rows):
                stats.computed += computed
                stats.reused += reused
                stats.audio_seconds += secs
                if failure:
                    stats.failed.append(failure)
                done += 1
                if on_clip:
                    on_clip(done, len(rows))
        stats.seconds = time.perf_counter() - start
        return stats


class StoreClipSource:
    """training.ClipSource over the feature store: variant 0 = clean, i >= 1 = noise copy i."""

    def __init__(
        self,
        fstore: FeatureStore,
        extractor_key: str,
        shas: Sequence[str],
        labels: Sequence[int],
        plan: VariantPlan | None = None,
        *,
        augmented: bool = False,
    ) -> None:
        self.fstore = fstore
        self.ekey = extractor_key
        self.shas = list(shas)
        self.labels = [int(x) for x in labels]
        self.plan = plan
        self._copies = plan.noisy_copies if (plan is not None and augmented) else 0

    def __len__(self) -> int:
        return len(self.shas)

    def label(self, i: int) -> int:
        return self.labels[i]

    def n_variants(self, i: int) -> int:
        return 1 + self._copies

    def features(self, i: int, variant: int = 0) -> np.ndarray:
        name = "clean" if variant == 0 else self.plan.aug_variant(variant)  # type: ignore[union-attr]
        return np.asarray(self.fstore.get(self.ekey, self.shas[i], name), dtype=np.float32)


class ShortcutClipSource(StoreClipSource):
    """Test clips as the shortcut check sees them: controls with ward noise, patients unchanged."""

    def features(self, i: int, variant: int = 0) -> np.ndarray:
        if self.labels[i] == 0 and self.plan is not None and self.plan.shortcut_key:
            return np.asarray(self.fstore.get(self.ekey, self.shas[i], self.plan.shortcut_variant), dtype=np.float32)
        return super().features(i, 0)

"""Ward-noise recordings: decoded once, mixed into clips for augmentation and for the shortcut check."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from spira_lib.audio import AudioError, decode_audio, mix_at_snr
from spira_lib.hashing import sha256_hex, stable_hash
from spira_lib.ports import ObjectStore, join_key

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def _folder(prefix: str) -> str:
    return join_key(prefix) + "/" if prefix else ""


def listing_digest(store: ObjectStore, prefix: str) -> str:
    """Cheap identity of the noise folder (keys, sizes, etags): a changed file changes it."""
    entries = [(i.key, i.size, i.etag) for i in store.list(_folder(prefix)) if i.key.lower().endswith(AUDIO_EXTENSIONS)]
    return stable_hash(entries)


class NoiseBank:
    """Ward-noise recordings used for augmentation and for the shortcut check.

    ``digest`` identifies the recordings by name and content, so feature
    variants made with a bank are recomputed when any recording changes.
    """

    def __init__(self, clips: Sequence[np.ndarray], names: Sequence[str], digest: str) -> None:
        self.clips = list(clips)
        self.names = list(names)
        self.digest = digest

    def __len__(self) -> int:
        return len(self.clips)

    @classmethod
    def load(cls, store: ObjectStore, prefix: str, sample_rate: int) -> "NoiseBank":
        """Decode every audio object under ``prefix``; unreadable ones are logged and skipped."""
        clips, names, hashes = [], [], []
        for info in store.list(_folder(prefix)):
            if not info.key.lower().endswith(AUDIO_EXTENSIONS):
                continue
            data = store.get(info.key)
            try:
                wave, _ = decode_audio(data, target_sr=sample_rate, name=info.key)
            except AudioError as exc:
                log.warning("noise file %s skipped: %s", info.key, exc)
                continue
            if len(wave) < sample_rate // 10:
                log.warning("noise file %s skipped: shorter than 0.1 s", info.key)
                continue
            clips.append(wave)
            names.append(info.key)
            hashes.append(stable_hash(info.key + ":" + str(len(data)) + ":" + sha256_hex(data)))
        return cls(clips, names, stable_hash(sorted(hashes))[:16] if hashes else "none")

    def mix(self, wave: np.ndarray, rng: np.random.Generator, snr_min: float, snr_max: float) -> np.ndarray:
        noise = self.clips[int(rng.integers(len(self.clips)))]
        snr = float(rng.uniform(snr_min, snr_max))
        return mix_at_snr(wave, noise, snr, rng)

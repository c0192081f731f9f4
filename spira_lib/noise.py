"""Ward-noise recordings: decoded once, mixed into clips for augmentation and for the shortcut check."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from spira_lib.audio import AudioError, decode_audio, mix_at_snr
from spira_lib.channels import mix_at_active_snr, random_channel, synthetic_noise
from spira_lib.config import AugmentConfig
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

    def __init__(
        self, clips: Sequence[np.ndarray], names: Sequence[str], digest: str, hashes: Sequence[str] | None = None,
        sample_rate: int = 16000,
    ) -> None:
        self.clips = list(clips)
        self.names = list(names)
        self.digest = digest
        # Content hash per recording (sha256 of its bytes): decides the held-out part.
        self.hashes = list(hashes) if hashes is not None else [stable_hash(n) for n in self.names]
        self.sample_rate = sample_rate

    def split(self, holdout_fraction: float) -> tuple["NoiseBank", "NoiseBank"]:
        """(augmentation part, held-out check part), chosen by content hash.

        The recordings are ordered by their content hash and the first
        ``round(holdout_fraction * n)`` (at least one, at most n - 1) are held
        out, so the split does not depend on names, listing order or which
        store they came from. ``holdout_fraction == 0`` or fewer than two
        recordings: both parts are the whole bank (no honest check possible).
        """
        n = len(self.clips)
        if holdout_fraction <= 0 or n < 2:
            return self, self
        k = min(n - 1, max(1, int(round(holdout_fraction * n))))
        order = sorted(range(n), key=lambda i: self.hashes[i])
        held, kept = sorted(order[:k]), sorted(order[k:])

        def part(idx: list[int]) -> "NoiseBank":
            hashes = [self.hashes[i] for i in idx]
            return NoiseBank([self.clips[i] for i in idx], [self.names[i] for i in idx],
                             stable_hash(sorted(hashes))[:16], hashes, self.sample_rate)

        return part(kept), part(held)

    def __len__(self) -> int:
        return len(self.clips)

    @classmethod
    def load(cls, store: ObjectStore, prefix: str, sample_rate: int) -> "NoiseBank":
        """Decode every audio object under ``prefix``; unreadable ones are logged and skipped."""
        clips, names, hashes, contents = [], [], [], []
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
            contents.append(sha256_hex(data))
        return cls(clips, names, stable_hash(sorted(hashes))[:16] if hashes else "none", contents, sample_rate)

    def mix(
        self, wave: np.ndarray, rng: np.random.Generator, snr_min: float, snr_max: float, reference: str = "clip"
    ) -> np.ndarray:
        noise = self.clips[int(rng.integers(len(self.clips)))]
        snr = float(rng.uniform(snr_min, snr_max))
        if reference == "active":
            return mix_at_active_snr(wave, noise, snr, rng, self.sample_rate)
        return mix_at_snr(wave, noise, snr, rng)


def augment_wave(wave: np.ndarray, sr: int, rng: np.random.Generator, aug: AugmentConfig, noise: NoiseBank) -> np.ndarray:
    """One training copy of a (preprocessed) clip: ward noise and/or a random recording chain.

    With the default options (noise_prob 1, channel_prob 0) this draws exactly
    what the original noise-only augmentation drew, so cached copies stay valid.
    """
    x = wave
    if len(noise) and (aug.noise_prob >= 1.0 or rng.random() < aug.noise_prob):
        if aug.synthetic_noise_prob > 0 and rng.random() < aug.synthetic_noise_prob:
            bank = NoiseBank([synthetic_noise(len(x), sr, rng)], ["synthetic"], "synthetic", sample_rate=sr)
            x = bank.mix(x, rng, aug.snr_db_min, aug.snr_db_max, aug.snr_reference)
        else:
            x = noise.mix(x, rng, aug.snr_db_min, aug.snr_db_max, aug.snr_reference)
    if aug.channel_prob > 0 and rng.random() < aug.channel_prob:
        x = random_channel(x, sr, rng)
    return x

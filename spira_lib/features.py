"""Acoustic front end: waveform -> [frames, features] with torchaudio.

The extractor is identified by a short key derived from its config and
``FEATURE_CODE_VERSION``; the feature store files features under that key, so
changing either recomputes features while unchanged clips are never redone.
"""
from __future__ import annotations

import numpy as np
import torch
import torchaudio

from spira_lib.config import FeatureConfig
from spira_lib.hashing import stable_hash

# Bump when the extraction code changes its output for the same config
# (e.g. a different preprocessing step): every cached feature becomes stale.
FEATURE_CODE_VERSION = "1"


class FeatureExtractor:
    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        spec_kwargs = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length)
        if cfg.kind == "mfcc":
            self._transform = torchaudio.transforms.MFCC(
                sample_rate=cfg.sample_rate,
                n_mfcc=cfg.n_mfcc,
                log_mels=cfg.log_mels,
                melkwargs=dict(spec_kwargs, n_mels=cfg.n_mels),
            )
        elif cfg.kind == "mel":
            mel = torchaudio.transforms.MelSpectrogram(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels, **spec_kwargs)
            self._transform = torch.nn.Sequential(mel, torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0))
        else:
            spec = torchaudio.transforms.Spectrogram(**spec_kwargs)
            self._transform = torch.nn.Sequential(spec, torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0))
        self._transform.eval()

    @property
    def key(self) -> str:
        """Identity of what this extractor produces (config + code version)."""
        return stable_hash({"cfg": self.cfg.model_dump(mode="json"), "code": FEATURE_CODE_VERSION})[:16]

    @property
    def n_features(self) -> int:
        return self.cfg.n_features

    @torch.no_grad()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """float32 mono waveform at cfg.sample_rate -> float32 [frames, features]."""
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        feats = self._transform(x)  # [features, frames]
        return feats.transpose(0, 1).contiguous().numpy()

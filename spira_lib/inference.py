"""Scoring single recordings with a registered checkpoint (what the inference service does)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spira_lib.audio import decode_audio, preprocess
from spira_lib.checkpoint import LoadedCheckpoint, load_checkpoint
from spira_lib.features import FeatureExtractor
from spira_lib.training.predict import predict_arrays


@dataclass
class Prediction:
    file: str
    probability: float
    decision: str  # "patient" | "control"

    def to_dict(self) -> dict:
        return {"file": self.file, "probability": round(self.probability, 6), "decision": self.decision}


class Predictor:
    """Checkpoint + the exact front end it was trained with."""

    def __init__(self, ckpt: LoadedCheckpoint, threshold: float = 0.5) -> None:
        self.ckpt = ckpt
        self.extractor = FeatureExtractor(ckpt.feat_cfg)
        self.threshold = threshold

    @classmethod
    def from_bytes(cls, blob: bytes, threshold: float = 0.5) -> "Predictor":
        return cls(load_checkpoint(blob), threshold)

    def features(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Waveform already at the model's rate -> features, with the training preprocessing."""
        return self.extractor(preprocess(wave, sample_rate))

    def probabilities(self, waves: list[np.ndarray]) -> np.ndarray:
        sr = self.ckpt.feat_cfg.sample_rate
        feats = [self.features(w, sr) for w in waves]
        return np.asarray(predict_arrays(self.ckpt.model, feats, model_cfg=self.ckpt.model_cfg, feat_cfg=self.ckpt.feat_cfg), dtype=float)

    def predict_bytes(self, name: str, data: bytes) -> Prediction:
        wave, _ = decode_audio(data, target_sr=self.ckpt.feat_cfg.sample_rate, name=name)
        p = float(self.probabilities([wave])[0])
        return Prediction(name, p, "patient" if p >= self.threshold else "control")

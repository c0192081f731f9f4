"""Helpers shared by the tests in this folder."""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf


SR = 16000


def encode(wave: np.ndarray, sr: int = SR, fmt: str = "WAV", subtype: str | None = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def voice(seed: int, seconds: float = 0.6, amp: float = 0.2, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(round(seconds * sr)))).clip(-0.9, 0.9).astype(np.float32)

"""Helpers shared by the tests in this folder."""
from __future__ import annotations

import io

import soundfile as sf


SR = 16000


def wav_bytes(wave, sr=SR):
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()

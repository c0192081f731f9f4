"""Helpers shared by the tests in this folder."""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from spira_lib.adapters.memory import MemoryStore


HEADER = "file_path,class,sexo,idade,nivel_falta_de_ar"


def wav(seed: int, seconds: float = 0.2, sr: int = 8000) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def csv(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def small_store() -> MemoryStore:
    store = MemoryStore()
    store.put("a.wav", wav(1))
    store.put("b.wav", wav(2))
    store.put("c.wav", wav(3))
    store.put("metadata.csv", csv("a.wav,1,M,50,2", "b.wav,0,F,30,0", "c.wav,1,F,61,3"))
    return store

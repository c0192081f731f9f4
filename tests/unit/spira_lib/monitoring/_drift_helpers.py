"""A champion that keeps a drift reference of its (synthetic) training clips, and inbox batches shifted or not."""
from __future__ import annotations

import io
import uuid
from typing import Callable

import numpy as np
import polars as pl
import soundfile as sf

from spira_lib.hashing import sha256_hex
from spira_lib.monitoring.run import REFERENCE_ARTIFACT, reference_artifact
from spira_lib.pipeline import RunSpec
from tests.unit.spira_lib.scoring._helpers import checkpoint, wav

BASE = {"audio.min_duration_s": 1.0, "model.window_s": 1.0, "drift.min_clips": 8, "drift.min_clips_per_class": 4}
N_REF = 24


def gain(db: float) -> Callable[[bytes], bytes]:
    """A recording chain that changed its gain by ``db`` decibels."""
    def apply(data: bytes) -> bytes:
        x, sr = sf.read(io.BytesIO(data), dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, x * np.float32(10 ** (db / 20)), sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()
    return apply


def rows_for(keys_and_bytes: list[tuple[str, bytes]], *, sex: str = "F") -> pl.DataFrame:
    """Manifest-like rows (key, sha256, label, sex, age, hospital) of clips made by ``wav(seed)`` (label = seed % 2)."""
    return pl.DataFrame({
        "key": [k for k, _ in keys_and_bytes], "sha256": [sha256_hex(b) for _, b in keys_and_bytes],
        "label": [int(k.rsplit("-", 1)[1].split(".")[0]) % 2 for k, _ in keys_and_bytes],
        "sex": [sex if i % 4 else "M" for i in range(len(keys_and_bytes))], "age": [30.0 + 3 * i for i in range(len(keys_and_bytes))],
        "hospital": ["h1"] * len(keys_and_bytes),
    })


def champion_with_reference(*, reference: bool = True, overrides: dict | None = None) -> tuple[RunSpec, pl.DataFrame]:
    """An inbox spec whose champion v1 (a random model) keeps the reference of N_REF training clips."""
    name = uuid.uuid4().hex[:8]
    ov = {**BASE, **(overrides or {})}
    train = RunSpec.build(f"memory://train-{name}", f"memory://reg-{name}", overrides=ov)
    clips = [(f"train/seed-{i}.wav", wav(i)) for i in range(N_REF)]
    for key, data in clips:
        train.workspace().data.put(key, data)
    frame = rows_for(clips)
    blob = checkpoint(1)
    artifacts = {"model.pt": blob}
    if reference:
        artifacts[REFERENCE_ARTIFACT] = reference_artifact(train.workspace(), train.config, frame, blob)
    reg = train.workspace().registry
    reg.register("spira", artifacts, {"training_key": "a", "metrics": {"roc_auc": 0.9}})
    reg.promote("spira", 1, reason="test champion")
    return RunSpec.build(f"memory://inbox-{name}", f"memory://reg-{name}", overrides=ov), frame


def fill_inbox(spec: RunSpec, n: int, transform: Callable[[bytes], bytes] = lambda b: b, first_seed: int = 1000) -> None:
    for i in range(first_seed, first_seed + n):
        spec.workspace().data.put(f"batch/joao-silva-{i}.wav", transform(wav(i)))

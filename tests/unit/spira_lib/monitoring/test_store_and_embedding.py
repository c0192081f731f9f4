"""Profiles cached per clip next to the features; SpiraConvV2.embed and clip embeddings."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from spira_lib.adapters.memory import MemoryStore
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import SpiraConvV2, clip_inputs, window_frames
from spira_lib.monitoring.embedding import clip_embeddings
from spira_lib.monitoring.profile import PROFILE_VERSION
from spira_lib.monitoring.store import ProfileStore


def wav(seconds: float, freq: float, sr: int = 16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get(key)


def test_profiles_are_computed_once_and_cached_by_content():
    data, reg = CountingStore(), MemoryStore()
    data.put("a.wav", wav(2.0, 200))
    data.put("b.wav", wav(3.0, 300))
    data.put("bad.wav", b"RIFF....WAVEjunk")
    rows = [{"key": "a.wav", "sha256": "aa" * 32}, {"key": "b.wav", "sha256": "bb" * 32}, {"key": "bad.wav", "sha256": "cc" * 32}]
    store = ProfileStore(reg)
    table, failed, computed = store.ensure(data, rows)
    assert computed == 2 and [f["file"] for f in failed] == ["bad.wav"]
    assert table.frame["clip"].to_list() == ["aa" * 32, "bb" * 32]
    assert table.frame["duration_s"].to_list() == pytest.approx([2.0, 3.0])
    assert store.key("aa" * 32) == f"features/profile-v{PROFILE_VERSION}/aa/{'aa' * 32}.json"
    data.gets.clear()
    again, _, computed = store.ensure(data, rows[:2])
    assert computed == 0 and data.gets == []  # no audio read: both came from the cache
    assert again.frame.equals(table.frame)


def test_nan_survives_the_cache():
    store = ProfileStore(MemoryStore())
    store.put("dd" * 32, {"f0_median_hz": float("nan"), "rms_dbfs": -20.0})
    got = store.get("dd" * 32)
    assert math.isnan(got["f0_median_hz"]) and got["rms_dbfs"] == -20.0
    assert store.get("ee" * 32) is None


@pytest.fixture
def model() -> SpiraConvV2:
    torch.manual_seed(0)
    return SpiraConvV2(40, 400, ModelConfig(fc_hidden=16))


def test_embed_is_the_layer_before_the_classifier(model):
    x = torch.randn(3, 400, 40)
    model.train()
    emb = model.embed(x)
    assert emb.shape == (3, 16) and not emb.requires_grad
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.head[-1](emb).squeeze(1), model(x))
    # Dropout is off inside embed even when the module is training: same result twice.
    model.train()
    torch.testing.assert_close(model.embed(x), emb)
    with pytest.raises(ValueError):
        model.embed(torch.randn(2, 399, 40))


def test_clip_embedding_is_the_mean_over_its_windows(model):
    mc, fc = ModelConfig(fc_hidden=16), FeatureConfig()
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(700, 40)).astype(np.float32), rng.normal(size=(420, 40)).astype(np.float32)]
    got = clip_embeddings(model, feats, model_cfg=mc, feat_cfg=fc, batch_size=3)
    assert got.shape == (2, 16) and got.dtype == np.float32
    for i, f in enumerate(feats):
        windows = torch.from_numpy(np.array(clip_inputs(f, mc, fc)))
        assert windows.shape[1] == window_frames(mc, fc)
        np.testing.assert_allclose(got[i], model.embed(windows).mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert clip_embeddings(model, [], model_cfg=mc, feat_cfg=fc).shape[0] == 0


def test_build_reference_from_manifest_rows():
    import polars as pl

    from spira_lib.monitoring.reference import ReferenceProfile
    from spira_lib.monitoring.store import build_reference

    data = MemoryStore()
    for i in range(6):
        data.put(f"c{i}.wav", wav(1.0 + i, 150 + 20 * i))
    frame = pl.DataFrame({
        "key": [f"c{i}.wav" for i in range(6)], "sha256": [f"{i:02d}" * 32 for i in range(6)],
        "label": [0, 1, 0, 1, 0, 1], "sex": ["F", "M", "F", "M", "F", "M"], "age": [30.0, 45.0, 50.0, 70.0, 20.0, 65.0],
    })
    ref, failed = build_reference(ProfileStore(MemoryStore()), data, frame, embeddings=np.ones((6, 4)), embedding_model="v1")
    assert failed == [] and ref.n_clips == 6
    assert ref.features["duration_s"].values == pytest.approx([1, 2, 3, 4, 5, 6])
    assert ref.categorical["age_band"] == {"0-40": 2, "40-60": 2, "60-200": 2} and "hospital" not in ref.categorical
    assert ReferenceProfile.from_json(ref.to_json()) == ref

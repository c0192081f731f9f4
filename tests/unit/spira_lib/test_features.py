"""The acoustic front end: shapes and the extractor key."""
from __future__ import annotations

import numpy as np
import pytest

from spira_lib.config import FeatureConfig
from spira_lib.features import FeatureExtractor
from tests.unit.spira_lib._audio import SR


@pytest.mark.parametrize("kind, dim", [("mfcc", 20), ("mel", 40), ("spectrogram", 601)])
def test_extractor_shapes(kind, dim):
    ex = FeatureExtractor(FeatureConfig(kind=kind))
    feats = ex(np.random.default_rng(0).normal(0, 0.1, SR * 2).astype(np.float32))
    assert feats.shape == (1 + 2 * SR // 160, dim) == (201, ex.n_features)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()


def test_extractor_key_follows_config():
    a, b = FeatureExtractor(FeatureConfig()), FeatureExtractor(FeatureConfig())
    assert a.key == b.key
    assert a.key != FeatureExtractor(FeatureConfig(n_mfcc=13, n_mels=40)).key

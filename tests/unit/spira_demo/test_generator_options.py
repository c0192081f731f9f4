"""Generator options: voice families, recording channels, ward-noise placement, speaker latents."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spira_demo.generator import generate_demo_dataset, speaker_latents


def test_generator_options_write_valid_sets(tmp_path):
    s = generate_demo_dataset(tmp_path / "h", speakers=6, seed=3, voice="harmonic", channel="8k",
                              noise_placement="patients", noise_files=1)
    assert set(s.sample_rates) == {8000}
    assert s.ward_noise_by_class.get(0, 0) == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "h" / "metadata.csv")))
    for r in rows:
        x, sr = sf.read(tmp_path / "h" / r["file_path"])
        assert sr == 8000 and np.isfinite(x).all() and np.abs(x).max() > 0.01


def test_generator_none_placement_and_same_speakers_across_voices(tmp_path):
    s = generate_demo_dataset(tmp_path / "n", speakers=4, seed=2, noise_placement="none", noise_files=0,
                              voice="harmonic", channel="mixed")
    assert s.n_ward_noise == 0
    lat = speaker_latents(4, 2)
    assert sorted(lat) == [f"s2-{i:04d}" for i in range(4)]
    assert {v["label"] for v in lat.values()} == {0, 1}


@pytest.mark.parametrize("kwargs", [{"voice": "klatt"}, {"channel": "radio"}, {"noise_placement": "controls"}])
def test_generator_rejects_unknown_options(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        generate_demo_dataset(tmp_path, speakers=2, **kwargs)

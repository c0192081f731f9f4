"""The composition root: URIs become adapters, and one workspace per locations is shared in a process."""
from __future__ import annotations

import pytest

from spira_lib import bootstrap
from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.pipeline import RunSpec


def test_open_store_picks_the_adapter_from_the_uri(tmp_path):
    assert isinstance(bootstrap.open_store(tmp_path), LocalFolderStore)
    assert isinstance(bootstrap.open_store(f"file://{tmp_path}"), LocalFolderStore)
    assert isinstance(bootstrap.open_store("memory://x"), MemoryStore)
    with pytest.raises(ValueError, match="unsupported storage URI"):
        bootstrap.open_store("ftp://host/data")


def test_noise_lives_in_the_dataset_or_at_its_own_location(tmp_path):
    inside = bootstrap.open_workspace(tmp_path / "data", tmp_path / "reg")
    assert inside.noise is inside.data and inside.noise_prefix == "noises"
    apart = bootstrap.open_workspace(tmp_path / "data", tmp_path / "reg", str(tmp_path / "ward-noise"))
    assert apart.noise.uri == str(tmp_path / "ward-noise") and apart.noise_prefix == ""


def test_a_spec_opens_its_workspace_once_per_process(tmp_path, monkeypatch):
    bootstrap.forget_workspaces()
    calls = []
    real = bootstrap.open_workspace
    monkeypatch.setattr(bootstrap, "open_workspace", lambda *a: calls.append(a) or real(*a))
    spec = RunSpec.build(tmp_path / "data", tmp_path / "reg")
    assert spec.workspace() is spec.workspace()
    # Another spec over the same locations (a task receiving a copy) shares it; other locations do not.
    assert RunSpec.build(tmp_path / "data", tmp_path / "reg", overrides={"training.epochs": 2}).workspace() is spec.workspace()
    assert RunSpec.build(tmp_path / "data", tmp_path / "other").workspace() is not spec.workspace()
    assert len(calls) == 2


def test_the_noise_bank_is_decoded_again_only_when_the_files_change(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    from spira_lib.noise import NoiseBank

    (tmp_path / "data" / "noises").mkdir(parents=True)
    sf.write(tmp_path / "data" / "noises" / "a.wav", np.full(1600, 0.1, np.float32), 16000)
    ws = bootstrap.open_workspace(tmp_path / "data", tmp_path / "reg")
    loads = []
    real = NoiseBank.load
    monkeypatch.setattr(NoiseBank, "load", classmethod(lambda cls, *a: loads.append(a) or real(*a)))
    first = ws.noise_bank(16000)
    assert ws.noise_bank(16000) is first and len(loads) == 1
    sf.write(tmp_path / "data" / "noises" / "b.wav", np.full(3200, 0.1, np.float32), 16000)
    assert len(ws.noise_bank(16000)) == 2 and len(loads) == 2

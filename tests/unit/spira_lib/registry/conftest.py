"""Fixtures of the registry tests: every test runs on the memory fake and on a real local folder."""
from __future__ import annotations

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.registry import ModelRegistry
from tests.unit.spira_lib.registry._helpers import FlakyStore, StepClock


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> FlakyStore:
    inner = MemoryStore() if request.param == "memory" else LocalFolderStore(tmp_path / "store")
    return FlakyStore(inner)


@pytest.fixture
def reg(store) -> ModelRegistry:
    return ModelRegistry(store, clock=StepClock())

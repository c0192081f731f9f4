"""Fixtures for tests that need real local servers (moto_server, prefect server).

One server of each kind per test session: starting Prefect takes 10-30 s here.
Tests isolate themselves with unique bucket/queue names and event filters.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import AWS_VARS_TO_CLEAR, moto_aws_env


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> str:
    """Point every AWS client built from the environment at moto, with fake credentials."""
    for name in AWS_VARS_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_aws_env(moto_endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture
def prefect_env(monkeypatch: pytest.MonkeyPatch, prefect_api_url: str) -> Iterator[str]:
    """Make Prefect code in this process (and subprocesses) talk to the session server.

    Prefect loads its settings once at import, so the environment variable
    alone only reaches subprocesses; ``temporary_settings`` covers this process.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}):
        yield prefect_api_url


@pytest.fixture
def unique_name() -> str:
    """A short lowercase suffix valid in bucket and queue names."""
    return uuid.uuid4().hex[:10]

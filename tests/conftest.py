"""Session-wide test settings and shared small datasets.

Prefect reads its settings at import, so they are set here, before any test
module imports it: a private PREFECT_HOME (never the developer's ~/.prefect)
and no telemetry (no network but loopback in tests).
"""
from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="spira-test-prefect-")
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.servers import moto_server, prefect_server  # noqa: E402

# Small and fast, but the real model, features and windows: tests exercise the
# production code paths, only with fewer clips, epochs and resamples.
FAST_OVERRIDES = {
    "training.epochs": 8,
    "augment.noisy_copies": 1,
    "evaluation.bootstrap_samples": 100,
    "validation.min_clips": 10,
    "validation.min_clips_per_class": 3,
    # No gate setting here: the tests promote under the shipped thresholds. They train
    # on the clearly separated demo data below, so a short training earns its promotion.
}


# Clips in the shared demo dataset (one per speaker).
DEMO_SPEAKERS = 40


@pytest.fixture(scope="session")
def demo_speakers() -> int:
    return DEMO_SPEAKERS


@pytest.fixture(scope="session")
def fast_overrides() -> dict:
    return dict(FAST_OVERRIDES)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset in SPIRA's format (read-only: copy it before changing it)."""
    from spira_demo import generate_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "data"
    generate_demo_dataset(out, speakers=DEMO_SPEAKERS, seed=11, separation="clear")
    return out


# Real local servers, one of each per test session (Prefect takes 10-30 s to start here);
# shared by tests/integration and tests/e2e, which isolate themselves by bucket/queue names.
@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto_server shared by the session."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """API URL (http://127.0.0.1:PORT/api) of a `prefect server start` shared by the session."""
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        yield url

"""`spira retrain` / `make demo` on the embedded server: quiet offline, patient on a slow machine, and saying so."""
from __future__ import annotations

from typing import Any

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from spira_cli import orchestrated as O


class FakeServer:
    """Stands in for prefect.server.api.server.SubprocessASGIServer; records how it was started."""

    started: list[Any] = []
    fail_with: Exception | None = None
    api_url = "http://127.0.0.1:8123/api"

    def start(self, timeout: int | None = None) -> None:
        FakeServer.started.append(timeout)
        if FakeServer.fail_with is not None:
            raise FakeServer.fail_with


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> type[FakeServer]:
    import prefect.server.api.server as server_module

    FakeServer.started, FakeServer.fail_with = [], None
    monkeypatch.setattr(server_module, "SubprocessASGIServer", FakeServer)
    return FakeServer


def test_defaults_fill_in_only_what_is_unset() -> None:
    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}  # a user who wants telemetry keeps it
    added = O.prefect_defaults(env)
    assert added == {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    assert env == {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    fresh: dict[str, str] = {}
    O.prefect_defaults(fresh)
    assert fresh["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # Well above Prefect's 20 s, which a first start on a busy 2-core machine exceeded.
    assert int(fresh["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120


def test_embedded_server_starts_up_front_with_the_configured_limit(fake_server) -> None:
    said: list[str] = []
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: True,
                                     PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 77}):
        assert O.start_embedded_server(said.append) == FakeServer.api_url
    assert fake_server.started == [77]
    assert "starting Prefect's embedded server" in said[0] and "limit 77 s" in said[0]
    assert said[1].startswith(f"embedded Prefect server ready at {FakeServer.api_url} after ")


def test_no_embedded_server_when_a_real_one_is_configured(fake_server) -> None:
    said: list[str] = []
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_SERVER_EPHEMERAL_ENABLED: True}):
        assert O.start_embedded_server(said.append) is None
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
        assert O.start_embedded_server(said.append) is None
    assert fake_server.started == [] and said == []


def test_a_server_that_does_not_come_up_ends_with_the_fix(fake_server) -> None:
    said: list[str] = []
    fake_server.fail_with = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: True,
                                     PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 30}):
        with pytest.raises(SystemExit) as info:
            O.start_embedded_server(said.append)
    assert info.value.code == 1
    text = said[-1]
    assert "did not answer within 30 s" in text
    assert "export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=60" in text
    assert "prefect server start" in text and "PREFECT_API_URL" in text


@pytest.mark.slow
@pytest.mark.integration
def test_the_real_embedded_server_starts_announced_and_without_telemetry(tmp_path) -> None:
    """A fresh PREFECT_HOME (the slow first start) in a clean process, as `spira retrain` / `make demo` meet it."""
    import os
    import subprocess
    import sys

    script = (
        "import httpx\n"
        "from spira_cli.orchestrated import prefect_defaults, start_embedded_server\n"
        "prefect_defaults()\n"
        "url = start_embedded_server()\n"
        "print('SETTINGS', httpx.get(url + '/admin/settings', timeout=30).json()['server']['analytics_enabled'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SETTINGS False" in res.stdout, res.stdout
    assert "starting Prefect's embedded server" in res.stderr and "limit 180 s" in res.stderr
    assert "embedded Prefect server ready at http://127.0.0.1:" in res.stderr
    assert "ERROR" not in res.stdout + res.stderr

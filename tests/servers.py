"""Start and stop real local servers (moto, Prefect) for integration and e2e tests.

Each server runs in its own process group on 127.0.0.1 with a free port, so
stopping it kills everything it spawned; nothing outlives the ``with`` block,
even when the test body raises or startup fails halfway.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping

# A proxy from the environment must never see requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Servers still running; stopped at interpreter exit in case a test run is
# torn down without unwinding the context managers.
_LIVE: set[subprocess.Popen] = set()


# Variables that could point an AWS client at something other than the test moto_server.
AWS_VARS_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "SPIRA_S3_ENDPOINT_URL", "SPIRA_SQS_ENDPOINT_URL")


def moto_aws_env(endpoint: str, home: Path) -> dict[str, str]:
    """Fake credentials and the moto endpoint for every AWS client built from the environment.

    Shared config files are redirected to empty paths under ``home`` so a
    developer's real ~/.aws profile can never be picked up.
    """
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
    }


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries the tail of its log."""

    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return text[-limit:] if text else "<empty log>"


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with _OPENER.open(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        # Any HTTP answer means the server is up (moto's root path may 404).
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left."""
    _LIVE.discard(proc)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children may survive their leader; the group id is still the leader's pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _start(
    name: str,
    cmd: list[str],
    health_url: str,
    log_path: Path,
    env: Mapping[str, str] | None,
    timeout_s: float,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Spawn ``cmd`` in its own process group and wait until ``health_url`` answers.

    On failure the process group is killed and ServerStartError carries the log tail.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # own process group: killpg reaches its children
        )
    _LIVE.add(proc)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(health_url):
            if proc.poll() is not None:
                raise ServerStartError(
                    f"{name} exited with code {proc.returncode} before answering {health_url}; "
                    f"log {log_path}:\n{_log_tail(log_path)}",
                    exited=True,
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{name} did not answer {health_url} within {timeout_s:.0f}s; log {log_path}:\n{_log_tail(log_path)}",
                    exited=False,
                )
            time.sleep(0.25)
    except BaseException:
        _stop(proc)
        raise
    return proc


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        _stop(proc, grace_s=3.0)


def _start_with_retries(name: str, attempts: int, launch) -> tuple[subprocess.Popen, str]:
    """Call ``launch()`` -> (proc, url) again when the server died at once (likely a port clash)."""
    for attempt in range(1, attempts + 1):
        try:
            return launch()
        except ServerStartError as exc:
            # Another process may take the port between our probe and the server's bind;
            # a server that merely hangs is not retried (it would just hang again).
            if not exc.exited or attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.contextmanager
def moto_server(log_dir: Path | None = None, *, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``moto_server`` (S3, SQS, SNS, ... in one process); yields its endpoint URL."""
    own_dir = log_dir is None
    log_dir = Path(log_dir) if log_dir is not None else _scratch_dir("moto-")
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    def launch() -> tuple[subprocess.Popen, str]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        return _start("moto_server", cmd, f"{url}/moto-api/", log_dir / "moto.log", env, timeout_s), url

    try:
        proc, url = _start_with_retries("moto_server", 3, launch)
        try:
            yield url
        finally:
            _stop(proc)
    finally:
        if own_dir:
            shutil.rmtree(log_dir, ignore_errors=True)


def prefect_server_env(home: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Prefect server process (and for clients that talk to it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The UI is not needed in tests and building its static folder slows startup.
            "PREFECT_SERVER_UI_ENABLED": "false",
            # Events reach the database within ~0.5 s instead of 5 s, so tests can read them back quickly.
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
    )
    env.update(extra or {})
    return env


@contextlib.contextmanager
def prefect_server(
    tmp_path: Path, *, timeout_s: float = 120.0, extra_env: Mapping[str, str] | None = None, ui: bool = False
) -> Iterator[str]:
    """Run ``prefect server start`` with its own PREFECT_HOME under ``tmp_path``; yields the API URL.

    ``ui=True`` also serves the web UI (at the API URL without ``/api``), pointed at this server.

    Every process that must talk to it needs ``PREFECT_API_URL`` set to the
    yielded URL (otherwise Prefect silently starts an ephemeral server); in the
    test process itself, where Prefect's settings are already loaded, also
    enter ``prefect.settings.temporary_settings``.
    """
    prefect_bin = Path(sys.executable).with_name("prefect")
    base_cmd = [str(prefect_bin)] if prefect_bin.exists() else [sys.executable, "-m", "prefect"]

    def launch() -> tuple[subprocess.Popen, str]:
        port = free_port()
        home = Path(tmp_path) / f"prefect-home-{port}"
        home.mkdir(parents=True, exist_ok=True)
        env = prefect_server_env(home, port, extra_env)
        api_url = env["PREFECT_API_URL"]
        if ui:
            env.update({"PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_UI_API_URL": api_url})
        cmd = base_cmd + ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
        return _start("prefect server", cmd, f"{api_url}/health", home / "server.log", env, timeout_s), api_url

    proc, api_url = _start_with_retries("prefect server", 3, launch)
    try:
        yield api_url
    finally:
        _stop(proc)


def mlflow_server_exe() -> Path:
    """The ``mlflow`` of the server's own virtualenv (``make test`` builds ``.venv-mlflow``; it is a
    separate process with its own dependencies, which clash with the project's pins)."""
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("SPIRA_MLFLOW_SERVER_VENV", root / ".venv-mlflow")) / "bin" / "mlflow"


@contextlib.contextmanager
def mlflow_server(tmp_path: Path, *, timeout_s: float = 240.0, artifacts: str | None = None, extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``mlflow server`` (SQLite backend, artifacts proxied by the server) on 127.0.0.1; yields its URL."""
    exe = mlflow_server_exe()
    if not exe.exists():
        raise ServerStartError(f"no mlflow server at {exe}: run `make .venv-mlflow` (make test does)", exited=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **(extra_env or {})})

    def launch() -> tuple[subprocess.Popen, str]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        home = Path(tmp_path) / f"mlflow-{port}"
        home.mkdir(parents=True, exist_ok=True)
        cmd = [str(exe), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
               "--artifacts-destination", artifacts or str(home / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        return _start("mlflow server", cmd, f"{url}/health", home / "server.log", env, timeout_s, cwd=home), url

    proc, url = _start_with_retries("mlflow server", 3, launch)
    try:
        yield url
    finally:
        _stop(proc)

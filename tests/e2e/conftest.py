"""Real processes for the end-to-end event path: moto_server, `prefect server`, and helpers
to run long-lived services (the S3 bridge, `deployments.serve`) as subprocesses.

Every process runs in its own session; stopping one kills its process group
and then any descendant that escaped into a session of its own (Prefect's
runner starts flow runs that way), so a failing test leaks nothing.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from tests.servers import AWS_VARS_TO_CLEAR, moto_aws_env

ROOT = Path(__file__).resolve().parents[2]



def _children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first)."""
    tree = _children_of()
    out: list[int] = []
    todo = list(tree.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Service:
    """A long-running subprocess with its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    known: set[int] = field(default_factory=set)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return text[-limit:] or "<empty log>"

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with code {self.proc.returncode}; log:\n{self.log_tail()}")
        # Remember descendants while they exist: once the leader is gone they are reparented.
        self.known.update(descendants(self.proc.pid))

    def stop(self, grace_s: float = 15.0) -> list[int]:
        """SIGTERM the group, wait, then SIGKILL the group and every known descendant; returns survivors."""
        self.known.update(descendants(self.proc.pid))
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.known:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self.known):
            time.sleep(0.1)
        return sorted(p for p in self.known if _alive(p))


def start_service(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> Service:
    """Start ``python args...`` from the repository root in its own session."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name, proc, log_path)


def service_env(api_url: str, moto_url: str, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for processes that talk to both test servers; never a developer's real AWS profile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AWS_", "SPIRA_"))
    }
    env.update(moto_aws_env(moto_url, home))
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            # Scheduled runs are picked up within a second instead of ten.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def e2e_moto(moto_endpoint: str) -> str:
    """The session's moto_server (S3 + SQS); tests isolate themselves by bucket/queue names."""
    return moto_endpoint


@pytest.fixture(scope="module")
def e2e_prefect(prefect_api_url: str) -> str:
    """The session's real `prefect server start`; tests filter runs by their own deployment."""
    return prefect_api_url


@pytest.fixture(scope="module")
def in_process_clients(e2e_moto: str, e2e_prefect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point boto3 and Prefect's client in this process at the test servers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("e2e-aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in AWS_VARS_TO_CLEAR:
            mp.delenv(name, raising=False)
        for name, value in moto_aws_env(e2e_moto, home).items():
            mp.setenv(name, value)
        mp.setenv("PREFECT_API_URL", e2e_prefect)
        with temporary_settings(updates={PREFECT_API_URL: e2e_prefect}):
            yield

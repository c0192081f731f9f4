"""Two OS processes register and promote the same model at once, on a local folder and on S3 (moto).

The claim of a version number is a conditional create (a hard link locally,
``If-None-Match: *`` on S3), so every number is taken exactly once, the ledger
holds one ``register`` entry per version, and the champion pointer ends where
the ledger says. ``spira registry verify`` finds nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from spira_lib.adapters.s3 import make_s3_client
from spira_lib.bootstrap import open_registry
from spira_lib.registry.ledger import champion_history

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
PER_WORKER = 50
# On the S3 test server every registration is a dozen HTTP round trips: fewer per writer keep make test short.
PER_WORKER_S3 = 25
PROMOTE_EVERY = 5


def run_writers(uri: str, env: dict[str, str] | None = None, per_worker: int = PER_WORKER) -> list[dict]:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start_at = time.time() + 4.0  # both interpreters are up by then; they start registering together
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.registry_worker", uri, str(per_worker), str(w), str(start_at),
                          str(PROMOTE_EVERY)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        for w in range(WORKERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check_registry(uri: str, results: list[dict], per_worker: int = PER_WORKER) -> dict:
    reg = open_registry(uri)
    total = WORKERS * per_worker
    got = [v for r in results for v in r["versions"]]
    dupes = [v for v, n in Counter(got).items() if n > 1]
    assert not dupes, f"versions handed to two writers: {dupes}"
    assert sorted(got) == list(range(1, total + 1)), "lost or skipped version numbers"
    versions = reg.list_versions("spira")
    assert [mv.version for mv in versions] == list(range(1, total + 1))
    # Each version holds the bytes of the writer that claimed it, never another's.
    owner = {v: (r["worker"], i) for r in results for i, v in enumerate(r["versions"])}
    for mv in versions:
        worker, i = owner[mv.version]
        assert reg.load_artifact(mv, "model.pt") == f"{worker}-{i}".encode()
        assert mv.metadata["worker"] == worker
    ledger = reg.ledger("spira")
    assert [e["seq"] for e in ledger] == list(range(1, len(ledger) + 1))
    registers = Counter(e["version"] for e in ledger if e["action"] == "register")
    assert registers == Counter(range(1, total + 1))
    promotions = [e for e in ledger if e["action"] == "promote"]
    assert len(promotions) == sum(len(r["promoted"]) for r in results)
    champion = reg.champion("spira")
    assert champion is not None and champion.version == champion_history(ledger, None)[-1]
    assert reg.fsck("spira") == []
    return {"versions": total, "duplicates": len(dupes), "ledger_entries": len(ledger), "champion": champion.version,
            "seconds": max(r["seconds"] for r in results)}


def verify_cli(uri: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "spira_cli.main", "registry", "verify", "--registry", uri],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_two_processes_on_a_local_folder(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry")
    summary = check_registry(uri, run_writers(uri))
    proc = verify_cli(uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "spira: ok" in proc.stdout
    print("local", summary)


def test_two_processes_on_s3(aws_env: str, unique_name: str) -> None:
    bucket = f"spira-reg-{unique_name}"
    make_s3_client().create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/registry"
    summary = check_registry(uri, run_writers(uri, per_worker=PER_WORKER_S3), per_worker=PER_WORKER_S3)
    proc = verify_cli(uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print("s3", summary)

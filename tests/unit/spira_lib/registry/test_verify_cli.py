"""`spira registry verify`: exit 0 on a consistent registry, 1 listing every problem; --repair sweeps abandoned folders."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from spira_cli.main import app
from spira_lib.adapters.local import LocalFolderStore
from spira_lib.registry import ModelRegistry
from spira_lib.registry.claims import CLAIM, claim_doc
from tests.unit.spira_lib.registry._helpers import _register

runner = CliRunner()


def _verify(root, *extra: str):
    return runner.invoke(app, ["registry", "verify", "--registry", str(root), *extra])


def test_clean_registry_exits_zero(tmp_path):
    reg = ModelRegistry(LocalFolderStore(tmp_path))
    _register(reg, payload=b"1")
    _register(reg, "other", payload=b"2")
    reg.promote("spira", 1, reason="r")
    result = _verify(tmp_path)
    assert result.exit_code == 0, result.output
    assert "other: ok" in result.output and "spira: ok" in result.output


def test_problems_exit_one_and_are_listed(tmp_path):
    store = LocalFolderStore(tmp_path)
    reg = ModelRegistry(store)
    _register(reg, payload=b"1")
    _register(reg, payload=b"2")
    reg.promote("spira", 2, reason="r")
    store.put("models/spira/versions/0001/model.pt", b"tampered")  # mismatched artifact
    store.delete("models/spira/versions/0002/model_card.md")  # missing artifact
    store.put("models/spira/aliases/champion.json", json.dumps({"alias": "champion", "version": 1}).encode())  # pointer != ledger
    old = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    store.put(f"models/spira/versions/0003/{CLAIM}", claim_doc("dead", old, 900))  # orphan
    store.put("models/spira/ledger/00000004.json", store.get("models/spira/ledger/00000001.json"))  # second register of v1

    result = _verify(tmp_path, "--model", "spira")
    assert result.exit_code == 1
    out = result.output
    assert "spira: 6 problem(s)" in out
    assert "integrity check failed" in out and "versions/0001/model.pt" in out
    assert "versions/0002/model_card.md is missing" in out
    assert "champion pointer of model 'spira' says version 1, but the ledger says 2" in out
    assert "versions/0003 has no version.json" in out and "abandoned" in out
    assert "records seq 1, not 4" in out
    assert "version 1 of model 'spira' has 2 'register' entries in the ledger" in out

    as_json = json.loads(_verify(tmp_path, "--json").output)
    assert len(as_json["spira"]) == 6


def test_repair_sweeps_abandoned_folders_only(tmp_path):
    store = LocalFolderStore(tmp_path)
    reg = ModelRegistry(store)
    _register(reg, payload=b"1")
    old = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    store.put(f"models/spira/versions/0002/{CLAIM}", claim_doc("dead", old, 900))
    store.put("models/spira/versions/0002/model.pt", b"half")
    assert _verify(tmp_path).exit_code == 1
    result = _verify(tmp_path, "--repair")
    assert result.exit_code == 0, result.output
    assert not store.exists("models/spira/versions/0002/model.pt")


def test_unknown_model_and_empty_registry(tmp_path):
    assert _verify(tmp_path, "--model", "ghost").exit_code == 1
    result = _verify(tmp_path)
    assert result.exit_code == 0 and "no models stored" in result.output

"""The registry consistency check reports each kind of problem."""
from __future__ import annotations

import json

import pytest

from spira_lib.registry import RegistryError
from tests.unit.spira_lib.registry._helpers import _register


def test_fsck_reports_each_kind_of_problem(reg, store):
    _register(reg, payload=b"1")
    _register(reg, payload=b"2")
    reg.promote("spira", 2, reason="r")
    assert reg.fsck("spira") == []

    store.put("models/spira/versions/0003/model.pt", b"half written")
    store.put("models/spira/versions/0001/model.pt", b"tampered")
    store.put("models/spira/versions/0001/extra.bin", b"?")
    store.put("models/spira/aliases/staging.json", json.dumps({"alias": "staging", "version": 9}).encode())
    store.put("models/spira/ledger/00000099.json", b"{not json")
    store.put("models/spira/versions/notes.txt", b"stray")

    problems = "\n".join(reg.fsck("spira"))
    assert "versions/0003 has no version.json (1 object(s))" in problems
    assert "integrity check failed for" in problems and "versions/0001/model.pt" in problems
    assert "versions/0001/extra.bin is not listed in version.json" in problems
    assert "alias 'staging' of model 'spira' points to version 9, which is not committed" in problems
    assert "00000099.json is not valid JSON" in problems
    assert "unexpected object" in problems and "versions/notes.txt" in problems
    assert len(reg.fsck("spira")) == 6

    with pytest.raises(RegistryError, match="unknown model 'ghost'"):
        reg.fsck("ghost")

"""Aliases and the ledger: promote, reject, rollback, and finishing interrupted moves."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from spira_lib.registry import RegistryError
from tests.unit.spira_lib.registry._helpers import _actions, _register


def test_champion_is_none_before_any_promotion(reg):
    _register(reg)
    assert reg.champion("spira") is None
    assert reg.aliases("spira") == {}


def test_promote_rejection_and_ledger_order(reg, store):
    _register(reg, payload=b"1")
    _register(reg, payload=b"2")
    _register(reg, payload=b"3")
    reg.promote("spira", 1, reason="first model passes floors", decision={"promote": True, "auc": 0.8})
    reg.record_rejection("spira", 2, reason="auc below champion", decision={"promote": False}, actor="gate")
    reg.promote("spira", 3, reason="better", actor="gate")

    assert _actions(reg) == [
        ("register", 1, None),
        ("register", 2, None),
        ("register", 3, None),
        ("promote", 1, None),
        ("reject", 2, 1),
        ("promote", 3, 1),
    ]
    ledger = reg.ledger("spira")
    assert [e["seq"] for e in ledger] == [1, 2, 3, 4, 5, 6]
    assert ledger[3]["decision"] == {"promote": True, "auc": 0.8}
    assert ledger[4] | {"at": None} == {
        "seq": 5, "at": None, "action": "reject", "version": 2, "previous": 1,
        "reason": "auc below champion", "decision": {"promote": False}, "actor": "gate",
    }
    stamps = [datetime.fromisoformat(e["at"]) for e in ledger]
    assert stamps == sorted(stamps)
    assert [i.key for i in store.list("models/spira/ledger/")][-1] == "models/spira/ledger/00000006.json"
    assert reg.champion("spira").version == 3
    assert reg.fsck("spira") == []


def test_promoting_the_champion_again_adds_nothing(reg):
    _register(reg)
    reg.promote("spira", 1, reason="r")
    reg.promote("spira", 1, reason="retried flow")
    assert [a for a, _, _ in _actions(reg)] == ["register", "promote"]


def test_promote_and_reject_need_a_committed_version(reg):
    _register(reg)
    with pytest.raises(RegistryError, match=r"no version 5 \(committed versions: 1\)"):
        reg.promote("spira", 5, reason="r")
    with pytest.raises(RegistryError, match=r"no version 5"):
        reg.record_rejection("spira", 5, reason="r")
    with pytest.raises(RegistryError, match="reason must be a non-empty string"):
        reg.promote("spira", 1, reason=" ")
    with pytest.raises(RegistryError, match=r"decision.auc is nan"):
        reg.promote("spira", 1, reason="r", decision={"auc": float("nan")})
    assert [a for a, _, _ in _actions(reg)] == ["register"]


def test_ledger_never_overwrites_an_entry_it_cannot_see(reg, store):
    _register(reg)
    first = store.get("models/spira/ledger/00000001.json")
    store.hide = lambda key: "/ledger/" in key  # stale listing: the ledger looks empty
    reg.promote("spira", 1, reason="r")
    store.hide = lambda key: False

    assert store.get("models/spira/ledger/00000001.json") == first
    assert _actions(reg) == [("register", 1, None), ("promote", 1, None)]
    assert reg.ledger("spira")[1]["seq"] == 2


def test_rollback_walks_back_through_history_then_refuses(reg):
    for payload in (b"1", b"2", b"3", b"4"):
        _register(reg, payload=payload)
    for v in (1, 2, 3):
        reg.promote("spira", v, reason=f"promote {v}")

    assert reg.rollback("spira", reason="v3 misbehaves").version == 2
    assert reg.champion("spira").version == 2
    assert reg.rollback("spira").version == 1
    assert reg.champion("spira").version == 1
    with pytest.raises(RegistryError, match="version 1 is the only champion left.*nothing earlier to roll back to"):
        reg.rollback("spira")
    assert reg.champion("spira").version == 1

    entries = reg.ledger("spira")
    rollbacks = [e for e in entries if e["action"] == "rollback"]
    assert [(e["version"], e["previous"], e["reason"]) for e in rollbacks] == [
        (2, 3, "v3 misbehaves"),
        (1, 2, "manual rollback"),
    ]

    # A later promotion starts a new branch of history: rolling it back returns to 1.
    reg.promote("spira", 4, reason="new model")
    assert reg.rollback("spira").version == 1
    assert reg.fsck("spira") == []


def test_rollback_after_re_promoting_an_old_version(reg):
    for payload in (b"1", b"2"):
        _register(reg, payload=payload)
    reg.promote("spira", 1, reason="r")
    reg.promote("spira", 2, reason="r")
    reg.promote("spira", 1, reason="2 was worse after all")
    assert reg.rollback("spira").version == 2
    assert reg.rollback("spira").version == 1


def test_rollback_without_a_champion(reg):
    _register(reg)
    with pytest.raises(RegistryError, match="cannot roll back model 'spira': it has no champion yet"):
        reg.rollback("spira")
    with pytest.raises(RegistryError, match="unknown model 'ghost'"):
        reg.rollback("ghost")


def test_interrupted_promotion_is_finished_by_the_retry(reg, store):
    _register(reg, payload=b"1")
    _register(reg, payload=b"2")
    reg.promote("spira", 1, reason="r")
    store.fail_next = lambda key: key.endswith("aliases/champion.json")
    with pytest.raises(OSError):
        reg.promote("spira", 2, reason="r")

    assert reg.champion("spira").version == 1  # readers still see the old pointer
    assert any("champion pointer" in p and "ledger says 2" in p for p in reg.fsck("spira"))

    reg.promote("spira", 2, reason="retry")
    assert reg.champion("spira").version == 2
    assert [a for a, _, _ in _actions(reg)].count("promote") == 2  # the retry added no entry
    assert reg.fsck("spira") == []


def test_interrupted_rollback_is_finished_not_repeated(reg, store):
    for payload in (b"1", b"2", b"3"):
        _register(reg, payload=payload)
    for v in (1, 2, 3):
        reg.promote("spira", v, reason="r")
    store.fail_next = lambda key: key.endswith("aliases/champion.json")
    with pytest.raises(OSError):
        reg.rollback("spira")
    assert reg.champion("spira").version == 3

    assert reg.rollback("spira").version == 2  # finishes the first rollback, does not go to 1
    assert reg.champion("spira").version == 2
    assert [a for a, _, _ in _actions(reg)].count("rollback") == 1
    assert reg.rollback("spira").version == 1

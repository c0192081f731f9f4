"""ModelRegistry over the ObjectStore port, on the memory fake and on a real local folder."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.adapters.memory import MemoryStore
from spira_lib.ports import ObjectInfo, ObjectStore
from spira_lib.registry import IntegrityError, ModelRegistry, ModelVersion, RegistryError


class FlakyStore:
    """Delegates to a real store, but can hide keys from listings (a stale index)
    and make the next put of a matching key fail (a crash mid-write)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.hide: Callable[[str], bool] = lambda key: False
        self.fail_next: Callable[[str], bool] | None = None

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def put(self, key: str, data: bytes) -> None:
        if self.fail_next is not None and self.fail_next(key):
            self.fail_next = None
            raise OSError(f"simulated crash while writing {key}")
        self.inner.put(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return (info for info in self.inner.list(prefix) if not self.hide(info.key))

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)


class StepClock:
    """Deterministic UTC clock: one second per call."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(params=["memory", "local"])
def store(request, tmp_path) -> FlakyStore:
    inner = MemoryStore() if request.param == "memory" else LocalFolderStore(tmp_path / "store")
    return FlakyStore(inner)


@pytest.fixture
def reg(store) -> ModelRegistry:
    return ModelRegistry(store, clock=StepClock())


def _register(reg: ModelRegistry, name: str = "spira", payload: bytes = b"weights", **meta) -> ModelVersion:
    return reg.register(
        name,
        {"model.pt": payload, "model_card.md": b"# card\n"},
        {"training_key": meta.pop("training_key", payload.hex()), **meta},
    )


def _actions(reg: ModelRegistry, name: str = "spira") -> list[tuple[str, int, int | None]]:
    return [(e["action"], e["version"], e["previous"]) for e in reg.ledger(name)]


# ---- register / get / list ---------------------------------------------------


def test_register_get_and_list(reg, store):
    v1 = _register(reg, payload=b"one", metrics={"roc_auc": 0.81})
    v2 = _register(reg, payload=b"two")

    assert (v1.name, v1.version, v2.version) == ("spira", 1, 2)
    assert v1.artifacts["model.pt"] == {"sha256": hashlib.sha256(b"one").hexdigest(), "size": 3}
    assert v1.metadata["metrics"] == {"roc_auc": 0.81}
    assert v1.uri.startswith(store.uri) and v1.uri.endswith("models/spira/versions/0001")
    assert v1.ref == "spira:1"
    created = datetime.fromisoformat(v1.created_at)
    assert created.utcoffset() == timedelta(0)

    assert reg.get("spira") == v2  # latest
    assert reg.get("spira", version=1) == v1
    assert [mv.version for mv in reg.list_versions("spira")] == [1, 2]
    assert reg.list_versions("other") == []
    assert reg.load_artifact(v1, "model.pt") == b"one"
    assert reg.load_artifact(reg.get("spira", 2), "model_card.md") == b"# card\n"

    _register(reg, "spira-mel", payload=b"mel")
    assert reg.list_models() == ["spira", "spira-mel"]
    assert [mv.version for mv in reg.list_versions("spira")] == [1, 2]  # no prefix bleed

    marker = json.loads(store.get("models/spira/versions/0001/version.json"))
    assert set(marker) == {"name", "version", "created_at", "artifacts", "metadata"}
    assert v1.to_dict() == {**marker, "uri": v1.uri}


def test_reopening_the_store_sees_the_same_registry(tmp_path):
    first = ModelRegistry(LocalFolderStore(tmp_path / "s"))
    mv = _register(first, payload=b"abc")
    first.promote("spira", 1, reason="first model")

    again = ModelRegistry(LocalFolderStore(tmp_path / "s"))
    assert again.get("spira") == mv
    assert again.champion("spira") == mv
    assert again.load_artifact(mv, "model.pt") == b"abc"
    assert (tmp_path / "s/models/spira/versions/0001/model.pt").read_bytes() == b"abc"


def test_custom_prefix_keeps_everything_under_it(store):
    reg = ModelRegistry(store, prefix="registry/models/")
    _register(reg)
    reg.promote("spira", 1, reason="r")
    keys = [info.key for info in store.list("")]
    assert keys and all(k.startswith("registry/models/spira/") for k in keys)
    assert reg.list_models() == ["spira"]


def test_versions_are_immutable_and_numbers_increase(reg, store):
    v1 = _register(reg, payload=b"same")
    v2 = _register(reg, payload=b"same")  # identical bytes still make a new version
    assert (v1.version, v2.version) == (1, 2)
    assert reg.get("spira", 1) == v1
    assert reg.load_artifact(v1, "model.pt") == b"same"


def test_stale_listing_cannot_overwrite_a_committed_version(reg, store):
    _register(reg, payload=b"original")
    before = store.get("models/spira/versions/0001/model.pt")
    store.hide = lambda key: "/versions/" in key  # the listing forgets version 1 exists

    with pytest.raises(RegistryError, match=r"refusing to register 'spira' version 1.*already exists"):
        _register(reg, payload=b"intruder")
    assert store.get("models/spira/versions/0001/model.pt") == before
    store.hide = lambda key: False
    assert reg.load_artifact(reg.get("spira", 1), "model.pt") == b"original"


def test_interrupted_register_is_invisible_and_its_number_is_skipped(reg, store):
    _register(reg, payload=b"one")
    store.fail_next = lambda key: key.endswith("version.json")
    with pytest.raises(OSError, match="simulated crash"):
        _register(reg, payload=b"two")

    assert store.exists("models/spira/versions/0002/model.pt")  # artifacts landed, marker did not
    assert [mv.version for mv in reg.list_versions("spira")] == [1]
    assert reg.get("spira").version == 1
    with pytest.raises(RegistryError, match=r"no version 2 \(committed versions: 1\)"):
        reg.get("spira", 2)

    v3 = _register(reg, payload=b"three")
    assert v3.version == 3
    assert [mv.version for mv in reg.list_versions("spira")] == [1, 3]
    problems = reg.fsck("spira")
    assert len(problems) == 1 and "versions/0002 has no version.json" in problems[0]


def test_crash_before_any_marker_leaves_model_unknown(reg, store):
    store.fail_next = lambda key: key.endswith("version.json")
    with pytest.raises(OSError):
        _register(reg)
    assert reg.list_models() == []
    with pytest.raises(RegistryError, match="unknown model 'spira'"):
        reg.get("spira")
    assert _register(reg).version == 2


# ---- integrity ---------------------------------------------------------------


@pytest.mark.parametrize("tampered", [b"weightz", b"weights plus more"], ids=["same-size", "resized"])
def test_tampered_artifact_is_detected_on_load(reg, store, tampered):
    mv = _register(reg, payload=b"weights")
    store.put("models/spira/versions/0001/model.pt", tampered)

    with pytest.raises(IntegrityError) as info:
        reg.load_artifact(mv, "model.pt")
    message = str(info.value)
    assert "models/spira/versions/0001/model.pt" in message
    assert hashlib.sha256(b"weights").hexdigest() in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert reg.load_artifact(mv, "model_card.md") == b"# card\n"  # others still load
    assert any("integrity check failed" in p for p in reg.fsck("spira"))


def test_missing_or_unknown_artifact(reg, store):
    mv = _register(reg)
    with pytest.raises(RegistryError, match=r"spira:1 has no artifact 'report.json' \(artifacts: model.pt, model_card.md\)"):
        reg.load_artifact(mv, "report.json")
    store.delete("models/spira/versions/0001/model.pt")
    with pytest.raises(IntegrityError, match="model.pt is missing"):
        reg.load_artifact(mv, "model.pt")


# ---- aliases, resolve ----------------------------------------------------------


def test_resolve_grammar(reg):
    _register(reg, payload=b"1")
    _register(reg, payload=b"2")
    _register(reg, payload=b"3")

    assert reg.resolve("spira").version == 3  # no champion yet -> latest
    assert reg.resolve("spira:1").version == 1
    assert reg.resolve(" spira:2 ").version == 2

    reg.promote("spira", 2, reason="passed the gate")
    assert reg.aliases("spira") == {"champion": 2}
    assert reg.resolve("spira").version == 2  # champion wins over latest
    assert reg.resolve("spira@champion").version == 2
    assert reg.get("spira", alias="champion").version == 2
    assert reg.champion("spira").version == 2
    assert reg.resolve("spira", default_alias="staging").version == 3  # no such alias -> latest

    with pytest.raises(RegistryError, match=r"model 'spira' has no alias 'staging' \(aliases: champion\)"):
        reg.resolve("spira@staging")
    with pytest.raises(RegistryError, match=r"no version 9 \(committed versions: 1, 2, 3\)"):
        reg.resolve("spira:9")
    with pytest.raises(RegistryError, match=r"unknown model 'nope'.*known models: spira"):
        reg.resolve("nope")
    with pytest.raises(RegistryError, match="not both"):
        reg.get("spira", version=1, alias="champion")


@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("", "model name '' is invalid"),
        ("Spira", "model name 'Spira' is invalid"),
        ("spira:0", "must be an integer starting at 1"),
        ("spira:x", "version 'x' must be an integer"),
        ("spira:-1", "version '-1' must be an integer"),
        ("spira@", "alias '' is invalid"),
        ("spira@Champ", "alias 'Champ' is invalid"),
        ("spira@a@b", "expected 'name', 'name@alias' or 'name:<version>'"),
        ("spira:1@champion", "expected 'name', 'name@alias' or 'name:<version>'"),
        ("a/b", "model name 'a/b' is invalid"),
    ],
)
def test_bad_refs_are_explained(reg, ref, fragment):
    _register(reg)
    with pytest.raises(RegistryError) as info:
        reg.resolve(ref)
    assert f"invalid model reference {ref!r}" in str(info.value)
    assert fragment in str(info.value)


def test_champion_is_none_before_any_promotion(reg):
    _register(reg)
    assert reg.champion("spira") is None
    assert reg.aliases("spira") == {}


# ---- promote, reject, ledger ---------------------------------------------------


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


# ---- rollback ----------------------------------------------------------------


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


# ---- training key, validation, fsck -------------------------------------------


def test_find_by_training_key(reg):
    _register(reg, payload=b"a", training_key="data1-cfg1")
    v2 = _register(reg, payload=b"b", training_key="data2-cfg1")
    assert reg.find_by_training_key("spira", "data2-cfg1") == v2
    assert reg.find_by_training_key("spira", "data3-cfg1") is None
    assert reg.find_by_training_key("never-registered", "data1-cfg1") is None


@pytest.mark.parametrize("name", ["Spira", "", "a/b", "../x", "-x", "spira v2", "a" * 101])
def test_bad_model_names_are_refused_before_writing(reg, store, name):
    with pytest.raises(RegistryError, match=r"invalid model name .*lowercase letters, digits, '-' or '_'"):
        reg.register(name, {"model.pt": b"x"}, {})
    assert list(store.list("")) == []


@pytest.mark.parametrize(
    "artifacts, metadata, fragment",
    [
        ({}, {}, "artifacts must be a non-empty dict"),
        ({"sub/model.pt": b"x"}, {}, "invalid artifact filename 'sub/model.pt'"),
        ({"version.json": b"x"}, {}, "reserved for the commit marker"),
        ({"..": b"x"}, {}, "invalid artifact filename '..'"),
        ({"model.pt": "text"}, {}, "artifact 'model.pt' must be bytes, got str"),
        ({"model.pt": b"x"}, {"metrics": {"auc": float("inf")}}, "metadata.metrics.auc is inf"),
        ({"model.pt": b"x"}, {"when": datetime(2025, 1, 1)}, "metadata.when is a datetime"),
        ({"model.pt": b"x"}, {"ids": [1, {2}]}, r"metadata.ids\[1\] is a set"),
        ({"model.pt": b"x"}, {1: "a"}, "non-string key 1"),
        ({"model.pt": b"x"}, ["not", "a", "dict"], "metadata must be a dict"),
    ],
)
def test_bad_register_inputs_are_refused_before_writing(reg, store, artifacts, metadata, fragment):
    with pytest.raises(RegistryError, match=fragment):
        reg.register("spira", artifacts, metadata)
    assert list(store.list("")) == []


def test_metadata_round_trips_as_json(reg):
    mv = reg.register("spira", {"model.pt": b"x"}, {"sizes": (1, 2), "nested": {"a": None, "b": True}})
    assert mv.metadata == {"sizes": [1, 2], "nested": {"a": None, "b": True}}
    assert reg.get("spira", 1).metadata == mv.metadata


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


def test_corrupt_marker_is_a_clear_error(reg, store):
    _register(reg)
    store.put("models/spira/versions/0001/version.json", b'{"name": "other", "version": 1}')
    with pytest.raises(RegistryError, match="describes 'other' version 1, not 'spira' version 1"):
        reg.get("spira", 1)
    assert any("describes 'other'" in p for p in reg.fsck("spira"))

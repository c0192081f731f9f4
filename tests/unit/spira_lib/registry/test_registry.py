"""ModelRegistry versions over the ObjectStore port, on the memory fake and on a real local folder."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest

from spira_lib.adapters.local import LocalFolderStore
from spira_lib.registry import IntegrityError, ModelRegistry, RegistryError
from tests.unit.spira_lib.registry._helpers import _register


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

    # Version 1's claim still exists (a conditional create sees it, the listing does not): take the next number.
    intruder = _register(reg, payload=b"intruder")
    assert intruder.version == 2
    assert store.get("models/spira/versions/0001/model.pt") == before
    store.hide = lambda key: False
    assert reg.load_artifact(reg.get("spira", 1), "model.pt") == b"original"
    assert reg.load_artifact(reg.get("spira", 2), "model.pt") == b"intruder"
    assert reg.fsck("spira") == []


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


def test_corrupt_marker_is_a_clear_error(reg, store):
    _register(reg)
    store.put("models/spira/versions/0001/version.json", b'{"name": "other", "version": 1}')
    with pytest.raises(RegistryError, match="describes 'other' version 1, not 'spira' version 1"):
        reg.get("spira", 1)
    assert any("describes 'other'" in p for p in reg.fsck("spira"))


def test_artifacts_can_name_their_own_version(reg):
    _register(reg)
    seen = []

    def artifacts(version: int, uri: str) -> dict[str, bytes]:
        seen.append((version, uri))
        return {"model.pt": b"w2", "model_card.md": f"# card of v{version} at {uri}".encode()}

    mv = reg.register("spira", artifacts, {"training_key": "k2"})
    assert seen == [(2, mv.uri)]
    assert reg.load_artifact(mv, "model_card.md").decode() == f"# card of v2 at {mv.uri}"

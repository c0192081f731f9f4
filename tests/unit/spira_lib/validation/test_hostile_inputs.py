"""The hostile-input corpus (tests/hostile_inputs.py) through snapshot + validation: no crash, no hang,
a precise reason or a clear refusal for each, and the raw data byte-identical afterwards."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import hostile_inputs as H


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "_base"
    H.make_base(folder)
    return folder


def test_the_corpus_is_large_and_names_are_unique() -> None:
    names = [c.name for c in H.CASES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    kinds = {c.expect.kind for c in H.CASES}
    assert kinds == {"quarantine", "accept", "refuse"}


@pytest.mark.parametrize("case", H.CASES, ids=lambda c: c.name)
def test_hostile_input(case: H.Case, base: Path, tmp_path: Path) -> None:
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root reads any file")
    result = H.run_case(case, tmp_path, base)
    assert result.outcome == "handled", f"{case.name}: {result.outcome}: {result.detail}"
    assert result.modified == [], f"{case.name} changed raw data: {result.modified}"


def test_the_judge_can_fail() -> None:
    """The classification sees a silent acceptance, a wrong reason, a collateral quarantine and a crash."""
    expect = H.quarantine({1: "symlink"}, "symbolic link")
    good = {f"{H.META}:{i}" for i in range(1, H.N_CLIPS + 1)}
    assert H.judge(expect, ({}, good, True, ""), None)[0] == "silent"
    wrong = {f"{H.META}:1": ("unreadable", "cannot read audio file")}
    assert H.judge(expect, (wrong, good - {f"{H.META}:1"}, True, ""), None)[0] == "misleading"
    right = {f"{H.META}:1": ("symlink", "audio/c00.wav is a broken symbolic link")}
    assert H.judge(expect, (right, good - {f"{H.META}:1"}, True, ""), None)[0] == "handled"
    collateral = right | {f"{H.META}:2": ("unreadable", "x")}
    assert H.judge(expect, (collateral, good - {f"{H.META}:1", f"{H.META}:2"}, True, ""), None)[0] == "misleading"
    assert H.judge(expect, None, FileNotFoundError("boom"))[0] == "crash"
    assert H.judge(H.refuse("empty"), ({}, good, True, "12 of 12 clips passed"), None)[0] == "silent"


def test_a_modified_file_is_seen(base: Path, tmp_path: Path) -> None:
    H.make_base(tmp_path / "x")
    before = H.tree_state(tmp_path / "x")
    (tmp_path / "x" / "data" / "audio" / "c03.wav").write_bytes(b"changed")
    after = H.tree_state(tmp_path / "x")
    assert [k for k in before if before[k] != after.get(k)] == ["data/audio/c03.wav"]

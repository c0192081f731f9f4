"""Helpers shared by the tests in this folder."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from spira_lib.ports import ObjectInfo, ObjectStore
from spira_lib.registry import ModelRegistry, ModelVersion


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

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if self.fail_next is not None and self.fail_next(key):
            self.fail_next = None
            raise OSError(f"simulated crash while writing {key}")
        self.inner.put(key, data, if_absent=if_absent)

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


def _register(reg: ModelRegistry, name: str = "spira", payload: bytes = b"weights", **meta) -> ModelVersion:
    return reg.register(
        name,
        {"model.pt": payload, "model_card.md": b"# card\n"},
        {"training_key": meta.pop("training_key", payload.hex()), **meta},
    )


def _actions(reg: ModelRegistry, name: str = "spira") -> list[tuple[str, int, int | None]]:
    return [(e["action"], e["version"], e["previous"]) for e in reg.ledger(name)]

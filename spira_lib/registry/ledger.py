"""Aliases and the append-only ledger of a model, and the champion history they record.

The ledger is the write-ahead log and the source of truth of champion
changes: ``promote`` and ``rollback`` append their entry first (a conditional
create of the next sequence number, so concurrent writers never overwrite
each other) and then *settle* the alias pointer: write the champion the whole
ledger says, read the ledger again, and repeat until the two agree. Whoever
writes the pointer last has checked it against a ledger that already held
every entry, so racing promotions end with the pointer on the ledger's
answer. If a crash lands between append and settle, the pointer lags the
ledger; ``verify`` reports it and the next promote/rollback settles it
before acting. Readers (champion, resolve) trust the pointer and never write.
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any, Callable

from spira_lib.ports import ObjectNotFound, ObjectStore
from spira_lib.registry.documents import (
    DEFAULT_ALIAS,
    LEDGER_RE,
    NAME_RE,
    AliasDoc,
    Layout,
    LedgerEntry,
    RegistryError,
    dump,
    load_object,
    validate_doc,
)

# Bound on how far the ledger writer walks past a stale listing before giving up.
MAX_LEDGER_BUMPS = 1000
# Bound on pointer rewrites while other writers keep appending.
MAX_SETTLE_ROUNDS = 100


def where(store: ObjectStore, key: str) -> str:
    """Human-readable location of ``key`` (store URI + key)."""
    uri = store.uri
    return f"{uri}{key}" if uri.endswith("/") else f"{uri}/{key}"


class Ledger:
    """Reads and writes the alias pointers and ledger entries of every model in one registry."""

    def __init__(self, store: ObjectStore, layout: Layout, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.layout = layout
        self._clock = clock
        # Entries are immutable once created, so each is fetched once per process (verify reads afresh).
        self._seen: dict[str, dict[str, Any]] = {}

    def clock(self) -> datetime:
        return self._clock().astimezone(timezone.utc)

    def now(self) -> str:
        return self.clock().isoformat(timespec="milliseconds")

    # ---- aliases

    def read_alias(self, name: str, alias: str) -> int | None:
        key = self.layout.alias(name, alias)
        try:
            doc = load_object(self.store.get(key), "alias pointer", where(self.store, key))
        except ObjectNotFound:
            return None
        try:
            parsed = validate_doc(AliasDoc, doc, "alias pointer", where(self.store, key))
        except RegistryError:
            parsed = None
        if parsed is None or parsed.alias != alias:
            raise RegistryError(
                f"alias pointer {where(self.store, key)} must be {{alias: {alias!r}, version: int >= 1}}, got {doc!r}"
            )
        return parsed.version

    def write_alias(self, name: str, alias: str, version: int) -> None:
        self.store.put(self.layout.alias(name, alias), dump(AliasDoc(alias=alias, version=version, updated_at=self.now())))

    def alias_keys(self, name: str) -> list[tuple[str | None, str]]:
        """(alias or None when the object is not an alias pointer, key) for every object under aliases/."""
        base = self.layout.aliases(name)
        out = []
        for info in self.store.list(base):
            filename = info.key[len(base):]
            alias = filename.removesuffix(".json")
            ok = filename.endswith(".json") and NAME_RE.fullmatch(alias)
            out.append((alias if ok else None, info.key))
        return out

    def aliases(self, name: str) -> dict[str, int]:
        found = {}
        for alias, _ in self.alias_keys(name):
            version = self.read_alias(name, alias) if alias else None
            if version is not None:
                found[alias] = version
        return found

    # ---- ledger

    def entry_keys(self, name: str) -> tuple[list[tuple[int, str]], list[str]]:
        """(seq, key) pairs in seq order, and keys under ledger/ that are not ledger entries."""
        base = self.layout.ledger(name)
        entries, strays = [], []
        for info in self.store.list(base):
            match = LEDGER_RE.fullmatch(info.key[len(base):])
            if match:
                entries.append((int(match[1]), info.key))
            else:
                strays.append(info.key)
        entries.sort()
        return entries, strays

    def read_entry(self, key: str) -> dict[str, Any]:
        return load_object(self.store.get(key), "ledger entry", where(self.store, key))

    def entries(self, name: str) -> list[dict[str, Any]]:
        keys, _ = self.entry_keys(name)
        out = []
        for _, key in keys:
            entry = self._seen.get(key)
            if entry is None:
                entry = self._seen[key] = self.read_entry(key)
            out.append(copy.deepcopy(entry))
        return out

    def append(
        self, name: str, action: str, version: int, previous: int | None, reason: str, decision: dict | None, actor: str
    ) -> dict[str, Any]:
        from spira_lib.registry.claims import create  # claims imports this module

        keys, _ = self.entry_keys(name)
        seq = keys[-1][0] + 1 if keys else 1
        for _ in range(MAX_LEDGER_BUMPS):
            entry = LedgerEntry(
                seq=seq, at=self.now(), action=action, version=version, previous=previous,
                reason=reason, decision=None if decision is None else dict(decision), actor=actor,
            )
            if create(self.store, self.layout.ledger_entry(name, seq), dump(entry)):
                return entry.model_dump(mode="json")
            seq += 1  # the listing was stale or another writer got here first: never overwrite
        raise RegistryError(f"cannot append to the ledger of {name!r}: {MAX_LEDGER_BUMPS} sequence numbers taken")

    # ---- champion history

    def champion_state(self, name: str) -> tuple[list[dict[str, Any]], list[int], int | None]:
        """(ledger entries, champion history with the current one last, the pointer's version)."""
        entries = self.entries(name)
        pointer = self.read_alias(name, DEFAULT_ALIAS)
        return entries, champion_history(entries, pointer), pointer

    def roll_forward(self, name: str, history: list[int], pointer: int | None) -> int | None:
        """Finish an interrupted promote/rollback: make the pointer match the ledger; return the champion."""
        top = history[-1] if history else None
        if top is not None and top != pointer:
            return self.settle(name)
        return top

    def settle(self, name: str) -> int | None:
        """Move the champion pointer to what the ledger says, until a re-read confirms it; return it."""
        for _ in range(MAX_SETTLE_ROUNDS):
            entries, history, pointer = self.champion_state(name)
            top = history[-1] if history else None
            if top is None or top == pointer:
                return top
            self.write_alias(name, DEFAULT_ALIAS, top)
        raise RegistryError(f"the champion of {name!r} keeps changing under concurrent promotions; try again")


def champion_history(entries: list[dict[str, Any]], pointer: int | None) -> list[int]:
    """Replay promote/rollback entries into the stack of champions; the top is the current one."""
    stack: list[int] = []
    for entry in entries:
        action, version = entry.get("action"), entry.get("version")
        if action == "promote":
            if not stack or stack[-1] != version:  # the same version twice in a row is one change
                stack.append(version)
        elif action == "rollback":
            if stack:
                stack.pop()
            if version in stack:
                # Normally the target is already on top; otherwise drop what came after it.
                del stack[len(stack) - stack[::-1].index(version):]
            else:
                stack.append(version)
    if not stack and pointer is not None:
        stack = [pointer]  # a pointer set outside the ledger: it is the only history we have
    return stack

"""Consistency check of one model's stored state (``spira registry verify``).

Reads every artifact (hashing costs I/O) and reports, as sentences: version
folders without a marker (abandoned, or still in progress while their claim's
lease runs), unreadable markers, missing, unlisted or tampered artifacts,
aliases to missing versions, unreadable ledger entries, versions without a
register entry or with more than one (two writers on one number), and a
champion pointer that disagrees with the ledger.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datetime import datetime

from spira_lib.registry.claims import CLAIM, uncommitted
from spira_lib.registry.documents import ACTIONS, DEFAULT_ALIAS, MARKER, RegistryError, check_name
from spira_lib.registry.ledger import Ledger, champion_history, where

if TYPE_CHECKING:
    from spira_lib.registry.registry import ModelRegistry


def _attempt(problems: list[str], fn, *args):
    """``fn(*args)``, or None with its RegistryError recorded as a problem."""
    try:
        return fn(*args)
    except RegistryError as exc:
        problems.append(str(exc))
        return None


def verify_model(reg: "ModelRegistry", ledger: Ledger, name: str) -> list[str]:
    """Problems in ``name``'s stored state; [] when it is consistent."""
    check_name(name)
    if not any(True for _ in reg.store.list(reg.layout.model(name) + "/")):
        raise RegistryError(f"unknown model {name!r}: nothing stored under {where(reg.store, reg.layout.model(name))}")
    problems, committed = _check_versions(reg, name, ledger.clock())
    alias_problems, pointer = _check_aliases(ledger, name, committed)
    problems += alias_problems
    problems += _check_ledger(ledger, name, committed, pointer)
    return problems


def _check_versions(reg: "ModelRegistry", name: str, now: datetime) -> tuple[list[str], set[int]]:
    scan = reg.scan(name)
    problems = [f"unexpected object {where(reg.store, k)}: not part of the registry layout" for k in scan.strays]
    for number, count, expiry, expired in uncommitted(reg, name, now):
        folder = where(reg.store, reg.layout.version(name, number))
        if expired:
            problems.append(
                f"version folder {folder} has no {MARKER} ({count} object(s)): an abandoned register; it is "
                "invisible, and `spira registry verify --repair` deletes it"
            )
        else:
            problems.append(
                f"version folder {folder} has no {MARKER} yet ({count} object(s)): a register in progress, "
                f"or one that died (its claim expires at {expiry.isoformat() if expiry else '?'})"
            )
    committed: set[int] = set()
    for number, files in sorted(scan.folders.items()):
        folder = where(reg.store, reg.layout.version(name, number))
        if MARKER not in files:
            continue
        mv = _attempt(problems, reg.read_version, name, number)
        if mv is None:
            continue
        committed.add(number)
        for filename in sorted(mv.artifacts):
            _attempt(problems, reg.load_artifact, mv, filename)
        extra = set(files) - set(mv.artifacts) - {MARKER, CLAIM}
        problems += [f"{folder}/{f} is not listed in {MARKER}" for f in sorted(extra)]
    return problems, committed


def _check_aliases(ledger: Ledger, name: str, committed: set[int]) -> tuple[list[str], int | None]:
    problems: list[str] = []
    pointer = None
    for alias, key in ledger.alias_keys(name):
        if alias is None:
            problems.append(f"unexpected object {where(ledger.store, key)}: not an alias pointer")
            continue
        version = _attempt(problems, ledger.read_alias, name, alias)
        if version is None:
            continue
        if alias == DEFAULT_ALIAS:
            pointer = version
        if version not in committed:
            problems.append(f"alias {alias!r} of model {name!r} points to version {version}, which is not committed")
    return problems, pointer


def _check_ledger(ledger: Ledger, name: str, committed: set[int], pointer: int | None) -> list[str]:
    keys, strays = ledger.entry_keys(name)
    problems = [f"unexpected object {where(ledger.store, k)}: not a ledger entry" for k in strays]
    entries: list[dict[str, Any]] = []
    registered: dict[int, int] = {}
    for seq, key in keys:
        entry = _attempt(problems, ledger.read_entry, key)
        if entry is None:
            continue
        loc = where(ledger.store, key)
        if entry.get("seq") != seq:
            problems.append(f"ledger entry {loc} records seq {entry.get('seq')!r}, not {seq}")
        if entry.get("action") not in ACTIONS:
            problems.append(f"ledger entry {loc} has unknown action {entry.get('action')!r}")
        elif entry.get("version") not in committed:
            problems.append(f"ledger entry {loc} ({entry['action']}) names version {entry.get('version')!r}, which is not committed")
        if entry.get("action") == "register":
            registered[entry.get("version")] = registered.get(entry.get("version"), 0) + 1
        entries.append(entry)
    problems += [f"version {n} of model {name!r} has no 'register' entry in the ledger" for n in sorted(committed - set(registered))]
    problems += [
        f"version {n} of model {name!r} has {count} 'register' entries in the ledger: two writers took one number"
        for n, count in sorted(registered.items()) if count > 1
    ]
    history = champion_history(entries, pointer)
    if history and history[-1] != pointer:
        problems.append(
            f"champion pointer of model {name!r} says version {pointer}, but the ledger says {history[-1]}: "
            "an interrupted promote/rollback (the next promote or rollback finishes it)"
        )
    return problems


def stored_model_names(reg: "ModelRegistry") -> list[str]:
    """Every model folder under the registry prefix, committed or not (verify must see abandoned ones too)."""
    base = f"{reg.prefix}/" if reg.prefix else ""
    names = set()
    for info in reg.store.list(base):
        first = info.key[len(base):].split("/", 1)[0]
        if first:
            names.add(first)
    return sorted(names)


def verify_registry(reg: "ModelRegistry", names: list[str] | None = None) -> dict[str, list[str]]:
    """Problems per model (every stored model when ``names`` is None); a model name that is invalid is a problem too."""
    out: dict[str, list[str]] = {}
    for name in stored_model_names(reg) if names is None else names:
        try:
            out[name] = reg.fsck(name)
        except RegistryError as exc:
            out[name] = [str(exc)]
    return out

"""Safe concurrent writers: conditional creates, version claims with a lease, and the register write path.

Two runs may register the same model at once (the ``gpu`` and ``local``
deployments each have their own one-at-a-time limit, and a person can run
``spira train`` meanwhile). Nothing here assumes a single writer:

* **Version numbers** are taken by a conditional create of a claim object,
  ``versions/<NNNN>/_claim.json`` (S3 ``If-None-Match: *``, a hard link
  locally). The loser of a race takes the next number. Only the claim's owner
  writes into the folder; the ``version.json`` marker, written last and also
  conditionally, makes the version visible.
* **Ledger entries** are appended the same way: a conditional create of
  ``ledger/<seq>.json``, the next sequence number on a lost race.
* Every create is **confirmed** by reading the object back: a store whose
  conditional write is not perfectly atomic (an emulator) still cannot give
  one number to two writers without one of them noticing.

A claim carries a lease (``LEASE_S``). A writer that took longer than its
lease gives up before committing, so ``sweep`` may delete the folders of
claims that expired without a marker (a writer killed mid-register).
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping

from spira_lib.hashing import sha256_hex
from spira_lib.ports import ObjectExists, ObjectNotFound, ObjectStore, StoreError, join_key
from spira_lib.registry.documents import (
    MARKER,
    RegistryError,
    check_artifact_name,
    dump,
    load_object,
)

if TYPE_CHECKING:
    from spira_lib.registry.registry import ModelRegistry

CLAIM = "_claim.json"  # never a valid artifact name (those start with a letter or digit)
LEASE_S = 15 * 60  # a register writes a few objects; 15 minutes is generous
MAX_BUMPS = 1000  # bound on how many taken numbers a writer walks past


def create(store: ObjectStore, key: str, data: bytes, attempts: int = 3) -> bool:
    """Create ``key`` with ``data`` if it does not exist; True when this call created it.

    The read-back catches a lost race that the store failed to report
    (``data`` always holds a unique token or timestamp, so equal bytes are
    ours). A ``StoreError`` is ambiguous (the write may have landed before the
    connection dropped), so the create is tried again: finding our own bytes
    there then means it did.
    """
    for attempt in range(1, attempts + 1):
        try:
            try:
                store.put(key, data, if_absent=True)
            except ObjectExists:
                pass  # someone's: maybe ours from an attempt whose answer was lost
            return store.get(key) == data
        except ObjectNotFound:
            return False
        except StoreError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def claim_doc(token: str, now: str, lease_s: float) -> bytes:
    return dump({"owner": token, "claimed_at": now, "lease_s": lease_s, "host": socket.gethostname(), "pid": os.getpid()})


def claim_expiry(raw: bytes, where: str) -> datetime | None:
    """When the claim stored as ``raw`` expires (UTC), or None when it is unreadable."""
    try:
        doc = load_object(raw, "version claim", where)
        return datetime.fromisoformat(doc["claimed_at"]) + timedelta(seconds=float(doc["lease_s"]))
    except (RegistryError, KeyError, TypeError, ValueError):
        return None


def payload_of(name: str, artifacts: Mapping[str, bytes]) -> dict[str, bytes]:
    if not isinstance(artifacts, Mapping) or not artifacts:
        raise RegistryError(f"register {name!r}: artifacts must be a non-empty dict of filename -> bytes")
    payload: dict[str, bytes] = {}
    for filename, data in artifacts.items():
        check_artifact_name(filename)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise RegistryError(f"register {name!r}: artifact {filename!r} must be bytes, got {type(data).__name__}")
        payload[filename] = bytes(data)
    return payload


class VersionWriter:
    """The register path of one registry: claim a number, write artifacts, commit the marker."""

    def __init__(self, reg: "ModelRegistry", lease_s: float = LEASE_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.reg = reg
        self.lease_s = lease_s
        self._monotonic = monotonic

    def claim(self, name: str, token: str) -> int:
        """The lowest free version number above everything stored, taken for ``token``."""
        reg = self.reg
        version = reg.scan(name).highest + 1
        for _ in range(MAX_BUMPS):
            key = join_key(reg.layout.version(name, version), CLAIM)
            if create(reg.store, key, claim_doc(token, reg._ledger.now(), self.lease_s)):
                return version
            version += 1  # another writer holds it (or held it and crashed): never share a number
        raise RegistryError(f"cannot register {name!r}: {MAX_BUMPS} version numbers after the highest are taken")

    def write(
        self, name: str, artifacts: Mapping[str, bytes] | Callable[[int, str], Mapping[str, bytes]],
        metadata: dict[str, Any], champion: int | None, reason: str, actor: str,
    ) -> bytes:
        """Register the next version; returns the stored marker's bytes."""
        reg = self.reg
        started = self._monotonic()
        version = self.claim(name, uuid.uuid4().hex)
        folder = reg.layout.version(name, version)
        written: list[str] = []
        try:
            if callable(artifacts):
                artifacts = artifacts(version, reg._where(folder))
            payload = payload_of(name, artifacts)
            manifest = {}
            for filename in sorted(payload):
                reg.store.put(join_key(folder, filename), payload[filename])
                written.append(filename)
                manifest[filename] = {"sha256": sha256_hex(payload[filename]), "size": len(payload[filename])}
            if self._monotonic() - started > self.lease_s * 0.8:
                raise RegistryError(
                    f"register {name!r} version {version} took longer than its {self.lease_s:.0f} s lease; not committing "
                    "(the folder may already be swept as abandoned)"
                )
        except BaseException:
            self._release(folder, written)
            raise
        doc = {"name": name, "version": version, "created_at": reg._ledger.now(), "artifacts": manifest, "metadata": metadata}
        encoded = dump(doc)
        if not create(reg.store, reg.layout.marker(name, version), encoded):
            raise RegistryError(
                f"refusing to commit {name!r} version {version}: {reg._where(reg.layout.marker(name, version))} was written "
                "by someone else although this writer holds the claim; versions are never overwritten"
            )
        reg._ledger.append(name, "register", version, champion, reason, None, actor)
        return encoded

    def _release(self, folder: str, written: list[str]) -> None:
        """Best effort: remove what a failed register wrote before its marker, claim last.

        If this fails too, the folder stays invisible; ``verify`` reports it
        and ``sweep`` removes it once the claim's lease has run out.
        """
        for key in [join_key(folder, f) for f in written] + [join_key(folder, CLAIM)]:
            if not self._delete(key):
                return  # keep the claim while anything of ours is left, so nobody reuses the number

    def _delete(self, key: str, attempts: int = 3) -> bool:
        for _ in range(attempts):
            try:
                self.reg.store.delete(key)
                return True
            except Exception:  # noqa: BLE001 - storage trouble is why we are here
                continue
        return False


def uncommitted(reg: "ModelRegistry", name: str, now: datetime) -> list[tuple[int, int, datetime | None, bool]]:
    """(number, objects, claim expiry or None, expired) for each version folder without a marker."""
    out = []
    for number, files in sorted(reg.scan(name).folders.items()):
        if MARKER in files:
            continue
        expiry = None
        if CLAIM in files:
            key = join_key(reg.layout.version(name, number), CLAIM)
            try:
                expiry = claim_expiry(reg.store.get(key), reg._where(key))
            except ObjectNotFound:
                expiry = None
        out.append((number, len(files), expiry, expiry is None or expiry <= now))
    return out


def sweep(reg: "ModelRegistry", name: str, now: datetime) -> list[int]:
    """Delete version folders that have no marker and no live claim; returns their numbers.

    Nobody ever saw those versions (no marker, no ledger entry), so a later
    register may take a swept number again.
    """
    swept = []
    for number, _, _, expired in uncommitted(reg, name, now):
        if not expired:
            continue
        folder = reg.layout.version(name, number) + "/"
        keys = [info.key for info in reg.store.list(folder)]
        if any(k.endswith("/" + MARKER) for k in keys):
            continue  # committed meanwhile
        for key in sorted(keys, key=lambda k: k.endswith("/" + CLAIM)):  # the claim last
            reg.store.delete(key)
        swept.append(number)
    return swept

"""ModelRegistry: named models with numbered immutable versions, aliases and an append-only ledger.

Why this shape: S3 has neither rename nor multi-object transactions, so every
change is "immutable objects first, one small pointer object last". A version
is visible only once its ``version.json`` exists, so an interrupted register
leaves an invisible folder (``verify`` reports it) and the next register skips
its number rather than reusing it. Artifacts are re-hashed on every load.

Concurrent writers are safe (see ``claims``): a version number is taken by a
conditional create of a claim object, so two runs never share one, and the
loser takes the next number; ledger entries are appended the same way; the
champion pointer follows the ledger (see ``ledger``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from spira_lib.hashing import sha256_hex
from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, join_key
from spira_lib.registry.documents import (
    DEFAULT_ALIAS,
    DIGITS_RE,
    MARKER,
    NAME_RE,
    NAME_RULE,
    REF_RE,
    IntegrityError,
    Layout,
    ModelVersion,
    RegistryError,
    VersionDoc,
    check_artifact_name,
    check_json,
    check_name,
    check_text,
    check_version,
    dump,
    load_object,
    validate_doc,
)
from spira_lib.registry.claims import VersionWriter, payload_of, sweep
from spira_lib.registry.ledger import Ledger, where
from spira_lib.registry.moves import AliasMoves


@dataclass
class Scan:
    """One listing of a model's ``versions/`` folder, split by what the layout expects."""

    folders: dict[int, dict[str, ObjectInfo]] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)  # keys that do not fit the layout
    highest: int = 0  # highest number seen in any numeric folder, committed or not

    @property
    def committed(self) -> list[int]:
        return sorted(n for n, files in self.folders.items() if MARKER in files)


class ModelRegistry(AliasMoves):
    """Named models with numbered immutable versions, aliases and an append-only ledger."""

    def __init__(self, store: ObjectStore, prefix: str = "models", *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.layout = Layout(join_key(prefix))
        self.prefix = self.layout.prefix
        self._ledger = Ledger(store, self.layout, clock or (lambda: datetime.now(timezone.utc)))
        self._writer = VersionWriter(self)

    def _where(self, key: str) -> str:
        return where(self.store, key)

    # ---- reading versions --------------------------------------------------

    def scan(self, name: str) -> Scan:
        base = self.layout.versions(name)
        scan = Scan()
        for info in self.store.list(base):
            parts = info.key[len(base):].split("/")
            number = int(parts[0]) if DIGITS_RE.fullmatch(parts[0]) else 0
            # Any numeric folder counts, so a half-written or oddly named one is never reused.
            scan.highest = max(scan.highest, number)
            if len(parts) == 2 and number >= 1 and parts[0] == f"{number:04d}" and parts[1]:
                scan.folders.setdefault(number, {})[parts[1]] = info
            else:
                scan.strays.append(info.key)
        return scan

    def read_version(self, name: str, version: int) -> ModelVersion:
        key = self.layout.marker(name, version)
        try:
            doc = load_object(self.store.get(key), "version marker", self._where(key))
        except ObjectNotFound:
            raise RegistryError(f"model {name!r} has no committed version {version}") from None
        if doc.get("name") != name or doc.get("version") != version:
            raise RegistryError(
                f"version marker {self._where(key)} describes {doc.get('name')!r} version {doc.get('version')!r}, "
                f"not {name!r} version {version}"
            )
        parsed = validate_doc(VersionDoc, doc, "version marker", self._where(key))
        return ModelVersion.from_doc(parsed, self._where(self.layout.version(name, version)))

    def _committed_or_raise(self, name: str) -> list[int]:
        committed = self.scan(name).committed
        if not committed:
            known = ", ".join(self.list_models()) or "none"
            raise RegistryError(
                f"unknown model {name!r}: no committed versions under {self._where(self.layout.model(name))} "
                f"(known models: {known})"
            )
        return committed

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """A committed version by number, by alias, or (neither given) the latest."""
        check_name(name)
        if version is not None and alias is not None:
            raise RegistryError(f"get {name!r}: pass a version or an alias, not both")
        if version is not None:
            check_version(version)
        committed = self._committed_or_raise(name)
        listed = ", ".join(map(str, committed))
        if alias is not None:
            version = self._aliased(name, check_name(alias, "alias"), committed, listed)
        elif version is None:
            version = committed[-1]
        elif version not in committed:
            raise RegistryError(f"model {name!r} has no version {version} (committed versions: {listed})")
        return self.read_version(name, version)

    def _aliased(self, name: str, alias: str, committed: list[int], listed: str) -> int:
        pointed = self._ledger.read_alias(name, alias)
        if pointed is None:
            have = ", ".join(sorted(self.aliases(name))) or "none"
            raise RegistryError(f"model {name!r} has no alias {alias!r} (aliases: {have})")
        if pointed not in committed:
            raise RegistryError(
                f"alias {alias!r} of model {name!r} points to version {pointed}, which is not committed "
                f"(committed versions: {listed})"
            )
        return pointed

    def resolve(self, ref: str, default_alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """``name`` (the ``default_alias`` version if set, else latest), ``name@alias`` or ``name:3``."""
        grammar = "expected 'name', 'name@alias' or 'name:<version>'"
        match = REF_RE.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if not match:
            raise RegistryError(f"invalid model reference {ref!r}: {grammar}")
        name, alias, version = match["name"], match["alias"], match["version"]
        if not NAME_RE.fullmatch(name):
            raise RegistryError(f"invalid model reference {ref!r}: model name {name!r} is invalid ({NAME_RULE})")
        if alias is not None:
            if not NAME_RE.fullmatch(alias):
                raise RegistryError(f"invalid model reference {ref!r}: alias {alias!r} is invalid ({NAME_RULE})")
            return self.get(name, alias=alias)
        if version is not None:
            if not DIGITS_RE.fullmatch(version) or int(version) < 1:
                raise RegistryError(f"invalid model reference {ref!r}: version {version!r} must be an integer starting at 1")
            return self.get(name, version=int(version))
        check_name(default_alias, "default alias")
        self._committed_or_raise(name)
        if self._ledger.read_alias(name, default_alias) is not None:
            return self.get(name, alias=default_alias)
        return self.get(name)

    def load_artifact(self, mv: ModelVersion, filename: str) -> bytes:
        """The artifact's bytes, after checking them against the size and sha256 in the marker."""
        check_name(mv.name)
        check_version(mv.version)
        expected = mv.artifacts.get(filename)
        if expected is None:
            raise RegistryError(f"{mv.ref} has no artifact {filename!r} (artifacts: {', '.join(sorted(mv.artifacts)) or 'none'})")
        check_artifact_name(filename)
        key = join_key(self.layout.version(mv.name, mv.version), filename)
        try:
            data = self.store.get(key)
        except ObjectNotFound:
            raise IntegrityError(f"{self._where(key)} is missing, but {mv.ref}'s {MARKER} lists it") from None
        digest = sha256_hex(data)
        if len(data) != expected.get("size") or digest != expected.get("sha256"):
            raise IntegrityError(
                f"integrity check failed for {self._where(key)}: expected sha256 {expected.get('sha256')} "
                f"({expected.get('size')} bytes), found sha256 {digest} ({len(data)} bytes)"
            )
        return data

    def list_models(self) -> list[str]:
        """Names of models with at least one committed version, sorted."""
        base = f"{self.prefix}/" if self.prefix else ""
        names = set()
        for info in self.store.list(base):
            parts = info.key[len(base):].split("/")
            if (
                len(parts) == 4 and parts[1] == "versions" and parts[3] == MARKER and NAME_RE.fullmatch(parts[0])
                and DIGITS_RE.fullmatch(parts[2]) and parts[2] == f"{int(parts[2]):04d}"
            ):  # fmt: skip
                names.add(parts[0])
        return sorted(names)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Committed versions of ``name``, ascending; [] for a model never registered."""
        check_name(name)
        return [self.read_version(name, v) for v in self.scan(name).committed]

    def find_by_training_key(self, name: str, key: str) -> ModelVersion | None:
        """The newest version whose ``metadata["training_key"] == key``, so a retrain of the same inputs is skipped."""
        check_name(name)
        check_text(key, "training key")
        return next((mv for mv in reversed(self.list_versions(name)) if mv.metadata.get("training_key") == key), None)

    # ---- writing versions --------------------------------------------------

    def register(
        self, name: str, artifacts: Mapping[str, bytes] | Callable[[int, str], Mapping[str, bytes]],
        metadata: dict[str, Any] | None = None, *, reason: str = "registered", actor: str = "spira",
    ) -> ModelVersion:
        """Store ``artifacts`` as the next version of ``name``; the marker is written last.

        ``artifacts`` may be a function of (version number, version location)
        for artifacts that name their own version (a model card's lineage).
        Metadata is JSON-able (typically training_key, data_digest, config_digest,
        code_version, metrics). Nothing is written if any input is invalid.
        Safe with concurrent writers: each gets its own number (see ``claims``).
        """
        check_name(name)
        metadata = {} if metadata is None else metadata
        check_json(metadata, "metadata", required_type=dict)
        check_text(reason, "reason")
        check_text(actor, "actor")
        if not callable(artifacts):
            payload_of(name, artifacts)  # refuse bad input before claiming a number
        champion = self._ledger.read_alias(name, DEFAULT_ALIAS)
        encoded = self._writer.write(name, artifacts, metadata, champion, reason, actor)
        stored = VersionDoc.model_validate(json.loads(encoded))  # what readers will see (tuples become lists)
        return ModelVersion.from_doc(stored, self._where(self.layout.version(name, stored.version)))

    def sweep(self, name: str) -> list[int]:
        """Delete abandoned version folders (no marker, claim lease expired); returns their numbers."""
        return sweep(self, check_name(name), self._ledger.clock())

    def fsck(self, name: str) -> list[str]:
        """Human-readable problems in ``name``'s stored state; [] when it is consistent (see ``verify``)."""
        from spira_lib.registry.verify import verify_model

        return verify_model(self, self._ledger, name)

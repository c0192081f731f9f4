"""Model registry over the ObjectStore port: immutable numbered versions, aliases, a ledger.

Layout under ``<prefix>`` (default ``models``) of any :class:`~spira_lib.ports.ObjectStore`::

    <prefix>/<name>/versions/<NNNN>/<artifact>     artifact bytes (model.pt, model_card.md, report.json, ...)
    <prefix>/<name>/versions/<NNNN>/version.json   commit marker, written LAST:
        {name, version, created_at, artifacts: {filename: {sha256, size}}, metadata: {...}}
    <prefix>/<name>/aliases/<alias>.json           {alias, version, updated_at}
    <prefix>/<name>/ledger/<seq:08d>.json          one NEW object per action, never rewritten:
        {seq, at, action, version, previous, reason, decision, actor}
        action is "register" | "promote" | "reject" | "rollback"; ``previous`` is the
        champion version when the action was recorded (None if there was none).

Why this shape: S3 has neither rename nor multi-object transactions, so every
change is "immutable objects first, one small pointer object last". A version
is visible only once its ``version.json`` exists, so an interrupted register
leaves an invisible folder (``fsck`` reports it) and the next register skips
its number rather than reusing it. Artifacts are re-hashed on every load.

The ledger is the write-ahead log of champion changes: ``promote`` and
``rollback`` append their entry first and move the alias pointer second. If a
crash lands between the two, the pointer lags the ledger; ``fsck`` reports it
and the next ``promote``/``rollback`` rolls the pointer forward before acting.
Readers (``champion``, ``resolve``) trust the pointer and never write.

Concurrency assumption: one writer per model at a time (the Prefect deployment
runs with concurrency limit 1). Writes still re-check existence before every
put, so a stale listing or a stray second writer is refused (versions) or
bumped to the next free number (ledger) instead of overwriting anything.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from spira_lib.ports import ObjectInfo, ObjectNotFound, ObjectStore, join_key

__all__ = [
    "ACTIONS",
    "DEFAULT_ALIAS",
    "MARKER",
    "IntegrityError",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
]

MARKER = "version.json"
DEFAULT_ALIAS = "champion"
ACTIONS = ("register", "promote", "reject", "rollback")

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_ARTIFACT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_DIGITS_RE = re.compile(r"[0-9]+")
_LEDGER_RE = re.compile(r"([0-9]{8,})\.json")
_REF_RE = re.compile(r"(?P<name>[^@:]*)(?:@(?P<alias>[^@:]*)|:(?P<version>[^@:]*))?")
_NAME_RULE = "use 1-100 lowercase letters, digits, '-' or '_', starting with a letter or digit"
# Bound on how far the ledger writer walks past a stale listing before giving up.
_MAX_LEDGER_BUMPS = 1000


class RegistryError(Exception):
    """A registry request cannot be served: unknown model/version/alias, bad input, or bad stored state."""


class IntegrityError(RegistryError):
    """A stored artifact does not match the sha256/size recorded in its version marker."""


@dataclass(frozen=True)
class ModelVersion:
    """One committed version, as recorded in its ``version.json``."""

    name: str
    version: int
    created_at: str  # UTC, ISO 8601
    artifacts: dict[str, dict[str, Any]]  # filename -> {"sha256": hex, "size": bytes}
    metadata: dict[str, Any] = field(default_factory=dict)
    uri: str = ""  # store uri + key of the version folder

    @property
    def ref(self) -> str:
        """``name:version``, the exact reference ``ModelRegistry.resolve`` accepts."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "artifacts": copy.deepcopy(self.artifacts),
            "metadata": copy.deepcopy(self.metadata),
            "uri": self.uri,
        }


@dataclass
class _Scan:
    """One listing of a model's ``versions/`` folder, split by what the layout expects."""

    folders: dict[int, dict[str, ObjectInfo]] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)  # keys that do not fit the layout
    highest: int = 0  # highest number seen in any numeric folder, committed or not

    @property
    def committed(self) -> list[int]:
        return sorted(n for n, files in self.folders.items() if MARKER in files)


def _check_name(value: object, what: str = "model name") -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise RegistryError(f"invalid {what} {value!r}: {_NAME_RULE}")
    return value


def _check_artifact_name(value: object) -> str:
    if not isinstance(value, str) or not _ARTIFACT_RE.fullmatch(value) or ".." in value:
        raise RegistryError(
            f"invalid artifact filename {value!r}: use a plain file name (letters, digits, '.', '-', '_'; no '/' or '..')"
        )
    if value == MARKER:
        raise RegistryError(f"invalid artifact filename {value!r}: {MARKER} is reserved for the commit marker")
    return value


def _check_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"invalid version {value!r}: versions are integers starting at 1")
    return value


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _json_problem(value: Any, path: str) -> str | None:
    """Why ``value`` would not survive a strict JSON round trip, naming the offending path; None if it would."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        # NaN/Infinity are not JSON; other readers (S3 consoles, jq, JS dashboards) reject them.
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot represent"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = _json_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON-serializable (convert it to int/float/str/list/dict)"


def _dump(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelRegistry:
    """Named models with numbered immutable versions, aliases and an append-only ledger."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str = "models",
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.prefix = join_key(prefix)
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    # ---- keys -------------------------------------------------------------

    def _model_key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def _versions_prefix(self, name: str) -> str:
        return join_key(self._model_key(name), "versions") + "/"

    def _version_key(self, name: str, version: int) -> str:
        return join_key(self._model_key(name), "versions", f"{version:04d}")

    def _alias_key(self, name: str, alias: str) -> str:
        return join_key(self._model_key(name), "aliases", f"{alias}.json")

    def _ledger_prefix(self, name: str) -> str:
        return join_key(self._model_key(name), "ledger") + "/"

    def _where(self, key: str) -> str:
        uri = self.store.uri
        return f"{uri}{key}" if uri.endswith("/") else f"{uri}/{key}"

    def _now(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat(timespec="milliseconds")

    # ---- low-level reads --------------------------------------------------

    def _read_json(self, key: str, what: str) -> dict[str, Any]:
        """Parse a stored JSON object; ObjectNotFound propagates so callers can word the miss."""
        raw = self.store.get(key)
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{what} {self._where(key)} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{what} {self._where(key)} must hold a JSON object, found {type(doc).__name__}")
        return doc

    def _scan(self, name: str) -> _Scan:
        base = self._versions_prefix(name)
        scan = _Scan()
        for info in self.store.list(base):
            parts = info.key[len(base):].split("/")
            if _DIGITS_RE.fullmatch(parts[0]):
                # Any numeric folder counts, so a half-written or oddly named one is never reused.
                scan.highest = max(scan.highest, int(parts[0]))
            number = int(parts[0]) if _DIGITS_RE.fullmatch(parts[0]) else 0
            if len(parts) == 2 and number >= 1 and parts[0] == f"{number:04d}" and parts[1]:
                scan.folders.setdefault(number, {})[parts[1]] = info
            else:
                scan.strays.append(info.key)
        return scan

    def _read_version(self, name: str, version: int) -> ModelVersion:
        folder = self._version_key(name, version)
        key = join_key(folder, MARKER)
        try:
            doc = self._read_json(key, "version marker")
        except ObjectNotFound:
            raise RegistryError(f"model {name!r} has no committed version {version}") from None
        where = self._where(key)
        if doc.get("name") != name or doc.get("version") != version:
            raise RegistryError(
                f"version marker {where} describes {doc.get('name')!r} version {doc.get('version')!r}, "
                f"not {name!r} version {version}"
            )
        artifacts = doc.get("artifacts")
        if not isinstance(artifacts, dict) or not artifacts:
            raise RegistryError(f"version marker {where}: 'artifacts' must be a non-empty object")
        for filename, entry in artifacts.items():
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("sha256"), str)
                or not _SHA256_RE.fullmatch(entry["sha256"])
                or isinstance(entry.get("size"), bool)
                or not isinstance(entry.get("size"), int)
                or entry["size"] < 0
            ):
                raise RegistryError(
                    f"version marker {where}: artifacts.{filename} must be {{sha256: 64 hex chars, size: int >= 0}}, got {entry!r}"
                )
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict):
            raise RegistryError(f"version marker {where}: 'metadata' must be an object")
        created_at = doc.get("created_at")
        if not isinstance(created_at, str):
            raise RegistryError(f"version marker {where}: 'created_at' must be an ISO timestamp string")
        return ModelVersion(name, version, created_at, artifacts, metadata, self._where(folder))

    def _read_alias(self, name: str, alias: str) -> int | None:
        key = self._alias_key(name, alias)
        try:
            doc = self._read_json(key, "alias pointer")
        except ObjectNotFound:
            return None
        version = doc.get("version")
        if doc.get("alias") != alias or isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistryError(
                f"alias pointer {self._where(key)} must be {{alias: {alias!r}, version: int >= 1}}, got {doc!r}"
            )
        return version

    def _write_alias(self, name: str, alias: str, version: int) -> None:
        self.store.put(
            self._alias_key(name, alias),
            _dump({"alias": alias, "version": version, "updated_at": self._now()}),
        )

    def _committed_or_raise(self, name: str) -> list[int]:
        committed = self._scan(name).committed
        if not committed:
            known = ", ".join(self.list_models()) or "none"
            raise RegistryError(
                f"unknown model {name!r}: no committed versions under {self._where(self._model_key(name))} "
                f"(known models: {known})"
            )
        return committed

    # ---- versions ---------------------------------------------------------

    def register(
        self,
        name: str,
        artifacts: Mapping[str, bytes],
        metadata: dict[str, Any] | None = None,
        *,
        reason: str = "registered",
        actor: str = "spira",
    ) -> ModelVersion:
        """Store ``artifacts`` as the next version of ``name``; the marker is written last.

        Metadata is JSON-able (typically training_key, data_digest, config_digest,
        code_version, metrics). Nothing is written if any input is invalid.
        """
        _check_name(name)
        if not isinstance(artifacts, Mapping) or not artifacts:
            raise RegistryError(f"register {name!r}: artifacts must be a non-empty dict of filename -> bytes")
        payload: dict[str, bytes] = {}
        for filename, data in artifacts.items():
            _check_artifact_name(filename)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise RegistryError(
                    f"register {name!r}: artifact {filename!r} must be bytes, got {type(data).__name__}"
                )
            payload[filename] = bytes(data)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise RegistryError(f"register {name!r}: metadata must be a dict, got {type(metadata).__name__}")
        problem = _json_problem(metadata, "metadata")
        if problem:
            raise RegistryError(f"register {name!r}: {problem}")
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        champion = self._read_alias(name, DEFAULT_ALIAS)

        version = self._scan(name).highest + 1
        folder = self._version_key(name, version)
        marker_key = join_key(folder, MARKER)
        # Under the single-writer assumption these keys are free; HEAD-style checks
        # (not the listing, which may be stale) guard against overwriting anything.
        taken = [k for k in [marker_key, *(join_key(folder, f) for f in payload)] if self.store.exists(k)]
        if taken:
            raise RegistryError(
                f"refusing to register {name!r} version {version}: {self._where(taken[0])} already exists "
                "(versions are immutable; is another writer registering this model?)"
            )
        manifest = {}
        for filename in sorted(payload):
            data = payload[filename]
            self.store.put(join_key(folder, filename), data)
            manifest[filename] = {"sha256": _sha256(data), "size": len(data)}
        if self.store.exists(marker_key):
            raise RegistryError(
                f"refusing to commit {name!r} version {version}: {self._where(marker_key)} appeared while "
                "writing artifacts (another writer?); versions are never overwritten"
            )
        doc = {
            "name": name,
            "version": version,
            "created_at": self._now(),
            "artifacts": manifest,
            "metadata": metadata,
        }
        encoded = _dump(doc)
        self.store.put(marker_key, encoded)
        self._append(name, "register", version, champion, reason, None, actor)
        stored = json.loads(encoded)  # what readers will see (tuples become lists, keys sorted)
        return ModelVersion(name, version, stored["created_at"], stored["artifacts"], stored["metadata"], self._where(folder))

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """A committed version by number, by alias, or (neither given) the latest."""
        _check_name(name)
        if version is not None and alias is not None:
            raise RegistryError(f"get {name!r}: pass a version or an alias, not both")
        if version is not None:
            _check_version(version)
        committed = self._committed_or_raise(name)
        listed = ", ".join(map(str, committed))
        if alias is not None:
            _check_name(alias, "alias")
            pointed = self._read_alias(name, alias)
            if pointed is None:
                have = ", ".join(sorted(self.aliases(name))) or "none"
                raise RegistryError(f"model {name!r} has no alias {alias!r} (aliases: {have})")
            if pointed not in committed:
                raise RegistryError(
                    f"alias {alias!r} of model {name!r} points to version {pointed}, which is not committed "
                    f"(committed versions: {listed})"
                )
            version = pointed
        elif version is None:
            version = committed[-1]
        elif version not in committed:
            raise RegistryError(f"model {name!r} has no version {version} (committed versions: {listed})")
        return self._read_version(name, version)

    def resolve(self, ref: str, default_alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """``name`` (the ``default_alias`` version if set, else latest), ``name@alias`` or ``name:3``."""
        grammar = "expected 'name', 'name@alias' or 'name:<version>'"
        if not isinstance(ref, str):
            raise RegistryError(f"invalid model reference {ref!r}: {grammar}")
        match = _REF_RE.fullmatch(ref.strip())
        if not match:
            raise RegistryError(f"invalid model reference {ref!r}: {grammar}")
        name, alias, version = match["name"], match["alias"], match["version"]
        if not _NAME_RE.fullmatch(name):
            raise RegistryError(f"invalid model reference {ref!r}: model name {name!r} is invalid ({_NAME_RULE})")
        if alias is not None:
            if not _NAME_RE.fullmatch(alias):
                raise RegistryError(f"invalid model reference {ref!r}: alias {alias!r} is invalid ({_NAME_RULE})")
            return self.get(name, alias=alias)
        if version is not None:
            if not _DIGITS_RE.fullmatch(version) or int(version) < 1:
                raise RegistryError(
                    f"invalid model reference {ref!r}: version {version!r} must be an integer starting at 1"
                )
            return self.get(name, version=int(version))
        _check_name(default_alias, "default alias")
        self._committed_or_raise(name)
        if self._read_alias(name, default_alias) is not None:
            return self.get(name, alias=default_alias)
        return self.get(name)

    def load_artifact(self, mv: ModelVersion, filename: str) -> bytes:
        """The artifact's bytes, after checking them against the size and sha256 in the marker."""
        _check_name(mv.name)
        _check_version(mv.version)
        expected = mv.artifacts.get(filename)
        if expected is None:
            raise RegistryError(
                f"{mv.ref} has no artifact {filename!r} (artifacts: {', '.join(sorted(mv.artifacts)) or 'none'})"
            )
        _check_artifact_name(filename)
        key = join_key(self._version_key(mv.name, mv.version), filename)
        try:
            data = self.store.get(key)
        except ObjectNotFound:
            raise IntegrityError(f"{self._where(key)} is missing, but {mv.ref}'s {MARKER} lists it") from None
        digest = _sha256(data)
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
                len(parts) == 4
                and parts[1] == "versions"
                and parts[3] == MARKER
                and _NAME_RE.fullmatch(parts[0])
                and _DIGITS_RE.fullmatch(parts[2])
                and parts[2] == f"{int(parts[2]):04d}"
            ):
                names.add(parts[0])
        return sorted(names)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Committed versions of ``name``, ascending; [] for a model never registered."""
        _check_name(name)
        return [self._read_version(name, v) for v in self._scan(name).committed]

    def find_by_training_key(self, name: str, key: str) -> ModelVersion | None:
        """The newest version whose ``metadata["training_key"] == key``, so a retrain of the same inputs is skipped."""
        _check_name(name)
        _check_text(key, "training key")
        for mv in reversed(self.list_versions(name)):
            if mv.metadata.get("training_key") == key:
                return mv
        return None

    # ---- aliases and the ledger --------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for every alias pointer of ``name``."""
        _check_name(name)
        base = join_key(self._model_key(name), "aliases") + "/"
        found = {}
        for info in self.store.list(base):
            filename = info.key[len(base):]
            alias = filename.removesuffix(".json")
            if filename.endswith(".json") and _NAME_RE.fullmatch(alias):
                version = self._read_alias(name, alias)
                if version is not None:
                    found[alias] = version
        return found

    def champion(self, name: str) -> ModelVersion | None:
        """The version the ``champion`` alias points to, or None when nothing was promoted yet."""
        _check_name(name)
        if self._read_alias(name, DEFAULT_ALIAS) is None:
            return None
        return self.get(name, alias=DEFAULT_ALIAS)

    def _ledger_keys(self, name: str) -> tuple[list[tuple[int, str]], list[str]]:
        """(seq, key) pairs in seq order, and keys under ledger/ that are not ledger entries."""
        base = self._ledger_prefix(name)
        entries, strays = [], []
        for info in self.store.list(base):
            match = _LEDGER_RE.fullmatch(info.key[len(base):])
            if match:
                entries.append((int(match[1]), info.key))
            else:
                strays.append(info.key)
        entries.sort()
        return entries, strays

    def ledger(self, name: str) -> list[dict[str, Any]]:
        """Every ledger entry of ``name``, oldest first."""
        _check_name(name)
        keys, _ = self._ledger_keys(name)
        return [self._read_json(key, "ledger entry") for _, key in keys]

    def _append(
        self,
        name: str,
        action: str,
        version: int,
        previous: int | None,
        reason: str,
        decision: dict[str, Any] | None,
        actor: str,
    ) -> dict[str, Any]:
        keys, _ = self._ledger_keys(name)
        seq = keys[-1][0] + 1 if keys else 1
        for _ in range(_MAX_LEDGER_BUMPS):
            key = self._ledger_prefix(name) + f"{seq:08d}.json"
            if not self.store.exists(key):
                break
            seq += 1  # the listing was stale or another writer got here first: never overwrite
        else:
            raise RegistryError(f"cannot append to the ledger of {name!r}: {_MAX_LEDGER_BUMPS} sequence numbers taken")
        entry = {
            "seq": seq,
            "at": self._now(),
            "action": action,
            "version": version,
            "previous": previous,
            "reason": reason,
            "decision": None if decision is None else copy.deepcopy(dict(decision)),
            "actor": actor,
        }
        self.store.put(key, _dump(entry))
        return entry

    @staticmethod
    def _champion_history(entries: list[dict[str, Any]], pointer: int | None) -> list[int]:
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

    def _champion_state(self, name: str) -> tuple[list[dict[str, Any]], list[int], int | None]:
        entries = self.ledger(name)
        pointer = self._read_alias(name, DEFAULT_ALIAS)
        return entries, self._champion_history(entries, pointer), pointer

    def _roll_forward(self, name: str, history: list[int], pointer: int | None) -> int | None:
        """Finish an interrupted promote/rollback: make the pointer match the ledger; return the champion."""
        top = history[-1] if history else None
        if top is not None and top != pointer:
            self._write_alias(name, DEFAULT_ALIAS, top)
        return top

    def _check_decision(self, decision: dict[str, Any] | None) -> None:
        if decision is None:
            return
        if not isinstance(decision, dict):
            raise RegistryError(f"decision must be a dict or None, got {type(decision).__name__}")
        problem = _json_problem(decision, "decision")
        if problem:
            raise RegistryError(problem)

    def promote(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        decision: dict[str, Any] | None = None,
        actor: str = "spira",
    ) -> None:
        """Make ``version`` the champion: ledger entry first, alias pointer last.

        Promoting the current champion again is a no-op, so a retried flow does not
        add a second entry.
        """
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        self._check_decision(decision)
        self.get(name, version=version)
        _, history, pointer = self._champion_state(name)
        current = self._roll_forward(name, history, pointer)
        if current == version:
            return
        self._append(name, "promote", version, current, reason, decision, actor)
        self._write_alias(name, DEFAULT_ALIAS, version)

    def record_rejection(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        decision: dict[str, Any] | None = None,
        actor: str = "spira",
    ) -> None:
        """Record that ``version`` was not promoted (ledger only; no pointer moves)."""
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        self._check_decision(decision)
        self.get(name, version=version)
        self._append(name, "reject", version, self._read_alias(name, DEFAULT_ALIAS), reason, decision, actor)

    def rollback(self, name: str, *, reason: str = "manual rollback", actor: str = "spira") -> ModelVersion:
        """Point the champion back at the version that was champion before the current one.

        Repeated calls keep walking back through the promotion history. If the
        previous rollback was recorded but its pointer write was lost, this call
        finishes that rollback instead of going back a second step.
        """
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        self._committed_or_raise(_check_name(name))
        entries, history, pointer = self._champion_state(name)
        if not history:
            raise RegistryError(f"cannot roll back model {name!r}: it has no champion yet")
        top = history[-1]
        moves = [e for e in entries if e.get("action") in ("promote", "rollback")]
        if pointer != top and moves and moves[-1].get("action") == "rollback" and moves[-1].get("version") == top:
            self._write_alias(name, DEFAULT_ALIAS, top)
            return self.get(name, version=top)
        self._roll_forward(name, history, pointer)
        if len(history) < 2:
            raise RegistryError(
                f"cannot roll back model {name!r}: version {top} is the only champion left in its history, "
                "there is nothing earlier to roll back to"
            )
        target = history[-2]
        mv = self.get(name, version=target)
        self._append(name, "rollback", target, top, reason, None, actor)
        self._write_alias(name, DEFAULT_ALIAS, target)
        return mv

    # ---- consistency check ------------------------------------------------

    def fsck(self, name: str) -> list[str]:
        """Human-readable problems in ``name``'s stored state; [] when it is consistent.

        Checks: version folders without a marker, unreadable markers, missing,
        unlisted or tampered artifacts, aliases to missing versions, unreadable
        ledger entries, versions without a register entry, and a champion pointer
        that disagrees with the ledger. Reads every artifact (hashing costs I/O).
        """
        _check_name(name)
        if not any(True for _ in self.store.list(self._model_key(name) + "/")):
            raise RegistryError(f"unknown model {name!r}: nothing stored under {self._where(self._model_key(name))}")
        problems: list[str] = []
        scan = self._scan(name)
        problems += [f"unexpected object {self._where(k)}: not part of the registry layout" for k in scan.strays]
        committed = set()
        for number, files in sorted(scan.folders.items()):
            folder = self._where(self._version_key(name, number))
            if MARKER not in files:
                problems.append(
                    f"version folder {folder} has no {MARKER} ({len(files)} object(s)): an interrupted register; "
                    "it is invisible and safe to delete"
                )
                continue
            try:
                mv = self._read_version(name, number)
            except RegistryError as exc:
                problems.append(str(exc))
                continue
            committed.add(number)
            for filename in sorted(mv.artifacts):
                try:
                    self.load_artifact(mv, filename)
                except RegistryError as exc:
                    problems.append(str(exc))
            for filename in sorted(set(files) - set(mv.artifacts) - {MARKER}):
                problems.append(f"{folder}/{filename} is not listed in {MARKER}")

        alias_base = join_key(self._model_key(name), "aliases") + "/"
        pointer = None
        for info in self.store.list(alias_base):
            alias = info.key[len(alias_base):].removesuffix(".json")
            if not info.key.endswith(".json") or not _NAME_RE.fullmatch(alias):
                problems.append(f"unexpected object {self._where(info.key)}: not an alias pointer")
                continue
            try:
                version = self._read_alias(name, alias)
            except RegistryError as exc:
                problems.append(str(exc))
                continue
            if alias == DEFAULT_ALIAS:
                pointer = version
            if version not in committed:
                problems.append(f"alias {alias!r} of model {name!r} points to version {version}, which is not committed")

        keys, strays = self._ledger_keys(name)
        problems += [f"unexpected object {self._where(k)}: not a ledger entry" for k in strays]
        entries, registered = [], set()
        for seq, key in keys:
            try:
                entry = self._read_json(key, "ledger entry")
            except RegistryError as exc:
                problems.append(str(exc))
                continue
            if entry.get("seq") != seq:
                problems.append(f"ledger entry {self._where(key)} records seq {entry.get('seq')!r}, not {seq}")
            if entry.get("action") not in ACTIONS:
                problems.append(f"ledger entry {self._where(key)} has unknown action {entry.get('action')!r}")
            elif entry.get("version") not in committed:
                problems.append(
                    f"ledger entry {self._where(key)} ({entry['action']}) names version {entry.get('version')!r}, "
                    "which is not committed"
                )
            if entry.get("action") == "register":
                registered.add(entry.get("version"))
            entries.append(entry)
        for number in sorted(committed - registered):
            problems.append(f"version {number} of model {name!r} has no 'register' entry in the ledger")
        history = self._champion_history(entries, pointer)
        if history and history[-1] != pointer:
            problems.append(
                f"champion pointer of model {name!r} says version {pointer}, but the ledger says {history[-1]}: "
                "an interrupted promote/rollback (the next promote or rollback finishes it)"
            )
        return problems

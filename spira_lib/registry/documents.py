"""The registry's stored documents, its key layout, and the rules for names.

Layout under ``<prefix>`` (default ``models``) of any ObjectStore::

    <prefix>/<name>/versions/<NNNN>/<artifact>     artifact bytes (model.pt, model_card.md, report.json, ...)
    <prefix>/<name>/versions/<NNNN>/version.json   commit marker, written LAST (VersionDoc)
    <prefix>/<name>/aliases/<alias>.json           AliasDoc
    <prefix>/<name>/ledger/<seq:08d>.json          LedgerEntry, one NEW object per action, never rewritten

Every document is validated with a pydantic model on read, so a damaged or
hand-edited object fails with a message naming the object and the field.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spira_lib.ports import join_key

MARKER = "version.json"
DEFAULT_ALIAS = "champion"
ACTIONS = ("register", "promote", "reject", "hold", "rollback")
CHALLENGER_ALIAS = "challenger"

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
DIGITS_RE = re.compile(r"[0-9]+")
LEDGER_RE = re.compile(r"([0-9]{8,})\.json")
REF_RE = re.compile(r"(?P<name>[^@:]*)(?:@(?P<alias>[^@:]*)|:(?P<version>[^@:]*))?")
NAME_RULE = "use 1-100 lowercase letters, digits, '-' or '_', starting with a letter or digit"
_ARTIFACT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class RegistryError(Exception):
    """A registry request cannot be served: unknown model/version/alias, bad input, or bad stored state."""


class IntegrityError(RegistryError):
    """A stored artifact does not match the sha256/size recorded in its version marker."""


# --------------------------------------------------------------------------- documents


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ArtifactEntry(_Doc):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, strict=True)


class VersionDoc(_Doc):
    """``version.json``: the commit marker of one version."""

    name: str
    version: int = Field(ge=1, strict=True)
    created_at: str
    artifacts: dict[str, ArtifactEntry] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AliasDoc(_Doc):
    alias: str
    version: int = Field(ge=1, strict=True)
    updated_at: str | None = None


class LedgerEntry(_Doc):
    seq: int = Field(ge=1, strict=True)
    at: str
    action: Literal["register", "promote", "reject", "hold", "rollback"]
    version: int = Field(strict=True)
    previous: int | None = None
    reason: str
    decision: dict[str, Any] | None = None
    actor: str


def load_object(raw: bytes, what: str, where: str) -> dict[str, Any]:
    """Parse stored bytes as a JSON object; RegistryError names the object otherwise."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{what} {where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} {where} must hold a JSON object, found {type(doc).__name__}")
    return doc


def validate_doc(model: type[_Doc], doc: dict[str, Any], what: str, where: str) -> Any:
    """``doc`` as ``model``; RegistryError names the object and the failing field."""
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise RegistryError(f"{what} {where}: field '{loc}': {first['msg']} (got {first.get('input')!r})") from None


def dump(doc: Mapping[str, Any] | BaseModel) -> bytes:
    """Stored form of a document: sorted, indented, strict JSON (no NaN)."""
    data = doc.model_dump(mode="json") if isinstance(doc, BaseModel) else doc
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


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

    @classmethod
    def from_doc(cls, doc: VersionDoc, uri: str) -> "ModelVersion":
        data = doc.model_dump(mode="json")
        return cls(doc.name, doc.version, doc.created_at, data["artifacts"], data["metadata"], uri)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "artifacts": copy.deepcopy(self.artifacts),
            "metadata": copy.deepcopy(self.metadata),
            "uri": self.uri,
        }


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where each object of a model lives under the registry prefix."""

    prefix: str = "models"

    def model(self, name: str) -> str:
        return join_key(self.prefix, name)

    def versions(self, name: str) -> str:
        return join_key(self.model(name), "versions") + "/"

    def version(self, name: str, version: int) -> str:
        return join_key(self.model(name), "versions", f"{version:04d}")

    def marker(self, name: str, version: int) -> str:
        return join_key(self.version(name, version), MARKER)

    def aliases(self, name: str) -> str:
        return join_key(self.model(name), "aliases") + "/"

    def alias(self, name: str, alias: str) -> str:
        return join_key(self.model(name), "aliases", f"{alias}.json")

    def ledger(self, name: str) -> str:
        return join_key(self.model(name), "ledger") + "/"

    def ledger_entry(self, name: str, seq: int) -> str:
        return self.ledger(name) + f"{seq:08d}.json"


# --------------------------------------------------------------------------- input rules


def check_name(value: object, what: str = "model name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise RegistryError(f"invalid {what} {value!r}: {NAME_RULE}")
    return value


def check_artifact_name(value: object) -> str:
    if not isinstance(value, str) or not _ARTIFACT_RE.fullmatch(value) or ".." in value:
        raise RegistryError(
            f"invalid artifact filename {value!r}: use a plain file name (letters, digits, '.', '-', '_'; no '/' or '..')"
        )
    if value == MARKER:
        raise RegistryError(f"invalid artifact filename {value!r}: {MARKER} is reserved for the commit marker")
    return value


def check_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"invalid version {value!r}: versions are integers starting at 1")
    return value


def check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{what} must be a non-empty string, got {value!r}")
    return value


def json_problem(value: Any, path: str) -> str | None:
    """Why ``value`` would not survive a strict JSON round trip, naming the offending path; None if it would."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        # NaN/Infinity are not JSON; other readers (S3 consoles, jq, JS dashboards) reject them.
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot represent"
    if isinstance(value, (list, tuple)):
        return next((p for i, item in enumerate(value) if (p := json_problem(item, f"{path}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = json_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON-serializable (convert it to int/float/str/list/dict)"


def check_json(value: Any, path: str, *, required_type: type | None = None) -> None:
    if required_type is not None and not isinstance(value, required_type):
        raise RegistryError(f"{path} must be a {required_type.__name__}, got {type(value).__name__}")
    problem = json_problem(value, path)
    if problem:
        raise RegistryError(problem)

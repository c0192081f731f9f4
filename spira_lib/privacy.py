"""Pseudonymous ids for patient-related names (file paths, speaker ids) in anything people read.

SPIRA's recordings are health data (Brazil's LGPD). Logs, Prefect artifacts and
reports are read by more people than the raw bucket, so they show ``p-`` plus a
keyed hash (HMAC-SHA256) of the name instead of the name itself. The key lives
outside the repository: ``SPIRA_PSEUDONYM_KEY`` in the environment, else a
random key created once in the registry's own storage (readable only by whoever
can read the data). The same name always gets the same id under one key, so a
data owner can still find a file: ``spira pseudonym NAME`` prints its id.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from spira_lib.ports import ObjectNotFound, ObjectStore

KEY_OBJECT = "privacy/pseudonym.key"
KEY_ENV = "SPIRA_PSEUDONYM_KEY"


@dataclass(frozen=True)
class Pseudonymizer:
    key: bytes
    show_raw: bool = False  # local debugging only: raw names in logs and reports

    def __call__(self, name: str | None) -> str | None:
        if name is None or self.show_raw:
            return name
        return "p-" + hmac.new(self.key, str(name).encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def key_from(store: ObjectStore, env_value: str | None) -> bytes:
    """The pseudonym key: the environment's, else the one stored with the registry (created on first use)."""
    if env_value:
        return env_value.encode("utf-8")
    try:
        return store.get(KEY_OBJECT)
    except ObjectNotFound:
        key = secrets.token_hex(32).encode("ascii")
        store.put(KEY_OBJECT, key)
        return key


@dataclass(frozen=True)
class Redactor:
    """Replaces known names (file keys, speaker ids) in free text by their pseudonyms, longest first,
    so a reason like "duplicate of audio/ana.wav" reads "duplicate of p-3f2a..." in a report."""

    pseudonym: Pseudonymizer
    names: tuple[str, ...] = ()

    @classmethod
    def of(cls, pseudonym: Pseudonymizer, names) -> "Redactor":
        unique = {n for n in names if isinstance(n, str) and n.strip()}
        return cls(pseudonym, tuple(sorted(unique, key=lambda n: (-len(n), n))))

    def __call__(self, text: str | None) -> str | None:
        if text is None or self.pseudonym.show_raw:
            return text
        for name in self.names:
            if name in text:
                text = text.replace(name, self.pseudonym(name))
        return text

    def rows(self, rows: list[dict], name_fields: tuple[str, ...] = ("file",)) -> list[dict]:
        """Rows for people: name fields pseudonymised, every other text field redacted."""
        out = []
        for row in rows:
            out.append({k: self.pseudonym(v) if k in name_fields else self(v) if isinstance(v, str) else v for k, v in row.items()})
        return out

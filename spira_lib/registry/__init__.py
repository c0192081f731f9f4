"""Model registry over the ObjectStore port: immutable numbered versions, aliases, a ledger.

``documents`` holds the stored document models and the key layout, ``ledger``
the aliases and the champion history, ``registry`` the versions, ``claims``
the safe concurrent write path (conditional creates, version claims with a
lease), and ``verify`` the consistency check.
"""
from spira_lib.registry.documents import (
    ACTIONS,
    CHALLENGER_ALIAS,
    DEFAULT_ALIAS,
    MARKER,
    IntegrityError,
    ModelVersion,
    RegistryError,
)
from spira_lib.registry.registry import ModelRegistry

__all__ = ["ACTIONS", "CHALLENGER_ALIAS", "DEFAULT_ALIAS", "MARKER", "IntegrityError", "ModelRegistry", "ModelVersion", "RegistryError"]

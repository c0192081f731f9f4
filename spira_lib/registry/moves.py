"""Alias moves of a registry: promote, reject, hold, rollback, and the aliases other than the champion.

Every champion move is a ledger entry first and the alias pointer second (see
``ledger``), so an interrupted move is finished by the next one. Mixed into
``ModelRegistry``, which supplies ``get``, ``_committed_or_raise`` and ``_ledger``.
"""
from __future__ import annotations

from typing import Any

from spira_lib.registry.documents import (
    CHALLENGER_ALIAS,
    DEFAULT_ALIAS,
    ModelVersion,
    RegistryError,
    check_json,
    check_name,
    check_text,
)


class AliasMoves:
    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for every alias pointer of ``name``."""
        return self._ledger.aliases(check_name(name))

    def champion(self, name: str) -> ModelVersion | None:
        """The version the ``champion`` alias points to, or None when nothing was promoted yet."""
        if self._ledger.read_alias(check_name(name), DEFAULT_ALIAS) is None:
            return None
        return self.get(name, alias=DEFAULT_ALIAS)

    def ledger(self, name: str) -> list[dict[str, Any]]:
        """Every ledger entry of ``name``, oldest first."""
        return self._ledger.entries(check_name(name))

    def _check_action(self, name: str, version: int, reason: str, actor: str, decision: dict | None) -> None:
        check_text(reason, "reason")
        check_text(actor, "actor")
        if decision is not None:
            check_json(decision, "decision", required_type=dict)
        self.get(name, version=version)

    def promote(self, name: str, version: int, *, reason: str, decision: dict[str, Any] | None = None, actor: str = "spira") -> None:
        """Make ``version`` the champion: ledger entry first, then the pointer settles on the ledger.

        Promoting the current champion again is a no-op, so a retried flow does not add a second entry.
        With concurrent promotions, the entry appended last wins, and the pointer ends there.
        """
        self._check_action(name, version, reason, actor, decision)
        _, history, pointer = self._ledger.champion_state(name)
        current = self._ledger.roll_forward(name, history, pointer)
        if current == version:
            return
        self._ledger.append(name, "promote", version, current, reason, decision, actor)
        self._ledger.settle(name)

    def record_rejection(self, name: str, version: int, *, reason: str, decision: dict[str, Any] | None = None, actor: str = "spira") -> None:
        """Record that ``version`` was not promoted (ledger only; no pointer moves)."""
        self._check_action(name, version, reason, actor, decision)
        self._ledger.append(name, "reject", version, self._ledger.read_alias(name, DEFAULT_ALIAS), reason, decision, actor)

    def hold(self, name: str, version: int, *, reason: str, decision: dict[str, Any] | None = None, actor: str = "spira") -> None:
        """The gate passed ``version`` but it waits for shadow evidence: ledger entry, and it becomes the challenger."""
        self._check_action(name, version, reason, actor, decision)
        self._ledger.append(name, "hold", version, self._ledger.read_alias(name, DEFAULT_ALIAS), reason, decision, actor)
        self.set_alias(name, CHALLENGER_ALIAS, version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point a non-champion alias (e.g. ``challenger``) at a committed version; the champion moves only by
        promote/rollback, which keep the ledger."""
        check_name(alias, "alias")
        if alias == DEFAULT_ALIAS:
            raise RegistryError(f"the {DEFAULT_ALIAS!r} alias moves only through promote or rollback")
        self.get(name, version=version)
        self._ledger.write_alias(name, alias, version)

    def rollback(self, name: str, *, reason: str = "manual rollback", actor: str = "spira") -> ModelVersion:
        """Point the champion back at the version that was champion before the current one.

        Repeated calls keep walking back through the promotion history. If the
        previous rollback was recorded but its pointer write was lost, this call
        finishes that rollback instead of going back a second step.
        """
        check_text(reason, "reason")
        check_text(actor, "actor")
        self._committed_or_raise(check_name(name))
        entries, history, pointer = self._ledger.champion_state(name)
        if not history:
            raise RegistryError(f"cannot roll back model {name!r}: it has no champion yet")
        top = history[-1]
        moves = [e for e in entries if e.get("action") in ("promote", "rollback")]
        if pointer != top and moves and moves[-1].get("action") == "rollback" and moves[-1].get("version") == top:
            self._ledger.settle(name)
            return self.get(name, version=top)
        self._ledger.roll_forward(name, history, pointer)
        if len(history) < 2:
            raise RegistryError(
                f"cannot roll back model {name!r}: version {top} is the only champion left in its history, "
                "there is nothing earlier to roll back to"
            )
        target = history[-2]
        mv = self.get(name, version=target)
        self._ledger.append(name, "rollback", target, top, reason, None, actor)
        self._ledger.settle(name)
        return mv


"""Champion/challenger promotion gate.

A freshly trained model (the challenger) replaces the production model (the
champion) only when every check passes:

* floors: ROC-AUC and balanced accuracy above absolute minimums, so even the
  very first model must be useful before it is promoted;
* slices: no sex / age band / hospital with enough files falls below
  ``slice_floor`` (a model can look fine on average and fail one group);
* shortcut: accuracy may not collapse once ward noise is added to controls,
  which would mean the model detects the recording room, not the patient;
* champion (non-inferiority): the lower end of the paired-bootstrap interval
  of AUC(challenger) - AUC(champion), both scored on the same test clips, is
  above ``-auc_margin``. The point estimate alone would let a noisy small test
  set wave through a model that may well be worse.

A check that cannot be judged on this data (no slice with enough files) says
so as ``not evaluated``: it does not block a promotion, and the report shows it
apart from the checks that passed.

The inputs are the JSON reports of :func:`spira_lib.metrics.evaluate_predictions`
and :func:`spira_lib.metrics.paired_auc_difference`. They may come back from
storage incomplete, so a missing or None value fails its check with a reason;
``decide`` never raises on missing keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spira_lib.config import GateConfig

# Rounding noise (e.g. 0.9 - 0.8 = 0.10000000000000009) must not flip a check
# that sits exactly on its threshold.
_EPS = 1e-9


PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not evaluated"


@dataclass(frozen=True)
class Check:
    """One rule's outcome; ``detail`` is a full sentence for humans.

    ``passed`` is False only for a failed check; ``status`` tells a passed
    check from one that could not be evaluated on this data.
    """

    name: str
    passed: bool
    detail: str
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", PASS if self.passed else FAIL)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Decision:
    """Whether to promote the challenger, and why."""

    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def headline(self) -> str:
        """One line for logs, state messages and UI titles."""
        if self.promote:
            skipped = [c.name for c in self.checks if c.status == NOT_EVALUATED]
            note = f" ({', '.join(skipped)} not evaluated)" if skipped else ""
            return f"promote: all {len(self.checks) - len(skipped)} evaluated checks passed{note}"
        names = ", ".join(c.name for c in self.failed)
        return f"reject: {len(self.failed)} of {len(self.checks)} checks failed ({names})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decision":
        """Inverse of to_dict; errors name the offending field."""
        if not isinstance(data, dict):
            raise ValueError(f"decision must be a mapping, got {type(data).__name__}")
        if not isinstance(data.get("promote"), bool):
            raise ValueError(f"decision field 'promote' must be true/false (got {data.get('promote')!r})")
        checks = []
        for i, raw in enumerate(data.get("checks") or []):
            try:
                checks.append(Check(str(raw["name"]), bool(raw["passed"]), str(raw["detail"]), str(raw.get("status") or "")))
            except (KeyError, TypeError):
                raise ValueError(
                    f"decision field 'checks[{i}]' must have name, passed and detail (got {raw!r})"
                ) from None
        reasons = data.get("reasons") or []
        if not isinstance(reasons, list):
            raise ValueError(f"decision field 'reasons' must be a list (got {type(reasons).__name__})")
        return cls(promote=data["promote"], reasons=[str(r) for r in reasons], checks=checks)


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    """A finite float, or None for missing/None/NaN/non-numeric values."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def _metric(report: dict | None, key: str) -> float | None:
    if not isinstance(report, dict):
        return None
    metrics = report.get("metrics")
    return _num(metrics.get(key)) if isinstance(metrics, dict) else None


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _pct(value: Any) -> str:
    number = _num(value)
    return f"{number:.0%}" if number is not None else "bootstrap"


# --------------------------------------------------------------------------- checks


def _floor_check(name: str, label: str, value: float | None, floor: float) -> Check:
    if value is None:
        return Check(
            name, False, f"{label} is missing from the challenger report, so the floor {floor:.3f} cannot be verified."
        )
    if value + _EPS >= floor:
        return Check(name, True, f"{label} {value:.3f} meets the floor {floor:.3f}.")
    return Check(name, False, f"{label} {value:.3f} is below the floor {floor:.3f}.")


def _slice_check(report: dict, floor: float, min_slice_size: int) -> Check:
    name = "slices"
    slices = report.get("slices")
    if not isinstance(slices, list):
        return Check(name, False, "Slice metrics are missing from the challenger report, so no slice could be checked.")
    failing: list[str] = []
    checked = 0
    for s in slices:
        if not isinstance(s, dict):
            continue
        n = s.get("n")
        if not isinstance(n, int) or n < min_slice_size:
            continue
        label = f"{s.get('slice', '?')}={s.get('value', '?')} (n={n})"
        # A single-class slice (e.g. a hospital with only patients) has no
        # balanced accuracy; plain accuracy is then the same thing per class.
        value = _num(s.get("balanced_accuracy"))
        metric = "balanced accuracy"
        if value is None:
            value = _num(s.get("accuracy"))
            metric = "accuracy"
        checked += 1
        if value is None:
            failing.append(f"{label} has no accuracy")
        elif value + _EPS < floor:
            failing.append(f"{label} {metric} {value:.3f}")
    if failing:
        return Check(
            name,
            False,
            f"{len(failing)} slice(s) with at least {min_slice_size} files fall below the floor {floor:.3f}: "
            + "; ".join(failing)
            + ".",
        )
    if checked == 0:
        return Check(
            name, True, f"Not evaluated: no slice has at least {min_slice_size} files, so no slice could be checked "
            f"against the floor {floor:.3f}.", NOT_EVALUATED,
        )
    return Check(
        name, True, f"All {checked} slice(s) with at least {min_slice_size} files meet the floor {floor:.3f}."
    )


def _shortcut_check(report: dict, max_drop: float) -> Check:
    name = "shortcut"
    shortcut = report.get("shortcut")
    # The shortcut section is the record that the check ran; metrics only copy
    # its accuracy, so a report without the section has not been checked.
    noisy = _num(shortcut.get("shortcut_accuracy")) if isinstance(shortcut, dict) else None
    if isinstance(shortcut, dict) and noisy is None:
        noisy = _metric(report, "shortcut_accuracy")
    if noisy is None:
        return Check(
            name,
            False,
            "The shortcut check (ward noise added to controls only) was not run or has no accuracy, "
            "so the model may be detecting noisy wards rather than patients.",
        )
    clean = _num(shortcut.get("clean_accuracy"))
    if clean is None:
        clean = _metric(report, "accuracy")
    if clean is None:
        return Check(name, False, "Clean accuracy is missing, so the shortcut drop cannot be computed.")
    drop = clean - noisy
    text = (
        f"accuracy drops from {clean:.3f} (clean) to {noisy:.3f} with ward noise on controls "
        f"(drop {drop:.3f}, allowed {max_drop:.3f})"
    )
    if drop <= max_drop + _EPS:
        return Check(name, True, f"Shortcut check passed: {text}.")
    return Check(name, False, f"Shortcut check failed: {text}; the model likely treats noise as a patient sign.")


def _champion_check(
    challenger: dict, champion: dict | None, paired: dict | None, margin: float
) -> Check:
    name = "champion"
    if champion is None:
        return Check(name, True, "No champion exists yet, so the challenger is judged by the absolute checks only.")
    if not isinstance(champion, dict):
        kind = type(champion).__name__
        return Check(name, False, f"The champion report is not a mapping ({kind}), so it cannot be compared.")
    if not isinstance(paired, dict):
        return Check(
            name,
            False,
            "A champion exists but no paired AUC comparison was supplied, so the challenger cannot be compared.",
        )
    n_new, n_old = _metric(challenger, "n_files"), _metric(champion, "n_files")
    if n_new is not None and n_old is not None and n_new != n_old:
        return Check(
            name,
            False,
            f"Challenger ({int(n_new)} files) and champion ({int(n_old)} files) "
            "were not evaluated on the same test clips.",
        )
    auc_new = _metric(challenger, "roc_auc")
    auc_old = _metric(champion, "roc_auc")
    if auc_new is None:
        auc_new = _num(paired.get("auc_new"))
    if auc_old is None:
        auc_old = _num(paired.get("auc_old"))
    diff = _num(paired.get("diff"))
    lo, hi = _num(paired.get("lo")), _num(paired.get("hi"))
    if diff is None or lo is None:
        return Check(
            name,
            False,
            "The paired AUC difference against the champion, or its bootstrap interval, is missing, "
            "so non-inferiority cannot be shown.",
        )
    interval = f"[{_signed(lo)}, {_signed(hi)}]" if hi is not None else f"[{_signed(lo)}, n/a]"
    text = (
        f"AUC difference (challenger - champion) {_signed(diff)}, {_pct(paired.get('confidence'))} interval {interval}; "
        f"challenger AUC {_f(auc_new)}, champion AUC {_f(auc_old)}"
    )
    if lo + _EPS >= -margin:
        return Check(name, True, f"{text}: the interval's lower end is within the allowed margin of {margin:.3f}.")
    return Check(
        name, False, f"{text}: the challenger may be worse than the champion by more than the margin of {margin:.3f} "
        "(the interval's lower end is below it).",
    )


def decide(
    challenger: dict,
    champion: dict | None,
    paired: dict | None,
    cfg: GateConfig,
    *,
    min_slice_size: int = 5,
) -> Decision:
    """Apply every gate rule and return the decision with all checks' outcomes.

    ``challenger`` and ``champion`` are evaluate_predictions reports on the
    same test clips; ``paired`` is paired_auc_difference(challenger, champion).
    ``reasons`` lists every check's sentence, failing ones first.
    """
    report = challenger if isinstance(challenger, dict) else {}
    checks = [
        _floor_check("min_roc_auc", "ROC-AUC", _metric(report, "roc_auc"), cfg.min_roc_auc),
        _floor_check(
            "min_balanced_accuracy",
            "Balanced accuracy",
            _metric(report, "balanced_accuracy"),
            cfg.min_balanced_accuracy,
        ),
        _slice_check(report, cfg.slice_floor, min_slice_size),
        _shortcut_check(report, cfg.max_shortcut_drop),
        _champion_check(report, champion, paired, cfg.auc_margin),
    ]
    ordered = [c for c in checks if not c.passed] + [c for c in checks if c.passed]
    return Decision(
        promote=all(c.passed for c in checks),
        reasons=[c.detail for c in ordered],
        checks=checks,
    )

"""Markdown and table renderings of evaluation reports (Prefect UI, model cards).

Pure functions over the JSON dicts produced by :mod:`spira_lib.metrics` and
:mod:`spira_lib.gate`: no I/O, no Prefect. Missing keys render as "n/a" rather
than raising, because a report that cannot be shown is worse than a report
with a hole in it. Every table cell goes through :func:`md_cell`, so a '|'
or a newline in a file name or reason cannot break the table layout.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import yaml


# Order and display names of the headline metrics.
METRIC_LABELS: dict[str, str] = {
    "roc_auc": "ROC-AUC",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1": "F1",
    "sensitivity": "Sensitivity (patients)",
    "specificity": "Specificity (controls)",
    "precision": "Precision",
    "shortcut_accuracy": "Accuracy, noisy controls",
}

SLICE_COLUMNS: tuple[str, ...] = (
    "roc_auc",
    "balanced_accuracy",
    "accuracy",
    "sensitivity",
    "specificity",
)

# A Prefect markdown artifact with thousands of rows is unreadable and slow.
MAX_QUARANTINE_ROWS = 50
MAX_HISTORY_ROWS = 40

NA = "n/a"


# --------------------------------------------------------------------------- markdown primitives


def md_cell(value: Any) -> str:
    """One table cell: floats to 3 decimals, None to n/a, '|' escaped, newlines flattened."""
    if value is None:
        text = NA
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = NA if value != value else f"{value:.3f}"
    else:
        text = str(value)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text.replace("|", "\\|") if text else " "


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table with a header separator."""
    lines = [
        "| " + " | ".join(md_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        cells = list(row) + [None] * (len(headers) - len(row))
        lines.append("| " + " | ".join(md_cell(c) for c in cells[: len(headers)]) + " |")
    return "\n".join(lines)


def _inline(value: Any) -> str:
    """A value inside a sentence or code span; pipes escaped like in tables."""
    return md_cell(value)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _round(value: Any, ndigits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, ndigits) if value == value else None
    return value


def _pct(value: Any) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else NA


# --------------------------------------------------------------------------- tables


def metrics_table(report: dict, champion_report: dict | None = None) -> list[dict[str, Any]]:
    """Rows ``{"metric", "challenger", "ci_low", "ci_high", "champion"}`` for a table artifact."""
    metrics = _get(report, "metrics") or {}
    intervals = _get(report, "intervals") or {}
    champ = _get(champion_report, "metrics") or {}
    rows = []
    for key in METRIC_LABELS:
        interval = intervals.get(key) if isinstance(intervals, dict) else None
        lo, hi = (None, None)
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            lo, hi = interval
        rows.append(
            {
                "metric": key,
                "challenger": _round(metrics.get(key)),
                "ci_low": _round(lo),
                "ci_high": _round(hi),
                "champion": _round(champ.get(key)) if champion_report is not None else None,
            }
        )
    return rows


def slices_table(report: dict) -> list[dict[str, Any]]:
    """Rows ``{"slice", "value", "n", "small", <SLICE_COLUMNS>...}`` for a table artifact."""
    rows = []
    for s in _get(report, "slices") or []:
        if not isinstance(s, dict):
            continue
        row = {"slice": s.get("slice"), "value": s.get("value"), "n": s.get("n"), "small": s.get("small")}
        for key in SLICE_COLUMNS:
            row[key] = _round(s.get(key))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- sections


def _metrics_section(report: dict, champion_report: dict | None = None) -> str:
    conf = report.get("confidence") if isinstance(report, dict) else None
    n_boot = report.get("bootstrap_samples") if isinstance(report, dict) else None
    headers = ["Metric", "Value", f"CI low ({_pct(conf)})", f"CI high ({_pct(conf)})"]
    if champion_report is not None:
        headers = ["Metric", "Challenger", "CI low", "CI high", "Champion"]
    rows = []
    for r in metrics_table(report, champion_report):
        row = [METRIC_LABELS[r["metric"]], r["challenger"], r["ci_low"], r["ci_high"]]
        if champion_report is not None:
            row.append(r["champion"])
        rows.append(row)
    m = _get(report, "metrics") or {}
    parts = [
        md_table(headers, rows),
        "",
        f"Threshold {md_cell(_get(report, 'threshold'))}; {md_cell(m.get('n_files'))} files "
        f"({md_cell(m.get('n_positive'))} patients, {md_cell(m.get('n_negative'))} controls).",
    ]
    if n_boot:
        parts.append("")
        parts.append(
            f"Intervals: {_pct(conf)} percentile bootstrap over {n_boot} class-stratified resamples of the test files."
        )
    else:
        parts += ["", "Intervals: not computed (bootstrap disabled)."]
    return "\n".join(parts)


def _slices_section(report: dict) -> str:
    rows = slices_table(report)
    if not rows:
        return "No slice attributes (sex, age, hospital) were available for the test files."
    headers = ["Slice", "Value", "Files", "Small", "ROC-AUC", "Balanced acc.", "Accuracy", "Sensitivity", "Specificity"]
    body = [[r["slice"], r["value"], r["n"], r["small"], *(r[k] for k in SLICE_COLUMNS)] for r in rows]
    note = "Slices marked small have too few files for their metrics to be trusted; the gate ignores them."
    return md_table(headers, body) + "\n\n" + note


def _confusion_section(report: dict) -> str:
    c = _get(report, "metrics", "confusion") or {}
    return md_table(
        ["", "Predicted control", "Predicted patient"],
        [
            ["Actual control", c.get("tn"), c.get("fp")],
            ["Actual patient", c.get("fn"), c.get("tp")],
        ],
    )


def _shortcut_section(report: dict) -> str:
    s = _get(report, "shortcut")
    intro = (
        "Patients were recorded in noisy hospital wards, controls mostly elsewhere, so a model can learn "
        "\"noise means patient\". The same test clips are scored again with ward noise mixed into the "
        "controls only; a large accuracy drop reveals the shortcut."
    )
    if not isinstance(s, dict):
        return intro + "\n\n**Not run**: the shortcut check result is missing, which the gate treats as a failure."
    table = md_table(
        ["Quantity", "Value"],
        [
            ["Clean accuracy", s.get("clean_accuracy")],
            ["Accuracy with noisy controls", s.get("shortcut_accuracy", _get(report, "metrics", "shortcut_accuracy"))],
            ["Drop", s.get("drop")],
            ["Control accuracy, clean", s.get("clean_control_accuracy")],
            ["Control accuracy, noisy", s.get("noisy_control_accuracy")],
            ["Controls", s.get("n_controls")],
        ],
    )
    return intro + "\n\n" + table


def _decision_section(decision: dict | None) -> str:
    if not isinstance(decision, dict):
        return "No promotion decision was made."
    promote = decision.get("promote")
    verdict = "PROMOTE" if promote is True else "REJECT"
    lines = [f"**{verdict}**", ""]
    checks = decision.get("checks") or []
    if checks:
        rows = [
            ["pass" if c.get("passed") else "FAIL", c.get("name"), c.get("detail")]
            for c in checks
            if isinstance(c, dict)
        ]
        # Failing checks first, matching the order of the reasons.
        rows.sort(key=lambda r: r[0] != "FAIL")
        lines.append(md_table(["Result", "Check", "Detail"], rows))
    else:
        for reason in decision.get("reasons") or []:
            lines.append(f"- {_inline(reason)}")
    return "\n".join(lines)


def _counts_section(snapshot: dict) -> str:
    counts = _get(snapshot, "counts") or {}
    parts = []
    for dim in ("class", "split", "sex", "hospital"):
        values = counts.get(dim) if isinstance(counts, dict) else None
        if not isinstance(values, dict) or not values:
            continue
        rows = sorted(values.items(), key=lambda kv: str(kv[0]))
        parts.append(f"**By {dim}**\n\n" + md_table([dim.capitalize(), "Clips"], rows))
    return "\n\n".join(parts)


def _snapshot_section(snapshot: dict) -> str:
    head = md_table(
        ["Field", "Value"],
        [
            ["Digest", _get(snapshot, "digest")],
            ["Clips", _get(snapshot, "n_clips")],
            ["Quarantined", _get(snapshot, "n_quarantined")],
        ],
    )
    counts = _counts_section(snapshot)
    return head + ("\n\n" + counts if counts else "")


def _quarantine_section(quarantine: list[dict]) -> str:
    if not quarantine:
        return "No files were quarantined."
    shown = quarantine[:MAX_QUARANTINE_ROWS]
    rows = [[q.get("file"), q.get("reason"), q.get("csv"), q.get("row")] for q in shown if isinstance(q, dict)]
    text = f"{len(quarantine)} file(s) were set aside and not used.\n\n"
    text += md_table(["File", "Reason", "CSV", "Row"], rows)
    extra = len(quarantine) - len(shown)
    if extra > 0:
        text += f"\n\n… and {extra} more not shown."
    return text


def _model_section(model: dict | None) -> str:
    if not isinstance(model, dict):
        return "No model was registered for this run."
    keys = ["name", "version", "alias", "uri", "sha256", "data_digest", "config_digest", "code_version"]
    return md_table(["Field", "Value"], [[k, model.get(k)] for k in keys])


def _join_sections(title: str, sections: list[tuple[str, str]], lead: str = "") -> str:
    out = [f"# {title}", ""]
    if lead:
        out += [lead, ""]
    for heading, body in sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- documents


def validation_report_markdown(
    *,
    snapshot: dict,
    quarantine: list[dict],
    report: dict,
    champion_report: dict | None,
    decision: dict,
    model: dict | None,
) -> str:
    """The validation report shown in the Prefect UI for one training run."""
    verdict = "PROMOTE" if _get(decision, "promote") is True else "REJECT"
    reasons = [r for r in (_get(decision, "reasons") or [])]
    lead = f"**Decision: {verdict}**" + (f" — {_inline(reasons[0])}" if reasons else "")
    sections: list[tuple[str, str]] = [
        ("Dataset snapshot", _snapshot_section(snapshot)),
        ("Quarantined files", _quarantine_section(list(quarantine or []))),
        ("Metrics", _metrics_section(report)),
        ("Slices", _slices_section(report)),
        ("Confusion matrix", _confusion_section(report)),
        ("Shortcut check", _shortcut_section(report)),
    ]
    if champion_report is not None:
        sections.append(("Champion vs challenger", _metrics_section(report, champion_report)))
    sections.append(("Decision", _decision_section(decision)))
    sections.append(("Model", _model_section(model)))
    return _join_sections("SPIRA validation report", sections, lead)


def _is_synthetic(snapshot: dict, config: dict, model: dict) -> bool:
    for source in (snapshot, config, model):
        if not isinstance(source, dict):
            continue
        if source.get("synthetic") is True:
            return True
        for key in ("source", "dataset", "data_uri", "uri"):
            value = source.get(key)
            if isinstance(value, str) and "synthetic" in value.lower():
                return True
    return False


def _training_section(training: dict, config: dict) -> str:
    arch = _get(config, "model", "arch") or "spiraconv_v2"
    rows = [
        ["Architecture", arch],
        ["Features", _features_text(config)],
        ["Input", _input_text(config)],
        ["Epochs run", _get(training, "epochs_run")],
        ["Best epoch", _get(training, "best_epoch")],
        ["Device", _get(training, "device")],
        ["Training time (s)", _get(training, "seconds")],
    ]
    text = md_table(["Field", "Value"], rows)
    history = _get(training, "history")
    if isinstance(history, list) and history:
        entries = [h for h in history if isinstance(h, dict)]
        columns: list[str] = []
        for h in entries:
            columns += [k for k in h if k not in columns]
        shown = entries[-MAX_HISTORY_ROWS:]
        text += "\n\n**History**\n\n" + md_table(columns, [[h.get(c) for c in columns] for h in shown])
        if len(entries) > len(shown):
            text += f"\n\nOnly the last {len(shown)} of {len(entries)} epochs are shown."
    return text


def _config_block(config: dict) -> str:
    try:
        text = yaml.safe_dump(config, sort_keys=True).rstrip()
        lang = "yaml"
    except yaml.YAMLError:
        # Non-YAML-safe values (paths, enums) still deserve a readable dump.
        text, lang = json.dumps(config, indent=2, sort_keys=True, default=str), "json"
    return f"```{lang}\n{text}\n```"


def _features_text(config: dict) -> str:
    f = _get(config, "features")
    if not isinstance(f, dict):
        return NA
    kind = f.get("kind", "mfcc")
    n = f.get("n_mfcc") if kind == "mfcc" else f.get("n_mels") if kind == "mel" else None
    parts = [f"{kind}{' ' + str(n) if n else ''}", f"{f.get('sample_rate')} Hz"]
    parts.append(f"n_fft {f.get('n_fft')}, hop {f.get('hop_length')}, win {f.get('win_length')}")
    return ", ".join(parts)


def _input_text(config: dict) -> str:
    m = _get(config, "model")
    if not isinstance(m, dict):
        return NA
    if m.get("mode") == "windowed":
        return f"{m.get('window_s')} s windows, {m.get('step_s')} s step, averaged per file"
    return f"whole file padded to {m.get('max_duration_s')} s"


def model_card_markdown(
    *,
    model: dict,
    report: dict,
    decision: dict | None,
    training: dict,
    snapshot: dict,
    config: dict,
) -> str:
    """A model card: intended use, data, metrics with intervals, slices, shortcut, limits, lineage.

    Synthetic data is flagged when the snapshot, config or model carries
    ``"synthetic": True`` or a source/dataset/uri string containing "synthetic".
    """
    name = _get(model, "name") or "spira"
    version = _get(model, "version")
    title = f"Model card: {name}" + (f" v{version}" if version is not None else "")
    synthetic = _is_synthetic(snapshot, config, model)

    intended = "\n".join(
        [
            "- **Purpose**: pre-diagnosis aid that flags possible respiratory insufficiency from a short "
            "Brazilian-Portuguese speech recording (class 1 = patient, 0 = control).",
            "- **Users**: clinical staff triaging patients, who confirm every flag with standard measurements "
            "(e.g. blood oxygen saturation).",
            "- **Not a diagnosis**: the output is a probability to prioritise examination; it must not be used "
            "to rule a patient in or out on its own.",
            "- **Out of scope**: other languages, populations not represented in the training data, and "
            "recordings far from the training conditions (devices, rooms, sentence read).",
        ]
    )

    data = _snapshot_section(snapshot)
    if synthetic:
        data = "**Synthetic demo data**: these numbers say nothing about clinical performance.\n\n" + data

    limitations = []
    if synthetic:
        limitations.append(
            "Trained and evaluated on synthetic demo data; the metrics only show that the pipeline works."
        )
    small = [s for s in (_get(report, "slices") or []) if isinstance(s, dict) and s.get("small")]
    if small:
        names = ", ".join(f"{s.get('slice')}={s.get('value')} (n={s.get('n')})" for s in small)
        limitations.append(f"Some slices are too small for reliable metrics: {names}.")
    n_files = _get(report, "metrics", "n_files")
    if isinstance(n_files, int) and n_files < 100:
        limitations.append(
            f"The test set has only {n_files} files, so the intervals are wide; read them, not the point values."
        )
    shortcut = _get(report, "shortcut")
    if not isinstance(shortcut, dict):
        limitations.append("The noise-shortcut check was not run; the model may react to background noise.")
    limitations.append(
        "Patients and controls were recorded in different environments; noise augmentation and the shortcut "
        "check reduce but cannot rule out environment cues."
    )
    limitations.append("The decision threshold is fixed; sensitivity and specificity trade off if it changes.")

    lineage_keys = ["name", "version", "alias", "uri", "sha256", "data_digest", "config_digest", "code_version"]
    lineage = md_table(["Field", "Value"], [[k, _get(model, k)] for k in lineage_keys])
    if _get(snapshot, "digest") is not None:
        lineage += f"\n\nDataset snapshot digest: `{_inline(_get(snapshot, 'digest'))}`."

    sections: list[tuple[str, str]] = [
        ("Intended use", intended),
        ("Model and training", _training_section(training, config)),
        ("Data", data),
        ("Metrics", _metrics_section(report)),
        ("Slices", _slices_section(report)),
        ("Confusion matrix", _confusion_section(report)),
        ("Shortcut check", _shortcut_section(report)),
    ]
    if decision is not None:
        sections.append(("Promotion decision", _decision_section(decision)))
    sections.append(("Limitations", "\n".join(f"- {_inline(x)}" for x in limitations)))
    sections.append(("Lineage", lineage))
    if isinstance(config, dict) and config:
        sections.append(("Configuration", _config_block(config)))
    return _join_sections(title, sections)

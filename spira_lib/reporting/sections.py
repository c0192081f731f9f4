"""Sections shared by the validation report and the model card (pure functions over report dicts)."""
from __future__ import annotations

from typing import Any

from spira_lib.reporting.markdown import get, inline, md_cell, md_table, pct
from spira_lib.reporting.tables import METRIC_LABELS, SLICE_COLUMNS, metrics_table, slices_table

# A Prefect markdown artifact with thousands of rows is unreadable and slow.
MAX_QUARANTINE_ROWS = 50


def metrics_section(report: dict, champion_report: dict | None = None) -> str:
    conf = report.get("confidence") if isinstance(report, dict) else None
    n_boot = report.get("bootstrap_samples") if isinstance(report, dict) else None
    headers = ["Metric", "Value", f"CI low ({pct(conf)})", f"CI high ({pct(conf)})"]
    if champion_report is not None:
        headers = ["Metric", "Challenger", "CI low", "CI high", "Champion"]
    rows = []
    for r in metrics_table(report, champion_report):
        row = [METRIC_LABELS[r["metric"]], r["challenger"], r["ci_low"], r["ci_high"]]
        if champion_report is not None:
            row.append(r["champion"])
        rows.append(row)
    m = get(report, "metrics") or {}
    parts = [
        md_table(headers, rows),
        "",
        f"Threshold {md_cell(get(report, 'threshold'))}; {md_cell(m.get('n_files'))} files "
        f"({md_cell(m.get('n_positive'))} patients, {md_cell(m.get('n_negative'))} controls).",
    ]
    if n_boot:
        parts.append("")
        parts.append(
            f"Intervals: {pct(conf)} percentile bootstrap over {n_boot} class-stratified resamples of the test files."
        )
    else:
        parts += ["", "Intervals: not computed (bootstrap disabled)."]
    return "\n".join(parts)


def slices_section(report: dict) -> str:
    rows = slices_table(report)
    if not rows:
        return "No slice attributes (sex, age, hospital) were available for the test files."
    headers = ["Slice", "Value", "Files", "Small", "ROC-AUC", "Balanced acc.", "Accuracy", "Sensitivity", "Specificity"]
    body = [[r["slice"], r["value"], r["n"], r["small"], *(r[k] for k in SLICE_COLUMNS)] for r in rows]
    note = "Slices marked small have too few files for their metrics to be trusted; the gate ignores them."
    return md_table(headers, body) + "\n\n" + note


def confusion_section(report: dict) -> str:
    c = get(report, "metrics", "confusion") or {}
    return md_table(
        ["", "Predicted control", "Predicted patient"],
        [
            ["Actual control", c.get("tn"), c.get("fp")],
            ["Actual patient", c.get("fn"), c.get("tp")],
        ],
    )


def shortcut_section(report: dict) -> str:
    s = get(report, "shortcut")
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
            ["Accuracy with noisy controls", s.get("shortcut_accuracy", get(report, "metrics", "shortcut_accuracy"))],
            ["Drop", s.get("drop")],
            ["Control accuracy, clean", s.get("clean_control_accuracy")],
            ["Control accuracy, noisy", s.get("noisy_control_accuracy")],
            ["Controls", s.get("n_controls")],
        ],
    )
    return intro + "\n\n" + table


def decision_section(decision: dict | None) -> str:
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
            lines.append(f"- {inline(reason)}")
    return "\n".join(lines)


def counts_section(snapshot: dict) -> str:
    counts = get(snapshot, "counts") or {}
    parts = []
    for dim in ("class", "split", "sex", "hospital"):
        values = counts.get(dim) if isinstance(counts, dict) else None
        if not isinstance(values, dict) or not values:
            continue
        rows = sorted(values.items(), key=lambda kv: str(kv[0]))
        parts.append(f"**By {dim}**\n\n" + md_table([dim.capitalize(), "Clips"], rows))
    return "\n\n".join(parts)


def snapshot_section(snapshot: dict) -> str:
    head = md_table(
        ["Field", "Value"],
        [
            ["Digest", get(snapshot, "digest")],
            ["Clips", get(snapshot, "n_clips")],
            ["Quarantined", get(snapshot, "n_quarantined")],
        ],
    )
    counts = counts_section(snapshot)
    return head + ("\n\n" + counts if counts else "")


def quarantine_section(quarantine: list[dict]) -> str:
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


def model_section(model: dict | None) -> str:
    if not isinstance(model, dict):
        return "No model was registered for this run."
    keys = ["name", "version", "alias", "uri", "sha256", "data_digest", "config_digest", "code_version"]
    return md_table(["Field", "Value"], [[k, model.get(k)] for k in keys])


def join_sections(title: str, sections: list[tuple[str, str]], lead: str = "") -> str:
    out = [f"# {title}", ""]
    if lead:
        out += [lead, ""]
    for heading, body in sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"

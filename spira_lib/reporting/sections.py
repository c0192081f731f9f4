"""Sections shared by the validation report and the model card (pure functions over report dicts)."""
from __future__ import annotations

from spira_lib.reporting.figures import confusion_figure, roc_figure, score_figure, slice_figure
from spira_lib.reporting.markdown import get, inline, md_cell, md_table, pct
from spira_lib.reporting.tables import METRIC_LABELS, SLICE_COLUMNS, metrics_table, slices_table

# How each check's outcome is shown; a failed check must stand out.
STATUS_LABELS = {"fail": "**FAIL**", "pass": "pass", "not evaluated": "*not evaluated*"}

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
        roc_figure(report, champion_report),
        "",
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


def slices_section(report: dict, floor: float | None = None) -> str:
    rows = slices_table(report)
    if not rows:
        return "No slice attributes (sex, age, hospital) were available for the test files."
    headers = ["Slice", "Value", "Files", "Small", "ROC-AUC", "Balanced acc.", "Accuracy", "Sensitivity", "Specificity"]
    body = [[r["slice"], r["value"], r["n"], r["small"], *(r[k] for k in SLICE_COLUMNS)] for r in rows]
    note = "Slices marked small have too few files for their metrics to be trusted; the gate ignores them."
    return slice_figure(report, floor) + "\n\n" + md_table(headers, body) + "\n\n" + note


def scores_section(report: dict) -> str:
    figure = score_figure(report)
    if not figure:
        return "Score distributions were not recorded for this report."
    return figure + "\n\nHow the predicted probabilities of controls and patients are spread: the less they overlap, the better the model separates them at any threshold."


def confusion_section(report: dict) -> str:
    c = get(report, "metrics", "confusion") or {}
    return confusion_figure(report) + "\n\n" + md_table(
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
    noise = s.get("noise_files")
    source = (
        f"The noise came from {len(noise)} recording(s) held out from training augmentation "
        f"({', '.join(noise)}), so the model had never heard it."
        if isinstance(noise, list) and noise and s.get("noise_held_out")
        else "The noise came from the same recordings that training augmentation used."
        if isinstance(noise, list) and noise else ""
    )
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
    figure = score_figure(report, "scores_noisy_controls", "Scores with ward noise on the controls", "controls + ward noise")
    return "\n\n".join(part for part in (intro, source, figure, table) if part)


def decision_section(decision: dict | None) -> str:
    """The verdict, then one line per check, failing checks first, each reason in full."""
    if not isinstance(decision, dict):
        return "No promotion decision was made."
    verdict = "PROMOTE" if decision.get("promote") is True else "REJECT"
    checks = [c for c in decision.get("checks") or [] if isinstance(c, dict)]
    if not checks:
        return "\n".join([f"**{verdict}**", "", *(f"- {inline(r)}" for r in decision.get("reasons") or [])])
    status = [c.get("status") or ("pass" if c.get("passed") else "fail") for c in checks]
    order = sorted(range(len(checks)), key=lambda i: ("fail", "not evaluated", "pass").index(status[i]) if status[i] in STATUS_LABELS else 0)
    lines = [f"**{verdict}**", ""]
    lines += [f"- {STATUS_LABELS.get(status[i], inline(status[i]))} · **{inline(checks[i].get('name'))}**: {inline(checks[i].get('detail'))}" for i in order]
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
            ["Snapshot digest (content and labels of the dataset)", get(snapshot, "digest")],
            ["Split digest (the validated clips with their train/eval/test split)", get(snapshot, "split_digest")],
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


# Lineage fields of a registered model, with what each one identifies.
LINEAGE_FIELDS = {
    "name": "name",
    "version": "version",
    "alias": "alias",
    "uri": "location",
    "sha256": "model file sha256",
    "data_digest": "split digest (training data and its split)",
    "config_digest": "config digest (the sections that shape the model)",
    "code_version": "code version (package + model-code hash)",
}


def model_section(model: dict | None) -> str:
    if not isinstance(model, dict):
        return "No model was registered for this run."
    return md_table(["Field", "Value"], [[label, model.get(k)] for k, label in LINEAGE_FIELDS.items()])


def join_sections(title: str, sections: list[tuple[str, str]], lead: str = "") -> str:
    out = [f"# {title}", ""]
    if lead:
        out += [lead, ""]
    for heading, body in sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"

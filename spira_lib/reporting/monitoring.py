"""Reports of the monitoring side: a scored batch and a shadow comparison (pseudonymous ids only)."""
from __future__ import annotations

from typing import Any

from spira_lib.reporting.markdown import md_table


def batch_report(batch: Any) -> str:
    """What the champion did with one inbox batch, and the recordings it could not score."""
    lines = [
        f"## Scored batch {batch.batch_id}", "",
        f"**{batch.model} v{batch.version}** ({batch.role}): {batch.n_scored} recording(s) scored, "
        f"{batch.n_known} already scored earlier, {len(batch.rejected)} rejected, of {batch.n_files} in the inbox.", "",
    ]
    if batch.predictions_key:
        lines += [f"Predictions: `{batch.predictions_key}` (next to the registry).", ""]
    if batch.rejected:
        lines += ["**Not scored**", "", md_table(["Recording", "Reason", "Code"], [[r["file"], r["reason"], r["kind"]] for r in batch.rejected])]
    return "\n".join(lines).rstrip() + "\n"


def shadow_report(report: Any) -> str:
    """Champion vs challenger on the same clips in use; the challenger's decisions are never exposed as results."""
    t = report.tally
    rows = [
        ["Clips compared (this batch)", report.n_clips],
        ["Decision agreement", report.agreement],
        ["Cohen's kappa", report.kappa],
        ["Score correlation (Pearson)", report.pearson],
        ["Score correlation (Spearman)", report.spearman],
        ["Score distributions: KS statistic", report.ks_statistic],
        ["Score distributions: KS p-value", report.ks_pvalue],
        ["Running tally: clips", t.get("n")],
        ["Running tally: agreement", t.get("agreement")],
        ["Running tally: kappa", t.get("kappa")],
        ["Running tally: batches", len(t.get("batches", []))],
    ]
    lines = [
        f"## Shadow: {report.model} v{report.challenger} (challenger) vs v{report.champion} (champion)", "",
        "The challenger scored the same recordings as the champion; only the champion's decisions are used.", "",
        md_table(["Quantity", "Value"], rows), "",
    ]
    if report.flips:
        lines += [f"**Decisions that would flip** ({len(report.flips)} shown, pseudonymous ids)", "",
                  md_table(["Recording", "Champion p", "Challenger p"], [[f["clip"], f["champion"], f["challenger"]] for f in report.flips])]
    else:
        lines.append("No decision would flip on this batch.")
    return "\n".join(lines).rstrip() + "\n"


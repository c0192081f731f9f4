"""The ``spira-drift`` artifact: a batch against the champion's reference, with pictures of what moved.

Rendered from a ``monitoring.run.DriftCheck`` (statistics and feature names
only; no clip names). Each moved feature gets a chart of its reference and
current distributions on shared bins, embedded as an SVG data URI.
"""
from __future__ import annotations

from typing import Any

from spira_lib.reporting.charts import BLUE, ORANGE, histogram_chart, image_markdown
from spira_lib.reporting.markdown import md_table

_HOW_TO_READ = (
    "*How to read this.* Each raw-audio feature of the clips is compared with the same feature of the champion's "
    "training clips (two-sample Kolmogorov-Smirnov test; Wasserstein distance, also in units of the reference's "
    "spread). The champion's embeddings of the clips are compared with its embeddings of its training clips (MMD "
    "permutation test), and, for labelled data, the label / sex / age band / hospital mix (chi-square). All p-values "
    "of a batch are Benjamini-Hochberg adjusted together; a test *moved* when its adjusted p-value is below alpha. "
    "Severity is *major* when a moved feature shifted by at least the configured number of spreads, the embedding "
    "test moved, a category mix moved a lot, or several tests moved."
)


def _p(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2g}"


def _auc(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _feature_rows(report: Any) -> list[list[Any]]:
    rows = sorted(report.features, key=lambda f: f.p_value)
    return [[f.name, f.unit, f.ref_median, f.cur_median, f.ks_statistic, _p(f.p_adjusted), f.wasserstein_norm,
             "**moved**" if f.moved else ""] for f in rows]


def _picture(pic: Any) -> str:
    unit = f" ({pic.unit})" if pic.unit else ""
    groups = [("reference (training clips)", pic.ref_fraction, ORANGE), ("this batch", pic.cur_fraction, BLUE)]
    svg = histogram_chart(f"{pic.feature}: reference vs batch", pic.bin_edges, groups, x_label=pic.feature + unit,
                          y_label="share of clips")
    quantiles = md_table(["quantile"] + [f"{q:g}" for q in pic.quantiles],
                         [["reference"] + list(pic.ref_quantiles), ["this batch"] + list(pic.cur_quantiles)])
    return f"{image_markdown(svg, f'{pic.feature}: distribution of the reference and of this batch')}\n\n{quantiles}"


def _concept(concept: Any) -> list[str]:
    lines = ["### Concept drift: the champion on new labelled clips", "", concept.message + ".", ""]
    if concept.roc_auc is not None:
        lines += [md_table(["", "clips", "ROC-AUC [interval]"], [
            ["new labelled clips", f"{concept.n_clips} ({concept.n_patients} patients, {concept.n_controls} controls)",
             _auc(concept.roc_auc, concept.interval)],
            ["test split at registration", "", _auc(concept.registered_roc_auc, concept.registered_interval)],
        ]), ""]
        if concept.decayed:
            lines += ["**The champion has decayed on fresh data**: the interval on the new clips lies below its AUC at registration.", ""]
    return lines


def _report(report: Any) -> list[str]:
    lines = [md_table(["Quantity", "Value"], [
        ["Severity", report.severity], ["Moved", ", ".join(report.moved) or "nothing"],
        ["Reference clips", report.n_ref], ["Batch clips", report.n_cur], ["alpha (false discovery rate)", f"{report.alpha:g}"],
    ]), "", "### Audio features", "",
        md_table(["Feature", "Unit", "Ref. median", "Batch median", "KS", "p (BH)", "W / spread", ""], _feature_rows(report)), ""]
    if report.embedding is not None:
        e = report.embedding
        lines += ["### The champion's view (embeddings)", "", md_table(["MMD²", "p (BH)", "permutations", "clips (ref / batch)", ""], [
            [e.mmd2, _p(e.p_adjusted), e.n_permutations, f"{e.n_ref} / {e.n_cur}", "**moved**" if e.moved else ""]]), ""]
    if report.categorical:
        rows = [[c.name, c.ref_counts, c.cur_counts, c.tv_distance, _p(c.p_adjusted), "**moved**" if c.moved else ""]
                for c in report.categorical]
        lines += ["### Label and demographics", "", md_table(["Column", "Reference", "New clips", "TV distance", "p (BH)", ""], rows), ""]
    if report.pictures:
        lines += ["### What moved", ""] + [_picture(p) + "\n" for p in report.pictures]
    return lines


def drift_markdown(check: Any) -> str:
    """The whole artifact for one ``DriftCheck``."""
    where = "scored inbox batch" if check.source == "score" else "labelled clips added since the champion's training snapshot"
    title = f"## Drift: {check.batch} vs {check.model} v{check.version}" if check.version else f"## Drift: {check.batch}"
    verdict = {"drifted": "**Drift detected**", "no-drift": "No drift"}.get(check.status, "Not tested")
    lines = [title, "", f"{verdict}: {check.message}. Clips: {check.n_clips} ({where}).", ""]
    if check.unreadable:
        lines += [f"{check.unreadable} clip(s) could not be read and were left out.", ""]
    if check.report is not None:
        lines += _report(check.report)
    if check.concept is not None:
        lines += _concept(check.concept)
    if check.report is not None:
        lines += [_HOW_TO_READ]
    return "\n".join(lines).rstrip() + "\n"

"""The report's pictures, drawn from report dicts: ROC with its band, score distributions,
training curves, the confusion matrix and slice metrics with intervals.

Each function returns markdown (an embedded SVG image), or "" when the report
lacks what the picture needs, so an older report still renders.
"""
from __future__ import annotations

from typing import Any

from spira_lib.reporting.charts import BLUE, ORANGE, RED, Band, Series, confusion_chart, histogram_chart, image_markdown
from spira_lib.reporting.charts import interval_chart, line_chart, roc_chart
from spira_lib.reporting.markdown import get


def roc_figure(report: dict, champion_report: dict | None = None) -> str:
    roc = get(report, "curves", "roc")
    if not isinstance(roc, dict):
        return ""
    auc = get(report, "metrics", "roc_auc")
    curves = [Series(f"challenger (AUC {auc:.3f})" if isinstance(auc, float) else "challenger", roc["fpr"], roc["tpr"], BLUE)]
    band = get(report, "curves", "roc_band")
    bands = [Band(band["fpr"], band["lo"], band["hi"], BLUE)] if isinstance(band, dict) else []
    champ = get(champion_report, "curves", "roc")
    if isinstance(champ, dict):
        c_auc = get(champion_report, "metrics", "roc_auc")
        label = f"champion (AUC {c_auc:.3f})" if isinstance(c_auc, float) else "champion"
        curves.append(Series(label, champ["fpr"], champ["tpr"], ORANGE, dashed=True))
    conf = get(report, "confidence")
    title = "ROC curve" + (f" with {conf:.0%} band" if bands and isinstance(conf, float) else "")
    return image_markdown(roc_chart(title, curves, bands), "ROC curve of the challenger" + (" and the champion" if len(curves) > 1 else ""))


def score_figure(report: dict, key: str = "scores", title: str = "Scores by class (clean test clips)", control_label: str = "controls") -> str:
    hist = get(report, "curves", key)
    if not isinstance(hist, dict):
        return ""
    groups = [(control_label, hist["controls"], ORANGE), ("patients", hist["patients"], BLUE)]
    return image_markdown(histogram_chart(title, hist["edges"], groups), title)


def training_figures(training: dict) -> str:
    history = [h for h in (get(training, "history") or []) if isinstance(h, dict)]
    if not history:
        return ""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    losses = [Series("train loss (windows)", epochs, [h.get("train_loss") for h in history], BLUE),
              Series("validation loss (files)", epochs, [h.get("val_loss") for h in history], ORANGE)]
    accuracy = [Series("validation accuracy (files)", epochs, [h.get("val_accuracy") for h in history], BLUE)]
    return " ".join([
        image_markdown(line_chart("Loss per epoch", losses, "epoch", "binary cross-entropy"), "training and validation loss per epoch"),
        image_markdown(line_chart("Validation accuracy per epoch", accuracy, "epoch", "accuracy"), "validation accuracy per epoch"),
    ])


def confusion_figure(report: dict) -> str:
    c = get(report, "metrics", "confusion")
    if not isinstance(c, dict):
        return ""
    thr = get(report, "threshold")
    title = "Confusion matrix" + (f" at threshold {thr:g}" if isinstance(thr, (int, float)) else "")
    return image_markdown(confusion_chart(title, *(int(c.get(k, 0)) for k in ("tn", "fp", "fn", "tp"))), title)


def slice_figure(report: dict, floor: float | None = None) -> str:
    rows: list[tuple[str, Any, Any, Any]] = []
    for s in get(report, "slices") or []:
        if not isinstance(s, dict):
            continue
        value, key = s.get("balanced_accuracy"), "balanced_accuracy"
        if value is None:
            value, key = s.get("accuracy"), "accuracy"
        interval = (s.get("intervals") or {}).get(key) or [None, None]
        small = " small" if s.get("small") else ""
        rows.append((f"{s.get('slice')}={s.get('value')} (n={s.get('n')}{small})", value, interval[0], interval[1]))
    if not rows:
        return ""
    title = "Balanced accuracy per slice (accuracy for one-class slices)"
    return image_markdown(interval_chart(title, rows, floor=floor), title)


__all__ = ["RED", "confusion_figure", "roc_figure", "score_figure", "slice_figure", "training_figures"]

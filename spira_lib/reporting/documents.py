"""Whole documents: the validation report of one run and the model card of one version."""
from __future__ import annotations

import json
import yaml

from spira_lib.reporting.figures import training_figures
from spira_lib.reporting.markdown import NA, details, get, inline, md_table
from spira_lib.reporting.sections import (
    confusion_section,
    decision_section,
    join_sections,
    metrics_section,
    model_section,
    quarantine_section,
    scores_section,
    shortcut_section,
    slices_section,
    snapshot_section,
)

MAX_HISTORY_ROWS = 40


def _lead(decision: dict | None) -> str:
    """The verdict and why, in full, as the first line people read."""
    checks = [c for c in get(decision, "checks") or [] if isinstance(c, dict)]
    if get(decision, "promote") is True:
        skipped = [c.get("name") for c in checks if c.get("status") == "not evaluated"]
        note = f"; not evaluated on this data: {', '.join(map(str, skipped))}" if skipped else ""
        return f"**Decision: PROMOTE** (all {len(checks) - len(skipped)} evaluated checks passed{note})"
    failed = [c.get("detail") for c in checks if c.get("passed") is False]
    why = failed or (get(decision, "reasons") or [])[:1]
    return "**Decision: REJECT**" + "".join(f"\n\n> {inline(reason)}" for reason in why)


def validation_report_markdown(
    *,
    snapshot: dict,
    quarantine: list[dict],
    report: dict,
    champion_report: dict | None,
    decision: dict,
    model: dict | None,
    training: dict | None = None,
    slice_floor: float | None = None,
) -> str:
    """The validation report shown in the Prefect UI for one training run: the decision first, then the evidence."""
    sections: list[tuple[str, str]] = [
        ("Decision", decision_section(decision)),
        ("Metrics", metrics_section(report, champion_report)),
        ("Score distributions", scores_section(report)),
        ("Confusion matrix", confusion_section(report)),
        ("Slices", slices_section(report, slice_floor)),
        ("Shortcut check", shortcut_section(report)),
    ]
    if training:
        sections.append(("Training", training_figures(training) or "No epoch history was recorded."))
    sections += [
        ("Dataset snapshot", snapshot_section(snapshot)),
        ("Quarantined files", quarantine_section(list(quarantine or []))),
        ("Model", model_section(model)),
    ]
    return join_sections("SPIRA validation report", sections, _lead(decision))


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
    arch = get(config, "model", "arch") or "spiraconv_v2"
    rows = [
        ["Architecture", arch],
        ["Features", _features_text(config)],
        ["Input", _input_text(config)],
        ["Epochs run", get(training, "epochs_run")],
        ["Best epoch", get(training, "best_epoch")],
        ["Device", get(training, "device")],
        ["Training time (s)", get(training, "seconds")],
    ]
    parts = [md_table(["Field", "Value"], rows), training_figures(training)]
    entries = [h for h in get(training, "history") or [] if isinstance(h, dict)]
    if entries:
        columns: list[str] = []
        for h in entries:
            columns += [k for k in h if k not in columns]
        shown = entries[-MAX_HISTORY_ROWS:]
        table = md_table(columns, [[h.get(c) for c in columns] for h in shown])
        if len(entries) > len(shown):
            table += f"\n\nOnly the last {len(shown)} of {len(entries)} epochs are shown."
        parts.append(details(f"Epoch history ({len(entries)} epochs)", table))
    return "\n\n".join(p for p in parts if p)


def _config_block(config: dict) -> str:
    try:
        text = yaml.safe_dump(config, sort_keys=True).rstrip()
        lang = "yaml"
    except yaml.YAMLError:
        # Non-YAML-safe values (paths, enums) still deserve a readable dump.
        text, lang = json.dumps(config, indent=2, sort_keys=True, default=str), "json"
    return f"```{lang}\n{text}\n```"


def _features_text(config: dict) -> str:
    f = get(config, "features")
    if not isinstance(f, dict):
        return NA
    kind = f.get("kind", "mfcc")
    n = f.get("n_mfcc") if kind == "mfcc" else f.get("n_mels") if kind == "mel" else None
    parts = [f"{kind}{' ' + str(n) if n else ''}", f"{f.get('sample_rate')} Hz"]
    parts.append(f"n_fft {f.get('n_fft')}, hop {f.get('hop_length')}, win {f.get('win_length')}")
    return ", ".join(parts)


def _input_text(config: dict) -> str:
    m = get(config, "model")
    if not isinstance(m, dict):
        return NA
    if m.get("mode") == "windowed":
        return f"{m.get('window_s')} s windows, {m.get('step_s')} s step, averaged per file"
    return f"whole file padded to {m.get('max_duration_s')} s"


_INTENDED_USE = "\n".join(
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


def _limitations(report: dict, synthetic: bool) -> list[str]:
    limitations = []
    if synthetic:
        limitations.append("Trained and evaluated on synthetic demo data; the metrics only show that the pipeline works.")
    small = [s for s in (get(report, "slices") or []) if isinstance(s, dict) and s.get("small")]
    if small:
        names = ", ".join(f"{s.get('slice')}={s.get('value')} (n={s.get('n')})" for s in small)
        limitations.append(f"Some slices are too small for reliable metrics: {names}.")
    n_files = get(report, "metrics", "n_files")
    if isinstance(n_files, int) and n_files < 100:
        limitations.append(
            f"The test set has only {n_files} files, so the intervals are wide; read them, not the point values."
        )
    if not isinstance(get(report, "shortcut"), dict):
        limitations.append("The noise-shortcut check was not run; the model may react to background noise.")
    limitations.append(
        "Patients and controls were recorded in different environments; noise augmentation and the shortcut "
        "check reduce but cannot rule out environment cues."
    )
    limitations.append("The decision threshold is fixed; sensitivity and specificity trade off if it changes.")
    return limitations


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
    name = get(model, "name") or "spira"
    version = get(model, "version")
    title = f"Model card: {name}" + (f" v{version}" if version is not None else "")
    synthetic = _is_synthetic(snapshot, config, model)
    data = snapshot_section(snapshot)
    if synthetic:
        data = "**Synthetic demo data**: these numbers say nothing about clinical performance.\n\n" + data
    sections: list[tuple[str, str]] = []
    if decision is not None:
        sections.append(("Promotion decision", decision_section(decision)))
    sections += [
        ("Intended use", _INTENDED_USE),
        ("Metrics", metrics_section(report)),
        ("Score distributions", scores_section(report)),
        ("Slices", slices_section(report)),
        ("Confusion matrix", confusion_section(report)),
        ("Shortcut check", shortcut_section(report)),
        ("Model and training", _training_section(training, config)),
        ("Data", data),
        ("Limitations", "\n".join(f"- {inline(x)}" for x in _limitations(report, synthetic))),
        ("Lineage", model_section(model)),
    ]
    if isinstance(config, dict) and config:
        sections.append(("Configuration", details("The configuration this model was trained with (YAML)", _config_block(config))))
    return join_sections(title, sections, _lead(decision) if decision is not None else "")

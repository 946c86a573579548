"""The plan's one line on distortion correction (printed once per invocation, common.smk)."""

from __future__ import annotations

from collections import Counter

from echoprep.io.bids import Run
from echoprep.io.bids_checks import fmt_list
from echoprep.io.bids_fmap import RULES
from echoprep.io.paths import run_prefix
from echoprep.plan.context import PlanContext

#: How the summary line names each fieldmap matching rule (:data:`echoprep.io.bids_fmap.RULES`).
RULE_LABELS = dict(
    zip(
        RULES,
        (
            "by B0FieldSource",
            "by IntendedFor",
            "by acquisition time, interpolated",
            "by acquisition time, nearest",
            "by run entity",
            "as the session's only fieldmap",
        ),
        strict=True,
    )
)


def sdc_summary(ctx: PlanContext) -> str | None:
    """One line saying how the runs' susceptibility distortion is corrected: how many runs
    by which method (``spatial.sdc``; counts when methods are mixed) and, for fieldmaps,
    by which matching rule (IntendedFor, acquisition time, run entity, the session's only
    fieldmap; a run that fell back for want of an acquisition time says so), which runs
    are not corrected, or that correction is off; None without spatial preprocessing.
    Printed once per invocation (common.smk); each run's sidecars record what its
    resampling used."""
    spatial = ctx.config["spatial"]
    if not spatial["enabled"]:
        return None
    runs = ctx.dataset.runs
    choice = spatial["sdc"]
    if choice == "none" or (not spatial["fieldmap"] and choice != "phase-framewise"):
        why = "spatial.sdc: none" if choice == "none" else "spatial.fieldmap: false"
        return f"Distortion correction: none of the {len(runs)} run(s) ({why})."
    labels = [_sdc_label(ctx, r) for r in runs]
    methods = Counter(labels)
    without = [run_prefix(r.entities) for r, m in zip(runs, labels, strict=True) if m == "none"]
    kinds = sorted(k for k in methods if k != "none")
    if len(kinds) > 1:
        which = " (" + ", ".join(f"{methods[k]} {k}" for k in kinds) + ")"
    else:
        which = f" ({kinds[0]})" if kinds else ""
    source = "their fieldmap" if choice in ("auto", "fieldmap", "pepolar") else "their phase"
    if choice != "auto":  # one method: the option says which
        which = f" (spatial.sdc: {choice})"
    rules = Counter(
        RULE_LABELS.get(r.fieldmap.rule, r.fieldmap.rule)
        + (f" ({r.fieldmap.note})" if r.fieldmap.note else "")
        for r, m in zip(runs, labels, strict=True)
        if m != "none" and r.fieldmap is not None and ctx.sdc_method(r) != "phase-framewise"
    )
    if which and rules:
        order = {label: i for i, label in enumerate(RULE_LABELS.values())}
        ranked = sorted(rules, key=lambda k: (order.get(k.split(" (")[0], len(order)), k))
        which = which[:-1] + "; " + ", ".join(f"{rules[k]} {k}" for k in ranked) + ")"
    line = (
        f"Distortion correction: {len(runs) - len(without)} of {len(runs)} run(s) with "
        f"{source}{which}"
    )
    if not without:
        return line + "."
    lacking = {
        "auto": "without a fieldmap",
        "fieldmap": "without a GRE or Hz fieldmap",
        "pepolar": "without a reversed phase-encoding pair",
        "phase-framewise": "without phase for 2 or more echoes (or without "
        "PhaseEncodingDirection and TotalReadoutTime)",
    }[choice]
    line += f"; {len(without)} {lacking}, not corrected: {fmt_list(without, 3)}"
    noted: dict[str, list[str]] = {}
    for r, m in zip(runs, labels, strict=True):
        if m == "none" and r.fieldmap_note:
            noted.setdefault(r.fieldmap_note, []).append(run_prefix(r.entities))
    if noted:
        line += " (" + "; ".join(f"{k}: {len(v)}" for k, v in noted.items()) + ")"
    if kinds:
        line += (
            ". Corrected and uncorrected runs differ in geometry: give every run what "
            "the method needs, choose another spatial.sdc, or set spatial.sdc: none to "
            "correct none"
        )
    return line + "."


def _sdc_label(ctx: PlanContext, run: Run) -> str:
    """The method of a run as the summary names it: the fieldmap's kind (phasediff or
    fieldmap) for a GRE or Hz fieldmap, else the method."""
    method = ctx.sdc_method(run)
    return run.fieldmap.kind if method == "fieldmap" and run.fieldmap else method


__all__ = ["RULE_LABELS", "sdc_summary"]

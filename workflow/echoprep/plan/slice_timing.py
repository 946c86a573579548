"""The plan's line on runs whose sidecars give no slice times (printed once per invocation).

``SliceTiming`` is recommended, not required, in BIDS: a converter may leave it out, for one run
or for all. Such a run's slice timing is not corrected (the spatial stage logs it and records
``SliceTimingCorrected: false`` in the run's sidecars; its series keeps each slice's own
acquisition time, as with ``spatial.slice_timing: false``), and this line names the runs.
Resampling in time (``spatial.tr_out``) needs the slice times, so with it such runs are a plan
problem that names them and the fixes (docs/your-data.md, "Slice timing").
"""

from __future__ import annotations

from echoprep.io.bids import Run
from echoprep.io.bids_checks import fmt_list
from echoprep.io.paths import run_prefix
from echoprep.plan.context import PlanContext, PlanError


def slice_timing_args(run: Run) -> list[str]:
    """``--slice-timing`` with a run's SliceTiming (s, in slice-index order) and, where its
    slices do not lie along the third axis (SliceEncodingDirection i or j), ``--slice-axis``;
    nothing without SliceTiming. The arguments of every step that reads slice times (the
    geometry step, the planted echoes, the planted design)."""
    if not run.slice_timing:
        return []
    axis = ["--slice-axis", str(run.slice_axis)] if run.slice_axis != 2 else []
    return ["--slice-timing", *[f"{t:.6g}" for t in run.slice_timing], *axis]


def slice_timing_summary(ctx: PlanContext) -> str | None:
    """One line naming the runs without ``SliceTiming`` when slice timing is to be
    corrected; None when every run has it, or the correction is off.

    Raises
    ------
    PlanError
        ``spatial.tr_out`` is set and some runs have no ``SliceTiming``: their series cannot
        be resampled in time (the runs, and the fixes).
    """
    spatial = ctx.config["spatial"]
    if not (spatial["enabled"] and spatial["slice_timing"]):
        return None
    runs = ctx.dataset.runs
    without = [run_prefix(r.entities) for r in runs if not r.slice_timing]
    if not without:
        return None
    named = fmt_list(without, 3)
    if spatial["tr_out"]:
        raise PlanError(
            f"spatial.tr_out: {spatial['tr_out']:g} s resamples every run in time from its "
            f"slice times; {len(without)} of {len(runs)} run(s) have no SliceTiming in their "
            f"BOLD sidecars: {named}. Fix: add SliceTiming (s, one per slice) to those "
            "sidecars, or unset spatial.tr_out (then these runs are not corrected for slice "
            "timing, and the others are, at their own TR)."
        )
    return (
        f"Slice timing: {len(runs) - len(without)} of {len(runs)} run(s) corrected; "
        f"{len(without)} without SliceTiming in their BOLD sidecars, not corrected: {named} "
        "(add SliceTiming to correct them, or set spatial.slice_timing: false to correct none)."
    )


__all__ = ["slice_timing_args", "slice_timing_summary"]

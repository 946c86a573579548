"""The echo handlings a dataset's echoes allow.

tedana's optimal combination fits T2* and needs two echoes; its ICA denoising classifies each
component by its TE-dependence and needs three (:data:`echoprep.variants.MIN_ECHOES`). Two-echo
multi-echo BOLD is legal BIDS and is acquired, so a configured echo handling that some run
cannot have is left out of the whole plan (every variant of a comparison is made for every
run), with a note printed when the workflow is planned, instead of a job that fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from echoprep.io.bids import Dataset
from echoprep.io.bids_checks import fmt_list
from echoprep.io.paths import run_prefix
from echoprep.plan.context import PlanError
from echoprep.variants import MIN_ECHOES


def allowed_combines(
    config: Mapping[str, Any], dataset: Dataset
) -> tuple[Mapping[str, Any], str | None]:
    """``config`` with ``variants.combine`` limited to the echo handlings every run's echo
    count allows, and a note naming what was left out and why (None: nothing left out).

    Parameters
    ----------
    config
        The validated config; returned as is when nothing is left out, else a shallow copy
        with a new ``variants`` section.
    dataset
        The discovered runs (each with its echoes).

    Raises
    ------
    PlanError
        When no configured echo handling is left, or when the single-echo variant's echo
        (``single_echo.echo``) is beyond some run's last echo.
    """
    if not dataset.runs:
        return config, None
    fewest = min(len(r.echoes) for r in dataset.runs)
    wanted = list(config["variants"]["combine"])
    kept = [c for c in wanted if MIN_ECHOES[c] <= fewest]
    echo = int(config["single_echo"]["echo"])
    if "single" in kept and echo > fewest:
        short = [run_prefix(r.entities) for r in dataset.runs if len(r.echoes) < echo]
        raise PlanError(
            f"single_echo.echo: expected an echo every run has (1 to {fewest}); found {echo}, "
            f"beyond the last echo of {len(short)} run(s): {fmt_list(short, 3)}. Fix: set "
            f"single_echo.echo to 1..{fewest} (--config 'single_echo={{echo: {fewest}}}'), "
            "or leave these runs out with exclude_runs."
        )
    dropped = [c for c in wanted if c not in kept]
    if not dropped:
        return config, None
    needs = ", ".join(f"{c} needs {MIN_ECHOES[c]}" for c in dropped)
    if not kept:
        raise PlanError(
            f"variants.combine: expected an echo handling the runs' echoes allow; found "
            f"{fmt_list(wanted)} ({needs} "
            f"echoes) where some runs have {fewest}. Fix: add single or optcom to "
            "variants.combine, or leave the runs with fewer echoes out with exclude_runs."
        )
    need = max(MIN_ECHOES[c] for c in dropped)
    short = [run_prefix(r.entities) for r in dataset.runs if len(r.echoes) < need]
    others = (
        "to keep it for the other runs, leave these out with exclude_runs; "
        if len(short) < len(dataset.runs)
        else ""
    )
    note = (
        f"Echo handling: {fmt_list(dropped)} left out of every variant ({needs} echoes; "
        f"{len(short)} of the {len(dataset.runs)} run(s) have fewer: {fmt_list(short, 3)}), "
        f"so the comparison covers {fmt_list(kept)}. Fix: {others}to silence this note, set "
        f"variants.combine: [{', '.join(kept)}]."
    )
    return {**config, "variants": {**config["variants"], "combine": kept}}, note


__all__ = ["allowed_combines"]

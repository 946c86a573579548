"""Held-out fits of one session and variant: GLMsingle fitted on each half of the runs apart.

The comparison's held-out fidelity (:mod:`echoprep.kernels.fidelity`) correlates a variant's
image means from one half of the runs with the reference's from the other half. For the two
halves to share nothing, each is fitted on its own runs: the HRF choice, the GLMdenoise noise
pool and number of PCs, the ridge fractions and the per-voxel scaling are all chosen inside
the half (``docs/comparison.md``). One job per session and variant fits every half of
``comparison.splits`` balanced splits (:func:`echoprep.kernels.fidelity.run_splits`) with the
variant's own ``glm`` options and writes, per split and half, the image means (betas z-scored
per run, repeats averaged) of the images shown in both halves of that split::

    <stem>[_space-T1w]_stat-effect_desc-HeldoutImagemeans_statmap.nii.gz   4D, one volume per
        (split, half, image); 0 outside the fitted voxels
    <stem>_desc-HeldoutImagemeans_volumes.tsv   one row per volume: split, half, label, runs

Image means rather than single-trial betas: the comparison needs nothing else, and a full
session's half betas of six variants would be tens of GB at 1.8 mm.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.arguments import key_paths
from echoprep.io.images import StageInputError, atomic_save, float_image
from echoprep.io.sidecars import write_sidecar
from echoprep.io.tables import write_tsv
from echoprep.kernels.fidelity import image_means, run_splits
from echoprep.kernels.noiseceiling import zscore_within
from echoprep.stages.glm.fit import choose_betas, fit_runs
from echoprep.stages.glm.inputs import read_session
from echoprep.stages.glm.options import (
    GlmOptions,
    engine_options,
    parse_glm_options,
    stage_settings,
)
from echoprep.stages.glm.run import add_session_arguments, session_keywords

log = logging.getLogger(__name__)

#: Output keys: the 4D image means and their volume table.
HELDOUT_OUTPUTS = ("means", "volumes")
#: Columns of the volume table.
VOLUME_COLUMNS = ("split", "half", "label", "run_labels")


def run_heldout_fits(
    bold_files: Sequence[str | Path],
    events_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    splits: int,
    mask: str | Path | None = None,
    space: str | None = None,
    options: Mapping[str, Any] | GlmOptions | None = None,
    seed: int = 0,
    n_threads: int = 1,
    run_labels: Sequence[str | None] | None = None,
    session: str | None = None,
    tr: float | None = None,
) -> dict[str, Path]:
    """Fit each half of every split of a session's runs apart and write the image means.

    Parameters
    ----------
    bold_files, events_files
        The session's preprocessed 4D BOLD runs and their events files, in run order.
    outputs
        ``means`` (4D NIfTI) and ``volumes`` (TSV) paths.
    splits
        Most balanced splits of the runs (``comparison.splits``).
    mask, space, options, seed, n_threads, run_labels, session, tr
        As for :func:`echoprep.stages.glm.run_glm` (the variant's ``glm`` options).

    Returns
    -------
    dict
        Key -> written path.

    Raises
    ------
    StageInputError
        Fewer than 2 runs, or inputs the GLM stage refuses.
    """
    missing = [k for k in HELDOUT_OUTPUTS if k not in outputs]
    if missing:
        raise ValueError(f"outputs: missing {missing}; keys are {list(HELDOUT_OUTPUTS)}")
    opts = parse_glm_options(options, source="glm options")
    settings = stage_settings(opts)
    engine_opts = engine_options(opts)
    if len(bold_files) < 2:
        raise StageInputError(
            f"{bold_files[0] if bold_files else '<no BOLD>'}: expected at least 2 runs to fit "
            f"halves apart; found {len(bold_files)}. Fix: leave this session out of "
            "comparison.sessions."
        )
    t0 = time.perf_counter()
    session_inputs = read_session(
        bold_files,
        events_files,
        mask_file=mask,
        brainthresh=opts.brainthresh,
        nan_policy=settings["nan_policy"],
        run_labels=run_labels,
        tr=tr,
    )
    bold, events, labels = session_inputs.bold, session_inputs.events, session_inputs.labels
    data, fit_mask, ref = session_inputs.data, session_inputs.fit_mask, session_inputs.ref
    n_volumes, series_dt = session_inputs.info["n_volumes"], session_inputs.tr
    del session_inputs
    columns: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    for s, half_a in enumerate(run_splits(len(bold), splits), start=1):
        halves = {}
        for half, chosen in (("A", half_a), ("B", ~half_a)):
            idx = np.flatnonzero(chosen)
            betas, trials, fit = _fit_half(
                [data[i] for i in idx],
                [events[i] for i in idx],
                [n_volumes[i] for i in idx],
                [labels[i] for i in idx],
                series_dt,
                settings,
                engine_opts,
                seed=seed,
                n_threads=n_threads,
            )
            halves[half] = (betas, trials)
            fits.append({"split": s, "half": half, **fit})
        images = np.intersect1d(halves["A"][1]["label"], halves["B"][1]["label"])
        if images.size < 3:
            log.warning(
                "held-out fits: split %d has %d image(s) shown in both halves; the comparison "
                "needs at least 3",
                s,
                images.size,
            )
        for half in ("A", "B"):
            betas, trials = halves[half]
            z = zscore_within(betas, trials["run"].to_numpy())
            columns.append(image_means(z, trials["label"].to_numpy(), images))
            runs_text = ",".join(dict.fromkeys(trials["run"].astype(str)))
            rows += [
                {"split": s, "half": half, "label": lab, "run_labels": runs_text} for lab in images
            ]
    del data
    means = np.concatenate(columns, axis=1) if columns else np.zeros((int(fit_mask.sum()), 0))
    volume = np.zeros((*fit_mask.shape, means.shape[1]), np.float32)
    volume[fit_mask] = np.nan_to_num(means, nan=0.0)
    written: dict[str, Path] = {}
    written["means"] = atomic_save(float_image(volume, ref), outputs["means"])
    table = pd.DataFrame(rows, columns=list(VOLUME_COLUMNS))
    written["volumes"] = write_tsv(table, outputs["volumes"])
    parameters = {
        "Splits": splits,
        "Seed": seed,
        "RepetitionTime": series_dt,
        "GLMOptions": {k: v for k, v in settings.items() if k != "label_column"},
        "Fits": fits,
    }
    sources = [str(p) for p in (*bold, *events, *([Path(mask)] if mask else []))]
    write_sidecar(
        written["means"],
        sources=sources,
        parameters=parameters,
        extra={
            "Description": "held-out image means: per split of the runs and half, GLMsingle "
            "fitted on that half's runs alone (every hyperparameter chosen inside it), betas "
            "z-scored per run and averaged over each image's repeats; one volume per row of "
            "the volumes table. 0 outside the fitted voxels.",
            **({"Space": space} if space else {}),
            **({"Session": session} if session else {}),
            "Units": "z (betas z-scored within each run)",
            "ElapsedSeconds": round(time.perf_counter() - t0, 3),
        },
    )
    write_sidecar(
        written["volumes"],
        sources=[str(written["means"])],
        parameters=parameters,
        extra={
            "Description": "one row per volume of the held-out image means",
            "split": {"Description": "split of the runs (1-based)"},
            "half": {"Description": "half of the split (A or B) whose runs were fitted"},
            "label": {"Description": "the image (condition label)"},
            # not "runs": pybids would take it for the plural of the run entity
            "run_labels": {"Description": "the run labels of the half, comma-separated"},
        },
    )
    return written


def _fit_half(
    data: list[np.ndarray],
    events: list[Path],
    n_volumes: list[int],
    labels: list[str],
    series_dt: float,
    settings: Mapping[str, Any],
    engine_opts: Mapping[str, Any],
    *,
    seed: int,
    n_threads: int,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """``(V, N)`` betas, trials (``run``, ``label``) and a summary of one half's fit."""
    what = f"held-out fit of runs {','.join(labels)}"
    fitted = fit_runs(
        data,
        events,
        n_volumes,
        labels,
        series_dt,
        settings,
        engine_opts,
        seed=seed,
        n_threads=n_threads,
        what=what,
    )
    results, design = fitted.results, fitted.design
    kind, model = choose_betas(results)
    betas = np.asarray(model["betasmd"]).reshape(data[0].shape[0], -1)
    trials = pd.DataFrame(
        {"run": design.trials["run_label"].astype(str), "label": design.trials["label"]}
    )
    # the same summary as the session fit's (stages/glm/outputs.py): PCs and ridge fractions
    pcnum = int(model.get("pcnum", 0)) if kind != "typeb" else 0
    frac = model.get("FRACvalue") if kind == "typed" else None
    log.info("%s: type %s, %.1f s", what, kind[-1].upper(), fitted.fit_s)
    return (
        betas,
        trials,
        {
            "runs": labels,
            "trials": len(trials),
            "type": kind[-1].upper(),
            "pcnum": pcnum,
            "median_fracridge": None if frac is None else round(float(np.median(frac)), 4),
            "device": results.get("params", {}).get("device"),
        },
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep glm-heldout`` arguments to a sub-command parser."""
    add_session_arguments(parser)
    parser.add_argument(
        "--out", nargs="+", required=True, metavar="KEY=PATH", help="means=... volumes=..."
    )
    parser.add_argument(
        "--splits", type=int, required=True, help="most balanced splits of the runs"
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_heldout_fits` from parsed arguments; exit status 0."""
    run_heldout_fits(
        args.bold,
        args.events,
        key_paths(args.out, form="means|volumes=PATH", keys=HELDOUT_OUTPUTS),
        splits=args.splits,
        **session_keywords(args),
    )
    return 0


__all__ = [
    "HELDOUT_OUTPUTS",
    "VOLUME_COLUMNS",
    "add_arguments",
    "run_from_args",
    "run_heldout_fits",
]

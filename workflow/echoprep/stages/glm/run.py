"""GLM stage entry point: validate -> load -> fit -> write one session of one variant.

:func:`run_glm` reads the session's preprocessed BOLD runs (:mod:`.inputs`) and events
(:func:`echoprep.io.events.build_session_design`), fits them (:mod:`.fit`) and writes the
outputs (:mod:`.outputs`); :func:`add_arguments` and :func:`run_from_args` are the
``echoprep glm`` sub-command.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.arguments import key_paths
from echoprep.stages.glm.fit import STOP_AT, choose_betas, fit_runs
from echoprep.stages.glm.inputs import read_session
from echoprep.stages.glm.options import (
    GlmOptions,
    engine_options,
    parse_glm_options,
    stage_settings,
)
from echoprep.stages.glm.outputs import OUTPUTS, REQUIRED_OUTPUTS, SessionFit, write_outputs

log = logging.getLogger(__name__)


def run_glm(
    bold_files: Sequence[str | Path],
    events_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    mask: str | Path | None = None,
    space: str | None = None,
    options: Mapping[str, Any] | GlmOptions | None = None,
    seed: int = 0,
    n_threads: int = 1,
    run_labels: Sequence[str | None] | None = None,
    session: str | None = None,
    tr: float | None = None,
    stop_at: str = "typed",
) -> dict[str, Path]:
    """Fit GLMsingle to one session and write the outputs.

    Parameters
    ----------
    bold_files
        Preprocessed 4D BOLD series, one per run, in run order, on one grid.
    events_files
        The runs' BIDS events files, same order.
    outputs
        Keys of :data:`~echoprep.stages.glm.outputs.OUTPUTS` to paths (``betas``, ``trials``
        and ``summary`` required).
    mask
        Brain mask on the BOLD grid, or None (GLMsingle's ``brainthresh`` rule).
    space
        Space label of the inputs (recorded in the sidecars; the names come from ``outputs``).
    options
        The ``glm`` config section (or part of it: missing keys take the schema default; a
        :class:`~echoprep.stages.glm.options.GlmOptions` as it is): GLMsingle options
        (:data:`~echoprep.stages.glm.options.ENGINE_OPTIONS`) and stage settings.
    seed
        Seed of the engine's random steps (tail-threshold mixture fit).
    n_threads
        BLAS threads of the engine.
    run_labels
        BIDS run labels (trials table and messages); None: 1, 2, ...
    session
        Session label for the trials table (``n/a`` when None).
    tr
        Sampling interval (s); None: from the series' sidecars or headers.
    stop_at
        ``"typed"``: the full fit (the betas are of type D when the engine computes it).
        ``"typeb"``: stop after type B (GLMdenoise and ridge switched off): only
        ``betas_typeb`` is required; ``betas``, if given, then holds type B too. Any fit writes
        ``betas_typeb`` (the type-B betas of the same fit) when that key is in ``outputs``.

    Returns
    -------
    dict
        Key -> written path.

    Raises
    ------
    StageInputError
        Unusable inputs (messages name the file, the expectation, the finding and the fix).
    echoprep.options.OptionsError
        Unknown options or values the config schema does not allow.
    """
    opts = parse_glm_options(options, source="glm options")
    if stop_at not in STOP_AT:
        raise ValueError(f"stop_at: expected one of {list(STOP_AT)}; found {stop_at!r}")
    required = REQUIRED_OUTPUTS if stop_at == "typed" else ("betas_typeb",)
    missing = [k for k in required if k not in outputs]
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if missing or unknown:
        raise ValueError(f"outputs: missing {missing}, unknown {unknown}; keys are {list(OUTPUTS)}")
    engine_opts = engine_options(opts, stop_at=stop_at)
    settings = stage_settings(opts)
    if settings["hdf5"] and "model" not in outputs and stop_at == "typed":
        raise ValueError("glm.hdf5 is true: pass the 'model' output path")
    timings: dict[str, float] = {}
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
    data, fit_mask, ref, info = (
        session_inputs.data,
        session_inputs.fit_mask,
        session_inputs.ref,
        session_inputs.info,
    )
    series_dt = session_inputs.tr
    del session_inputs
    timings["load_s"] = round(time.perf_counter() - t0, 3)
    runs_fit = fit_runs(
        data,
        events,
        info["n_volumes"],
        labels,
        series_dt,
        settings,
        engine_opts,
        seed=seed,
        n_threads=n_threads,
    )
    design, stimdur, results, messages = (
        runs_fit.design,
        runs_fit.stimdur,
        runs_fit.results,
        runs_fit.messages,
    )
    timings["fit_s"] = round(runs_fit.fit_s, 3)
    del data

    t2 = time.perf_counter()
    kind, model = choose_betas(results)
    if kind != "typed" and stop_at == "typed":
        log.warning(
            "GLMsingle: type D was not computed (see the messages above); writing the type-%s "
            "betas",
            kind[-1].upper(),
        )
    fit = SessionFit(
        results=results,
        kind=kind,
        model=model,
        fit_mask=fit_mask,
        ref=ref,
        info=info,
        design=design,
        engine=settings["engine"],
        wantlibrary=bool(engine_opts["wantlibrary"]),
        parameters={
            **_jsonable({k: v for k, v in engine_opts.items() if v is not None}),
            **settings,
            "seed": seed,
            "stimdur": float(stimdur),
            "tr": series_dt,
        },
        sources=[*bold, *events, *([Path(mask)] if mask else [])],
        bold=bold,
        events=events,
        labels=labels,
        session=session,
        space=space,
        blank_trial_types=settings["blank_trial_types"],
        onset_tolerance=settings["onset_tolerance"],
        stimdur=float(stimdur),
        tr=series_dt,
        messages=messages,
    )
    return write_outputs(fit, outputs, timings=timings, started=t2)


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in options.items()
    }


# ---------------------------------------------------------------------------------------------
# command line


def add_session_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments every fit of one session takes (``echoprep glm``, ``echoprep
    glm-heldout``): runs, events, mask, labels, options, TR, seed, threads."""
    parser.add_argument(
        "--bold", nargs="+", required=True, type=Path, help="preprocessed BOLD, one per run"
    )
    parser.add_argument(
        "--events", nargs="+", required=True, type=Path, help="events.tsv per run, same order"
    )
    parser.add_argument("--mask", type=Path, default=None, help="brain mask on the BOLD grid")
    parser.add_argument("--space", default=None, help="space label of the inputs (e.g. T1w)")
    parser.add_argument("--run-labels", nargs="+", default=None, help="BIDS run labels")
    parser.add_argument("--session", default=None, help="BIDS session label")
    parser.add_argument(
        "--options-json", default=None, help="the glm: config section as JSON (see config.yaml)"
    )
    parser.add_argument("--tr", type=float, default=None, help="TR in s (default: sidecars)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def session_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of a session fit from :func:`add_session_arguments`' values."""
    return {
        "mask": args.mask,
        "space": args.space,
        "options": parse_glm_options(
            json.loads(args.options_json) if args.options_json else None,
            source="--options-json",
        ),
        "seed": args.seed,
        "n_threads": args.threads,
        "run_labels": args.run_labels,
        "session": args.session,
        "tr": args.tr,
    }


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep glm`` arguments to ``parser`` (a sub-command parser)."""
    add_session_arguments(parser)
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help=f"output paths by key ({', '.join(OUTPUTS)}); betas, trials, summary required "
        "(with --stop-at typeb: betas_typeb only)",
    )
    parser.add_argument(
        "--stop-at",
        choices=STOP_AT,
        default="typed",
        help="typeb: fit only up to type B (library HRF, least squares: the visual ROI's test)",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_glm` from parsed :func:`add_arguments` arguments; exit status 0."""
    run_glm(
        args.bold,
        args.events,
        key_paths(args.out),
        stop_at=args.stop_at,
        **session_keywords(args),
    )
    return 0


__all__ = [
    "add_arguments",
    "add_session_arguments",
    "run_from_args",
    "run_glm",
    "session_keywords",
]

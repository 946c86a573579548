"""GLM stage fit: one session's designs and masked data through our engine or upstream's.

Engines (config ``glm.engine``): ``echoprep`` (:func:`echoprep.kernels.glm.fit_glmsingle`) or
``glmsingle`` (the upstream package, :mod:`echoprep.adapters.glmsingle`); both return the same
result layout (docs/glm.md §15).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.events import SessionDesign, build_session_design
from echoprep.kernels.glm.design import ShortEndWarning

log = logging.getLogger(__name__)

#: Where a fit may stop: ``typed`` (the full FITHRF_GLMDENOISE_RR) or ``typeb`` (library HRF
#: per voxel, or the assumed HRF with ``wantlibrary: 0``, and plain least squares: no
#: GLMdenoise PCs, no ridge).
STOP_AT = ("typed", "typeb")


def fit_session(
    engine: str,
    designs: Sequence[np.ndarray],
    data: list[np.ndarray],
    stimdur: float,
    tr: float,
    options: Mapping[str, Any],
    *,
    n_threads: int,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Fit GLMsingle to one session.

    Parameters
    ----------
    engine
        ``"echoprep"`` or ``"glmsingle"``.
    designs
        ``R`` designs ``(T_r, C)`` 0/1.
    data
        ``R`` arrays ``(V, T_r)`` float32 (the fitted voxels).
    stimdur, tr
        Stimulus duration and sampling interval, s.
    options
        Every engine option (:data:`echoprep.stages.glm.options.ENGINE_OPTIONS`; None = the
        engine's default).
    n_threads
        BLAS threads of the engine (ours, or upstream's while it fits).
    seed
        Seed of our engine's tail-threshold mixture fit.
    device
        Where our engine's heavy steps run (config ``glm.device``): ``"cpu"`` (NumPy) or
        ``"cuda"`` (a GPU through torch; docs/glm.md §14, "GPU"). Upstream's engine has
        only the CPU.

    Returns
    -------
    dict
        ``typea``..``typed`` (arrays ``(V, ...)``), ``params`` (and ``designinfo`` from ours;
        its ``device`` names where the heavy steps ran).

    Raises
    ------
    ValueError
        ``device`` other than ``"cpu"`` with upstream's engine.
    echoprep.kernels.patches_torch.DeviceUnavailableError
        ``device`` is ``"cuda"`` and this machine has no CUDA device (or no torch).
    """
    if engine == "glmsingle":
        if device != "cpu":
            raise ValueError(
                f"glm.device is {device!r} but glm.engine: glmsingle (upstream GLMsingle) runs "
                "on the CPU only; set glm.device: cpu or glm.engine: echoprep"
            )
        from echoprep.adapters.glmsingle import fit_upstream

        return fit_upstream(designs, data, stimdur, tr, options, n_threads=n_threads)
    from echoprep.kernels.glm import fit_glmsingle

    return fit_glmsingle(
        designs,
        data,
        stimdur,
        tr,
        **options,
        wantfithrfr2run=0,
        seed=seed,
        n_threads=n_threads,
        device=device,
    )


def choose_betas(results: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The most complete model in ``results``: ``typed``, else ``typec``, else ``typeb``."""
    for name in ("typed", "typec", "typeb"):
        if results.get(name):
            return name, results[name]
    raise RuntimeError("the GLM engine returned no single-trial model (types B, C and D absent)")


@dataclass
class RunsFit:
    """One fit of a set of runs (:func:`fit_runs`).

    Attributes
    ----------
    design
        The runs' designs and trial bookkeeping.
    stimdur
        Stimulus duration used (s).
    results
        The engine's results (:func:`fit_session`).
    messages
        The engine's warnings, as text (also logged).
    fit_s
        Wall time of the fit (s).
    """

    design: SessionDesign
    stimdur: float
    results: dict[str, Any]
    messages: list[str]
    fit_s: float


def fit_runs(
    data: list[np.ndarray],
    events: Sequence[str | Path],
    n_volumes: Sequence[int],
    labels: Sequence[str],
    tr: float,
    settings: Mapping[str, Any],
    engine_options: Mapping[str, Any],
    *,
    seed: int,
    n_threads: int,
    what: str = "GLMsingle",
) -> RunsFit:
    """Build the runs' designs from their events and fit them.

    Parameters
    ----------
    data
        ``R`` arrays ``(V, T_r)`` float32 (:func:`echoprep.stages.glm.inputs.load_session`).
    events, n_volumes, labels
        The runs' events files, lengths (volumes) and labels, same order.
    tr
        Sampling interval (s).
    settings, engine_options
        Stage settings and engine options (:mod:`echoprep.stages.glm.options`).
    seed, n_threads
        As for :func:`fit_session`.
    what
        Prefix of the log messages.

    Returns
    -------
    RunsFit
    """
    design = build_session_design(
        events,
        n_volumes,
        tr,
        label_column=settings["label_column"],
        exclude_trial_types=settings["blank_trial_types"],
        onset_tolerance=settings["onset_tolerance"],
        run_labels=labels,
    )
    if design.early:
        log.warning(
            "%s: %d trial(s) start before the first volume (negative onsets) and are left out "
            "of the design",
            what,
            design.early,
        )
    stimdur = settings["stimdur"]
    notes: list[str] = []
    if stimdur is None and math.isfinite(design.stimulus_duration):
        stimdur = design.stimulus_duration
    elif stimdur is None:
        stimdur = 0.0
        # (BIDS allows duration n/a; GLMsingle's HRF library is convolved with stimdur)
        notes.append(
            "no trial durations in the events (duration n/a or no duration column): the "
            "trials are modelled as brief events (stimdur 0 s). Fix: if they last longer, "
            "set glm.stimdur to the stimulus duration in s (e.g. --config "
            "'glm={stimdur: 2.5}')."
        )
    log.info(
        "%s (%s engine): %d runs, %d trials of %d conditions, %d voxels, TR %g s, stimdur %g s",
        what,
        settings["engine"],
        len(data),
        len(design.trials),
        len(design.conditions),
        data[0].shape[0],
        tr,
        stimdur,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = fit_session(
            settings["engine"],
            design.designs,
            data,
            float(stimdur),
            tr,
            engine_options,
            n_threads=n_threads,
            seed=seed,
            device=settings["device"],
        )
    names = list(labels) if len(labels) == len(data) else None
    messages = notes + [
        w.message.text(names) if isinstance(w.message, ShortEndWarning) else str(w.message)
        for w in caught
    ]
    for m in messages:
        log.warning("%s: %s", what, m)
    return RunsFit(design, float(stimdur), results, messages, time.perf_counter() - t0)


__all__ = ["STOP_AT", "RunsFit", "choose_betas", "fit_runs", "fit_session"]

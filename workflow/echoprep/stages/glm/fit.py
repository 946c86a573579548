"""GLM stage fit: one session's designs and masked data through our engine or upstream's.

Engines (config ``glm.engine``): ``echoprep`` (:func:`echoprep.kernels.glm.fit_glmsingle`) or
``glmsingle`` (the upstream package, :mod:`echoprep.adapters.glmsingle`); both return the same
result layout (docs/glm.md §15).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
        BLAS threads of our engine.
    seed
        Seed of our engine's tail-threshold mixture fit.

    Returns
    -------
    dict
        ``typea``..``typed`` (arrays ``(V, ...)``), ``params`` (and ``designinfo`` from ours).
    """
    if engine == "glmsingle":
        from echoprep.adapters.glmsingle import fit_upstream

        return fit_upstream(designs, data, stimdur, tr, options)
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
    )


def choose_betas(results: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The most complete model in ``results``: ``typed``, else ``typec``, else ``typeb``."""
    for name in ("typed", "typec", "typeb"):
        if results.get(name):
            return name, results[name]
    raise RuntimeError("the GLM engine returned no single-trial model (types B, C and D absent)")


__all__ = ["STOP_AT", "choose_betas", "fit_session"]

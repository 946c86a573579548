"""A GLMsingle fit with its choices frozen: the linear map from data to the published betas.

Given the data of a session and the choices its fit made (per voxel: the library HRF and the
ridge fraction; for the session: the number of GLMdenoise PCs and the noise-pool threshold),
every remaining step of FITHRF_GLMDENOISE_RR is linear in the data: the polynomial and PC
projection, the least squares at the chosen HRF, the ridge shrinkage with the penalty that
reaches the chosen fraction, the autoscale and the conversion to percent of the mean signal.
:func:`freeze` rebuilds those steps from the session's own data (the same type-A pass, noise
pool, PCs, nuisance directions and solvers as :func:`~echoprep.kernels.glm.engine.fit_glmsingle`)
and returns them with the betas they give, which equal the fit's betas up to float rounding (a
check that the choices were read right). :func:`apply` then sends any other series of the same
design (a response planted into the data, docs/comparison.md) through exactly that map: the
betas it returns are what the published betas contain of that series.

The offset of the autoscale (a constant over trials) is left out of :func:`apply`: it belongs
to the data the fit was made on, not to an added series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from echoprep.kernels.glm.data import as_voxel_data
from echoprep.kernels.glm.design import as_run_list, convolved_trials, trial_design
from echoprep.kernels.glm.engine import build_setup, noise_pcs, nuisance_directions, type_a
from echoprep.kernels.glm.fit import RunSolver, solver
from echoprep.kernels.glm.noise import noise_pool
from echoprep.kernels.glm.options import resolve_options
from echoprep.kernels.glm.ridge import autoscale, fraction_alphas, shrinkage
from echoprep.kernels.glm.state import Setup, blocks, groups
from echoprep.kernels.threads import blas_limits

#: Models whose betas :func:`freeze` reproduces (the engine's type B, C or D).
MODELS = ("typeb", "typec", "typed")


@dataclass(frozen=True)
class Choices:
    """What a fit chose, as its outputs record it.

    Attributes
    ----------
    model
        ``typed`` (GLMdenoise PCs and ridge), ``typec`` (PCs, no ridge) or ``typeb`` (neither).
    hrfindex
        ``(V,)`` int: the library HRF of each fitted voxel (0-based).
    fracvalue
        ``(V,)`` ridge fraction of each voxel in (0, 1] (``typed``; None otherwise).
    pcnum
        GLMdenoise PCs used (0 without).
    brain_r2
        The noise pool's ON-OFF R² threshold (%) the fit used (None: no PCs).
    percent
        Whether the betas are in % of the mean signal (types C and D always are).
    """

    model: str
    hrfindex: np.ndarray
    fracvalue: np.ndarray | None
    pcnum: int
    brain_r2: float | None
    percent: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}; found {self.model!r}")
        if self.model == "typed" and self.fracvalue is None:
            raise ValueError("a type-D fit needs its ridge fractions (fracvalue)")
        if self.pcnum > 0 and self.brain_r2 is None:
            raise ValueError("a fit with GLMdenoise PCs needs its noise-pool threshold brain_r2")


@dataclass
class FrozenFit:
    """The linear map of a fit (:func:`freeze`).

    Attributes
    ----------
    setup
        Design, options and per-run polynomial bases of the session.
    nuisance
        Per run, the orthonormal nuisance directions beyond the polynomials that the fit used
        ``(T_r, k_r)`` (extra regressors and the first ``pcnum`` PCs).
    hrfindex
        ``(V,)`` chosen HRF per voxel.
    alpha
        ``(V,)`` ridge penalty reaching each voxel's fraction (0 without ridge).
    scale
        ``(V,)`` autoscale factor (1 without ridge).
    percent
        ``(V,)`` ``100 / |meanvol|`` of the fit's data (1 where betas are not in percent).
    betas
        ``(V, N)`` float32: the betas of the fit's own data through this map (offset included).
    """

    setup: Setup
    nuisance: list[np.ndarray]
    hrfindex: np.ndarray
    alpha: np.ndarray
    scale: np.ndarray
    percent: np.ndarray
    betas: np.ndarray


def freeze(
    design: Any,
    data: Any,
    stimdur: float,
    tr: float,
    choices: Choices,
    options: Mapping[str, Any],
    n_threads: int | None = None,
) -> FrozenFit:
    """Rebuild the linear map of a fit from its data and its choices.

    Parameters
    ----------
    design, data, stimdur, tr
        As for :func:`~echoprep.kernels.glm.engine.fit_glmsingle` (the data the fit was made
        on: ``R`` arrays ``V x T_r`` or ``X x Y x Z x T_r``).
    choices
        The fit's choices (:class:`Choices`), ``V`` voxels in the data's order.
    options
        The engine options the fit was made with (every name of
        :data:`~echoprep.kernels.glm.options.REQUIRED_OPTIONS`); ``brainR2`` and ``pcstop``
        are replaced by the recorded threshold and PC count.
    n_threads
        BLAS threads (None: the process setting).

    Returns
    -------
    FrozenFit
        Its ``betas`` equal the fit's betas up to float rounding.
    """
    runs = as_run_list(design)
    td = trial_design(runs, float(tr))
    vox = as_voxel_data(data, td.run_lengths)
    opts_in = dict(options)
    opts_in["brainR2"] = choices.brain_r2
    opts_in["pcR2cutoff"] = choices.brain_r2
    opts_in["pcstop"] = -float(choices.pcnum)
    opts = resolve_options(
        opts_in,
        run_lengths=td.run_lengths,
        tr=float(tr),
        stimdur=float(stimdur),
        spatial_shape=vox.spatial_shape,
    )
    setup = build_setup(td, vox, opts)
    hrfindex = np.asarray(choices.hrfindex).reshape(-1).astype(np.int64)
    if hrfindex.size != vox.n_voxels:
        raise ValueError(f"choices give {hrfindex.size} voxels; the data have {vox.n_voxels}")
    with blas_limits(n_threads):
        chunks = vox.chunks(opts.chunklen)
        meanvol, _, onoff, _ = type_a(setup, chunks)
        nuisance = list(setup.qe)
        if choices.pcnum > 0:
            assert choices.brain_r2 is not None
            pool = noise_pool(meanvol, onoff, opts.brainthresh, choices.brain_r2, opts.brainexclude)
            pcs = noise_pcs(setup, chunks, pool, opts.n_pcs + 1)
            q_all, level_k = nuisance_directions(setup, pcs)
            nuisance = [q[:, : k[choices.pcnum]] for q, k in zip(q_all, level_k, strict=True)]
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = 100.0 / np.abs(meanvol)
        if not (choices.percent or choices.model != "typeb"):
            pct = np.ones_like(pct)
        n = vox.n_voxels
        fit = FrozenFit(
            setup=setup,
            nuisance=nuisance,
            hrfindex=hrfindex,
            alpha=np.zeros(n),
            scale=np.ones(n),
            percent=pct,
            betas=np.zeros((n, td.n_trials), dtype=np.float32),
        )
        ridge = choices.model == "typed"
        fracs = np.asarray(choices.fracvalue, np.float64).reshape(-1) if ridge else np.ones(n)
        for rows, sols, bo in _rotated(fit, vox, chunks):
            beta1 = _rotate_back(sols, bo, fit.setup)
            if not ridge:
                fit.betas[rows] = beta1 * pct[rows, None]
                continue
            s2 = np.concatenate([s.s**2 for s in sols])
            alpha = np.zeros(rows.size)
            for f in np.unique(fracs[rows]):
                sel = fracs[rows] == f
                alpha[sel] = fraction_alphas(s2, bo[sel], np.array([f]))[:, 0]
            beta_c = _rotate_back(sols, bo, fit.setup, alpha)
            if opts.wantautoscale:
                scale, offset = autoscale(beta1, beta_c)
            else:
                scale, offset = np.ones(rows.size), np.zeros(rows.size)
            fit.alpha[rows] = alpha
            fit.scale[rows] = scale
            fit.betas[rows] = (beta_c * scale[:, None] + offset[:, None]) * pct[rows, None]
    return fit


def apply(fit: FrozenFit, data: Any, n_threads: int | None = None) -> np.ndarray:
    """The betas of another series of the same design through the fit's linear map.

    Parameters
    ----------
    fit
        From :func:`freeze`.
    data
        ``R`` arrays ``V x T_r`` (or ``X x Y x Z x T_r``) in the units of the fit's data (a
        response added to it, or the difference of two such series).
    n_threads
        BLAS threads (None: the process setting).

    Returns
    -------
    numpy.ndarray
        ``(V, N)`` float32 betas in the fit's units (% of its mean signal for types C and D),
        without the autoscale's offset.
    """
    td = fit.setup.td
    vox = as_voxel_data(data, td.run_lengths)
    if vox.n_voxels != fit.hrfindex.size:
        raise ValueError(
            f"the data have {vox.n_voxels} voxels; the frozen fit has {fit.hrfindex.size}"
        )
    out = np.zeros((vox.n_voxels, td.n_trials), dtype=np.float32)
    with blas_limits(n_threads):
        for rows, sols, bo in _rotated(fit, vox, vox.chunks(fit.setup.opts.chunklen)):
            beta = _rotate_back(sols, bo, fit.setup, fit.alpha[rows])
            out[rows] = beta * (fit.scale[rows] * fit.percent[rows])[:, None]
    return out


def _rotated(fit: FrozenFit, vox: Any, chunks: Sequence[tuple[int, int]]) -> Any:
    """Per HRF group and voxel block of each chunk: the rows, the run solvers and the rotated
    OLS coefficients ``(B, N)`` of ``vox``'s data."""
    setup = fit.setup
    td, opts = setup.td, setup.opts
    sls = td.runslices
    designs: dict[int, list[np.ndarray]] = {}
    solvers: dict[int, list[RunSolver]] = {}
    for v0, v1 in chunks:
        ys = [
            setup.poly_project(r, vox.read(r, v0, v1).astype(np.float64).T).T
            for r in range(td.n_runs)
        ]
        for h, idx in groups(fit.hrfindex[v0:v1]):
            if h not in solvers:
                designs[h] = [
                    setup.poly_project(
                        r, convolved_trials(setup.onsets[r], opts.hrflibrary[:, h], t)
                    )
                    for r, t in enumerate(td.run_lengths)
                ]
                solvers[h] = [solver(x, q) for x, q in zip(designs[h], fit.nuisance, strict=True)]
            for blk in blocks(idx, td.n_trials):
                bo = np.empty((blk.size, td.n_trials))
                for r, sol in enumerate(solvers[h]):
                    y = ys[r][blk]
                    e = y @ fit.nuisance[r] if fit.nuisance[r].shape[1] else None
                    c = sol.coefs(y @ designs[h][r], e)
                    bo[:, sls[r]] = (c @ sol.w) * sol.s2inv
                yield v0 + blk, solvers[h], bo


def _rotate_back(
    sols: Sequence[RunSolver], bo: np.ndarray, setup: Setup, alpha: np.ndarray | None = None
) -> np.ndarray:
    """``(B, N)`` betas from rotated coefficients, shrunk by ``alpha`` per voxel if given."""
    out = np.empty_like(bo)
    for r, sol in enumerate(sols):
        sl = setup.td.runslices[r]
        b = bo[:, sl]
        if alpha is not None:
            b = b * shrinkage(sol.s**2, np.maximum(alpha, 0.0))
        out[:, sl] = b @ sol.w.T
    return out


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b|`` relative to the 99th percentile of ``|b|`` (finite entries): how far
    :attr:`FrozenFit.betas` are from the fit's own betas."""
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return math.nan
    ref = float(np.percentile(np.abs(b[ok]), 99))
    return float(np.max(np.abs(a[ok] - b[ok]))) / ref if ref > 0 else math.nan


__all__ = ["MODELS", "Choices", "FrozenFit", "apply", "freeze", "relative_difference"]

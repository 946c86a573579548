"""Types C (GLMdenoise) and D (fractional ridge) of the GLMsingle engine.

No further data access: per HRF group and voxel block, the SVD of the projected design (one per
run, with the chosen number of PCs as nuisance) gives the OLS betas (type C), and the whole
ridge-fraction path comes from the same rotated coefficients (vectorised penalty search,
:mod:`echoprep.kernels.glm.ridge`; badness from per-trial weights,
:mod:`echoprep.kernels.glm.xval`), then the chosen fraction per voxel and the autoscale
(type D).
"""

from __future__ import annotations

import logging

import numpy as np

from echoprep.kernels.glm.fit import RunSolver, r2_percent, solver, sse
from echoprep.kernels.glm.ridge import autoscale, fraction_alphas, shrinkage
from echoprep.kernels.glm.state import Basis, Plan, Setup, TypeB, TypesCD, blocks, groups
from echoprep.kernels.glm.xval import badness, reference

log = logging.getLogger(__name__)

#: Lower bound of a ridge penalty in the vectorised fraction path (keeps dropped components,
#: whose coefficient is 0, at 0 instead of 0/0).
TINY_ALPHA = 1e-30


def empty_types_cd(setup: Setup, plan: Plan) -> TypesCD:
    """The outputs of the type-C/D pass before it fills them (:class:`TypesCD`; type-D betas
    with ridge output): zero betas and scale/offset, NaN badness and fractions."""
    td, opts = setup.td, setup.opts
    n_vox, n_runs, n_trials = setup.vox.n_voxels, td.n_runs, td.n_trials
    n_user = int(plan.selectable.sum()) if not opts.fracs_scalar else opts.fracs.size
    return TypesCD(
        r2_c=np.empty(n_vox, dtype=np.float32),
        r2run_c=np.empty((n_vox, n_runs), dtype=np.float32),
        betas_d=np.zeros((n_vox, n_trials), dtype=np.float32)
        if plan.ridge and plan.want[3]
        else None,
        r2_d=np.empty(n_vox, dtype=np.float32),
        r2run_d=np.empty((n_vox, n_runs), dtype=np.float32),
        rrbadness=np.full((n_vox, n_user), np.nan),
        fracvalue=np.full(n_vox, np.nan),
        scaleoffset=np.zeros((n_vox, 2)),
    )


def types_c_d(
    setup: Setup,
    plan: Plan,
    chunks: list[tuple[int, int]],
    basis: Basis,
    typeb: TypeB,
    pcnum: int,
) -> TypesCD:
    """Types C and D from the type-B pass's ``d`` and ``e`` (no further data access).

    Parameters
    ----------
    setup, plan
        The engine's setup and plan.
    chunks
        ``(v0, v1)`` voxel ranges.
    basis
        Sums of squares, projected designs and nuisance directions.
    typeb
        The type-B pass's output; its ``dstore`` is overwritten with the type-C betas (raw
        units).
    pcnum
        Number of GLMdenoise PCs used.

    Returns
    -------
    TypesCD
    """
    td, opts = setup.td, setup.opts
    ss, xw, q_all, level_k = basis.ss, basis.xw, basis.q_all, basis.level_k
    n_runs, n_trials = td.n_runs, td.n_trials
    sls = td.runslices
    assert typeb.dstore is not None
    dstore: np.ndarray = typeb.dstore
    estore: list[np.ndarray] = typeb.estore
    do_d = plan.ridge and plan.want[3]
    fit_fracs = plan.fit_fracs
    sel_idx = np.flatnonzero(plan.selectable)
    cd = empty_types_cd(setup, plan)
    cross_validate = do_d and not opts.fracs_scalar
    hidx_all = typeb.hrfindex

    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle types C/D: chunk %d of %d", k + 1, len(chunks))
        for h, idx in groups(hidx_all[v0:v1]):
            sols: list[RunSolver] = [
                solver(xw[h][r], q_all[r][:, : level_k[r][pcnum]]) for r in range(n_runs)
            ]
            s2 = np.concatenate([s.s**2 for s in sols])
            w32 = [s.w.astype(np.float32) for s in sols]
            for blk in blocks(idx, n_trials):
                rows = v0 + blk
                d_b = dstore[rows]
                ss_b = ss[rows]
                bo = np.empty((blk.size, n_trials))  # rotated OLS coefficients
                beta1 = np.empty((blk.size, n_trials))
                sse_run = np.empty((blk.size, n_runs))
                for r, sol in enumerate(sols):
                    c = sol.coefs(d_b[:, sls[r]], estore[r][rows])
                    bo[:, sls[r]] = (c @ sol.w) * sol.s2inv
                    beta1[:, sls[r]] = bo[:, sls[r]] @ sol.w.T
                    sse_run[:, r] = sse(ss_b[:, r], beta1[:, sls[r]], d_b[:, sls[r]], sol.gw)
                cd.r2_c[rows] = r2_percent(sse_run.sum(axis=1), ss_b.sum(axis=1))
                cd.r2run_c[rows] = r2_percent(sse_run, ss_b)
                if do_d:
                    assert cd.betas_d is not None
                    alphas = fraction_alphas(s2, bo, fit_fracs)
                    if cross_validate:
                        ref = reference(beta1, plan.cv)
                        bad = np.empty((blk.size, fit_fracs.size))
                        # ridge coefficients b s²/(s² + alpha) for all runs at once (float32)
                        bs2 = (bo * s2).astype(np.float32)
                        s2_32 = s2.astype(np.float32)
                        coef = np.empty((blk.size, n_trials), dtype=np.float32)
                        beta_l = np.empty((blk.size, n_trials), dtype=np.float32)
                        for li in range(fit_fracs.size):
                            if fit_fracs[li] >= 1.0:
                                bad[:, li] = badness(beta1, plan.cv, ref)
                                continue
                            a32 = np.maximum(alphas[:, li], TINY_ALPHA).astype(np.float32)
                            np.add(s2_32, a32[:, None], out=coef)
                            np.divide(bs2, coef, out=coef)
                            for r in range(n_runs):
                                np.matmul(coef[:, sls[r]], w32[r].T, out=beta_l[:, sls[r]])
                            bad[:, li] = badness(beta_l, plan.cv, ref)
                        choice = sel_idx[np.argmin(bad[:, sel_idx], axis=1)]
                        cd.rrbadness[rows] = bad[:, sel_idx]
                    else:
                        choice = np.full(blk.size, sel_idx[0])
                    cd.fracvalue[rows] = fit_fracs[choice]
                    alpha = alphas[np.arange(blk.size), choice]
                    beta_c = np.empty((blk.size, n_trials))
                    for r, sol in enumerate(sols):
                        sc = shrinkage(sol.s**2, alpha)
                        beta_c[:, sls[r]] = (bo[:, sls[r]] * sc) @ sol.w.T
                        sse_run[:, r] = sse(ss_b[:, r], beta_c[:, sls[r]], d_b[:, sls[r]], sol.gw)
                    cd.r2_d[rows] = r2_percent(sse_run.sum(axis=1), ss_b.sum(axis=1))
                    cd.r2run_d[rows] = r2_percent(sse_run, ss_b)
                    if opts.wantautoscale:
                        scale, offset = autoscale(beta1, beta_c)
                    else:
                        scale, offset = np.ones(blk.size), np.zeros(blk.size)
                    cd.scaleoffset[rows, 0] = scale
                    cd.scaleoffset[rows, 1] = offset
                    cd.betas_d[rows] = beta_c * scale[:, None] + offset[:, None]
                dstore[rows] = beta1
    return cd


__all__ = ["TINY_ALPHA", "types_c_d"]

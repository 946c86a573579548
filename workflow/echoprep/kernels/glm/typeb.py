"""Type B of the GLMsingle engine (FITHRF: library HRF per voxel, least squares) and the
GLMdenoise cross-validation, in one pass over the data.

Per chunk of voxels, ``d_h = yw @ X_h`` for all library HRFs at once from the banded
single-trial design (one ``H x m`` by ``m x voxels`` product per trial,
:func:`~echoprep.kernels.glm.fit.trial_products`), then per HRF and run the whitened
coefficients ``t = (d - e m') W diag(1/s)`` and the fitted sum of squares; only R² is kept per
HRF. The betas and ``d`` of the chosen HRF are recomputed per HRF group (one GEMM per run), and
``e = yw @ q`` (extra regressors and PCs) is kept. Then, per HRF group, the GLMdenoise
cross-validation from ``d`` and ``e`` alone (:func:`_xval_group`: one small eigendecomposition
per run and number of PCs). ``stop_at="typeb"`` in the GLM stage ends after this pass.
"""

from __future__ import annotations

import logging

import numpy as np

from echoprep.kernels.glm.design import convolved_trials
from echoprep.kernels.glm.fit import gram_pinv_eigh, lss_betas, r2_percent, solver, trial_products
from echoprep.kernels.glm.state import Basis, Plan, Setup, TypeB, blocks, groups
from echoprep.kernels.glm.xval import badness, reference

log = logging.getLogger(__name__)

#: Elements of the ``trials x HRFs x voxels`` products of one run in the type-B pass (bounds
#: its voxel sub-blocks).
SUBBLOCK_ELEMENTS = 8_000_000


def empty_type_b(setup: Setup, basis: Basis, need_d: bool) -> TypeB:
    """The outputs of the type-B pass before it fills them (:class:`TypeB`; ``d`` with
    ``need_d``, the per-run R² of every HRF with ``wantfithrfr2run``): zero betas, ``d``,
    ``e`` and HRF indices, NaN badness."""
    td, opts = setup.td, setup.opts
    n_vox, n_runs, n_trials, n_h = setup.vox.n_voxels, td.n_runs, td.n_trials, len(basis.xw)
    return TypeB(
        betas=np.zeros((n_vox, n_trials), dtype=np.float32),
        dstore=np.zeros((n_vox, n_trials), dtype=np.float32) if need_d else None,
        estore=[np.zeros((n_vox, q.shape[1]), dtype=np.float32) for q in basis.q_all],
        fithrfr2=np.empty((n_vox, n_h), dtype=np.float32),
        fithrfr2run=np.empty((n_vox, n_runs, n_h), dtype=np.float32)
        if opts.wantfithrfr2run
        else None,
        r2=np.empty(n_vox, dtype=np.float32),
        r2run=np.empty((n_vox, n_runs), dtype=np.float32),
        hrfindex=np.zeros(n_vox, dtype=np.int64),
        hrfindexrun=np.zeros((n_vox, n_runs), dtype=np.int64),
        glmbadness=np.full((n_vox, opts.n_pcs + 1), np.nan),
    )


def type_b_and_xval(
    setup: Setup, plan: Plan, chunks: list[tuple[int, int]], basis: Basis, need_d: bool
) -> TypeB:
    """The type-B pass (one read of the data), with the GLMdenoise cross-validation.

    Parameters
    ----------
    setup, plan
        The engine's setup and plan.
    chunks
        ``(v0, v1)`` voxel ranges read at a time.
    basis
        Sums of squares, projected designs and nuisance directions (PCs included).
    need_d
        Keep ``d = yw @ X_h`` of the chosen HRF (for LSS, the cross-validation or the
        type-C/D pass).

    Returns
    -------
    TypeB
        Raw-unit betas (percent scaling is the caller's), R², HRF choice, ``d``, ``e`` and
        the GLMdenoise badness.
    """
    td, opts = setup.td, setup.opts
    ss, xw, q_all, level_k = basis.ss, basis.xw, basis.q_all, basis.level_k
    n_runs, n_h = td.n_runs, len(xw)
    sls = td.runslices
    tb = empty_type_b(setup, basis, need_d)
    x32 = [
        [
            convolved_trials(setup.onsets[r], opts.hrflibrary[:, h], t).astype(np.float32)
            for r, t in enumerate(td.run_lengths)
        ]
        for h in range(n_h)
    ]
    sol0 = [[solver(xw[h][r], setup.qe[r]) for r in range(n_runs)] for h in range(n_h)]
    ws32 = [[s.whitener().astype(np.float32) for s in row] for row in sol0]
    wst32 = [[np.ascontiguousarray(w.T) for w in row] for row in ws32]
    m32 = [[s.m.astype(np.float32) for s in row] for row in sol0]
    gw32 = [[s.gw.astype(np.float32) for s in row] for row in sol0]
    q32 = [q.astype(np.float32) for q in q_all]
    extra = [q.shape[1] > 0 for q in setup.qe]
    k_e = [q.shape[1] for q in setup.qe]
    hrfs_t = np.ascontiguousarray(opts.hrflibrary.T, dtype=np.float32)
    max_n = max(int(td.numtrialrun.max()), 1)
    sub = max(256, SUBBLOCK_ELEMENTS // (n_h * max_n))

    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle type B: chunk %d of %d", k + 1, len(chunks))
        nv = v1 - v0
        ys = []
        for r in range(n_runs):
            y, _ = setup.read_projected(r, v0, v1)
            if q32[r].shape[1]:
                tb.estore[r][v0:v1] = y @ q32[r]
            ys.append(y)
        ss_c = ss[v0:v1]
        # residual sum of squares of every HRF, run and voxel (task-only fit)
        sse_all = np.empty((nv, n_runs, n_h))
        for b0 in range(0, nv, sub):
            b1 = min(nv, b0 + sub)
            for r in range(n_runs):
                prods = trial_products(ys[r][b0:b1], setup.onsets[r], hrfs_t)  # (n, H, B)
                e_t = tb.estore[r][v0 + b0 : v0 + b1, : k_e[r]].T if extra[r] else None
                for h in range(n_h):
                    d_t = prods[:, h, :]  # (n, B) = (yw @ X_h)'
                    c_t = d_t - m32[h][r] @ e_t if e_t is not None else d_t
                    t_t = wst32[h][r] @ c_t  # (n, B)
                    if e_t is None:  # fitted sum of squares = |t|²
                        fitted = np.einsum("ij,ij->j", t_t, t_t, dtype=np.float64)
                    else:
                        b_t = ws32[h][r] @ t_t
                        fitted = 2.0 * np.einsum("ij,ij->j", b_t, d_t, dtype=np.float64)
                        fitted -= np.einsum("ij,ij->j", gw32[h][r] @ b_t, b_t, dtype=np.float64)
                    sse_all[b0:b1, r, h] = np.maximum(ss_c[b0:b1, r] - fitted, 0.0)
        r2_all = r2_percent(sse_all.sum(axis=1), ss_c.sum(axis=1)[:, None])  # (nv, H)
        r2run_all = r2_percent(sse_all, ss_c[:, :, None])  # (nv, R, H)
        del sse_all
        tb.fithrfr2[v0:v1] = r2_all
        if tb.fithrfr2run is not None:
            tb.fithrfr2run[v0:v1] = r2run_all
        # best HRF: highest pooled R² (first on ties; 0 where all are NaN)
        hidx = np.argmax(np.where(np.isnan(r2_all), -np.inf, r2_all), axis=1)
        tb.hrfindex[v0:v1] = hidx
        tb.hrfindexrun[v0:v1] = np.argmax(np.where(np.isnan(r2run_all), -np.inf, r2run_all), axis=2)
        rows = np.arange(nv)
        tb.r2[v0:v1] = r2_all[rows, hidx]
        tb.r2run[v0:v1] = r2run_all[rows, :, hidx]
        del r2_all, r2run_all
        # betas (and d for C/D) of the chosen HRF, group by group
        bview = tb.betas[v0:v1]
        for h, idx in groups(hidx):
            for r in range(n_runs):
                sl = sls[r]
                d = ys[r][idx] @ x32[h][r]
                c = d - tb.estore[r][v0 + idx, : k_e[r]] @ m32[h][r].T if extra[r] else d
                bview[idx, sl] = (c @ ws32[h][r]) @ wst32[h][r]
                if tb.dstore is not None:
                    tb.dstore[v0 + idx, sl] = d
        del ys

        if opts.wantlss:
            assert tb.dstore is not None
            for h, idx in groups(hidx):
                d_g = tb.dstore[v0 + idx]
                for r in range(n_runs):
                    sol = sol0[h][r]
                    c = sol.coefs(d_g[:, sls[r]], tb.estore[r][v0 + idx])
                    bview[idx, sls[r]] = lss_betas(c, sol.gram())

        if plan.xval_pcs:
            assert tb.dstore is not None
            log.info("GLMsingle GLMdenoise cross-validation: chunk %d of %d", k + 1, len(chunks))
            for h, idx in groups(hidx):
                _xval_group(
                    plan,
                    sls,
                    [xw[h][r] for r in range(n_runs)],
                    [s.gw for s in sol0[h]],
                    q_all,
                    level_k,
                    opts.n_pcs,
                    tb.dstore,
                    tb.estore,
                    v0 + idx,
                    tb.glmbadness,
                )
    return tb


def _xval_group(
    plan: Plan,
    sls: tuple[slice, ...],
    xw: list[np.ndarray],
    gw: list[np.ndarray],
    q_all: list[np.ndarray],
    level_k: list[np.ndarray],
    n_pcs: int,
    dstore: np.ndarray,
    estore: list[np.ndarray],
    rows: np.ndarray,
    glmbadness: np.ndarray,
) -> None:
    """GLMdenoise badness of one HRF group for 0..n_pcs PCs (writes ``glmbadness[rows]``).

    Per run and level, ``G = xw'xw - m m'`` (``m = xw' q`` for the level's nuisance directions)
    is pseudo-inverted by eigendecomposition; betas are ``(d - e m') G^+`` (float32 products).
    """
    n_runs = len(xw)
    n_trials = dstore.shape[1]
    m_all = [xw[r].T @ q_all[r] for r in range(n_runs)]
    levels = []
    for n in range(n_pcs + 1):
        per_run = []
        for r in range(n_runs):
            m = m_all[r][:, : level_k[r][n]]
            ginv = gram_pinv_eigh(gw[r] - m @ m.T)
            per_run.append((m.astype(np.float32), ginv.astype(np.float32)))
        levels.append(per_run)
    for blk in blocks(rows, n_trials):
        d_b = dstore[blk]
        e_b = [estore[r][blk] for r in range(n_runs)]
        ref = None
        beta = np.empty((blk.size, n_trials), dtype=np.float32)
        for n, per_run in enumerate(levels):
            for r, (m, ginv) in enumerate(per_run):
                c = d_b[:, sls[r]]
                if m.shape[1]:
                    c = c - e_b[r][:, : m.shape[1]] @ m.T
                beta[:, sls[r]] = c @ ginv
            if ref is None:
                ref = reference(beta, plan.cv)
            glmbadness[blk, n] = badness(beta, plan.cv, ref)


__all__ = ["SUBBLOCK_ELEMENTS", "type_b_and_xval"]

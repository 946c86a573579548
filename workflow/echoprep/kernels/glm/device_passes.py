"""Type A, the GLMdenoise noise PCs, type B and the GLMdenoise cross-validation
(:mod:`echoprep.kernels.glm.device_xval`) on a torch device: the passes over the data of
:mod:`echoprep.kernels.glm.engine` and :mod:`echoprep.kernels.glm.typeb`, same inputs and
outputs (docs/glm.md §14, "GPU").

Each pass moves one voxel chunk of one run at a time to the device (float64) and removes the
polynomials there. Type B fits every library HRF with one dense product of the chunk with the
run's stacked designs (``T_r x H n_r``) and one batched product with the whiteners, per voxel
block; the betas and ``d`` of the chosen HRF are gathered from those of all HRFs. The
cross-validation batches all PC levels and runs of an HRF group into one product. The small
factorisations (SVDs of the designs, pseudo-inverses per PC level, the PC eigenvectors) stay on
the CPU, in :meth:`~echoprep.kernels.glm.device.GlmDevice.map`'s thread pool, with the CPU
engine's own functions.
"""

from __future__ import annotations

import logging

import numpy as np

from echoprep.kernels.glm.data import raise_nonfinite
from echoprep.kernels.glm.device import GlmDevice, RunLayout
from echoprep.kernels.glm.device_ops import r2_percent
from echoprep.kernels.glm.device_xval import XvalGroups
from echoprep.kernels.glm.fit import RunSolver, solver
from echoprep.kernels.glm.noise import principal_components
from echoprep.kernels.glm.state import Basis, Plan, Setup, TypeB
from echoprep.kernels.glm.typeb import empty_type_b

log = logging.getLogger(__name__)


def device_type_a(
    dev: GlmDevice, setup: Setup, chunks: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxel means, ``|yw|²`` per run, ON-OFF R² and raw ON-OFF beta (the engine's type A).

    This first pass over the data also checks it for NaN/Inf (the CPU engine's
    :func:`~echoprep.kernels.glm.data.check_finite`, same error): a voxel with a NaN or Inf
    in a run has a mean that is not finite there.

    Returns
    -------
    meanvol, ss, onoff, beta
        ``(V,)`` raw, ``(V, R)`` raw², ``(V,)`` %, ``(V,)`` raw; float64 host arrays.
    """
    torch = dev.torch
    td, vox = setup.td, setup.vox
    n_vox, n_runs = vox.n_voxels, td.n_runs
    meansum = np.zeros(n_vox)
    ss = np.zeros((n_vox, n_runs))
    onoff = np.empty(n_vox)
    beta = np.empty(n_vox)
    xw, den = setup.onoff_design()
    xw_t = [dev.up(x) for x in xw]
    qe_t = [dev.up(q) for q in setup.qe]
    qx_t = [dev.up(q.T @ x) for q, x in zip(setup.qe, xw, strict=True)]
    nonfinite = [dev.torch.zeros((), dtype=dev.torch.int64, device=dev.device) for _ in xw]
    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle type A (device): chunk %d of %d", k + 1, len(chunks))
        num = dev.zeros(v1 - v0)
        ss_c = dev.zeros(v1 - v0, n_runs)
        ds = []
        for r, t in enumerate(td.run_lengths):
            y, mean = dev.read_projected(setup, r, v0, v1)
            nonfinite[r] += (~torch.isfinite(mean)).sum()
            meansum[v0:v1] += dev.down(mean) * t
            ss_c[:, r] = (y * y).sum(dim=1)
            d = y @ xw_t[r]
            num += d
            if qe_t[r].shape[1]:
                num -= (y @ qe_t[r]) @ qx_t[r]
            ds.append(d)
            del y
        b = num / den if den > 0 else torch.zeros_like(num)
        sse_tot = dev.zeros(v1 - v0)
        for r in range(n_runs):
            sse_tot += (ss_c[:, r] - 2 * b * ds[r] + b * b * float(xw[r] @ xw[r])).clamp(min=0.0)
        onoff[v0:v1] = dev.down(r2_percent(torch, sse_tot, ss_c.sum(dim=1)))
        beta[v0:v1] = dev.down(b)
        ss[v0:v1] = dev.down(ss_c)
    raise_nonfinite([int(n) for n in nonfinite])
    return meansum / sum(td.run_lengths), ss, onoff, beta


def device_pcs(
    dev: GlmDevice, setup: Setup, chunks: list[tuple[int, int]], pool: np.ndarray, n_keep: int
) -> list[np.ndarray]:
    """The noise pool's per-run PCs (``T_r x n_keep``; the engine's ``_pcs``): the pool's
    ``T_r x T_r`` matrices on the device, their eigenvectors on the CPU."""
    td = setup.td
    grams = [dev.zeros(t, t) for t in td.run_lengths]
    for v0, v1 in chunks:
        sel = np.flatnonzero(pool[v0:v1])
        if not sel.size:
            continue
        idx = dev.index(sel)
        for r in range(td.n_runs):
            y, _ = dev.read_projected(setup, r, v0, v1)
            y = y[idx]
            nrm = (y * y).sum(dim=1).sqrt()
            ok = nrm > 0
            n = dev.torch.where(ok[:, None], y / dev.torch.where(ok, nrm, 1.0)[:, None], 0.0)
            grams[r] += n.T @ n
    host = [dev.down(g) for g in grams]
    return dev.map(lambda g: principal_components(g, n_keep), host)


def _lss_weights(sol: RunSolver) -> tuple[np.ndarray, np.ndarray]:
    """``(p0, p1)`` ``(n,)``: the least-squares-separate beta of trial j is
    ``p0_j c_j + p1_j (sum(c) - c_j)`` (:func:`echoprep.kernels.glm.fit.lss_betas`)."""
    g = sol.gram()
    diag = np.diag(g)
    rows = g.sum(axis=1)
    a11, a12, a22 = diag, rows - diag, g.sum() - 2.0 * rows + diag
    det = a11 * a22 - a12**2
    regular = det > 1e-10 * np.maximum(np.abs(a11 * a22), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = np.where(regular, a22 / np.where(regular, det, 1.0), 0.0)
        p1 = np.where(regular, -a12 / np.where(regular, det, 1.0), 0.0)
    for j in np.flatnonzero(~regular):
        p = np.linalg.pinv(np.array([[a11[j], a12[j]], [a12[j], a22[j]]]), rcond=1e-10)
        p0[j], p1[j] = p[0, 0], p[0, 1]
    return p0, p1


class _TypeBTerms:
    """Per-run device stacks of the type-B pass: designs of every HRF ``(T_r, H n_r)``
    (polynomials removed),
    whiteners ``(H, n_r, n_r)`` and their transposes, ``xw' xw``, ``xw' q_extra`` and the LSS
    weights."""

    def __init__(self, dev: GlmDevice, setup: Setup, basis: Basis) -> None:
        opts = setup.opts
        n_h, n_runs = len(basis.xw), setup.td.n_runs
        pairs = [(h, r) for h in range(n_h) for r in range(n_runs)]
        sols = dev.map(lambda hr: solver(basis.xw[hr[0]][hr[1]], setup.qe[hr[1]]), pairs)
        self.sol = [[sols[h * n_runs + r] for r in range(n_runs)] for h in range(n_h)]
        self.x, self.ws, self.wst, self.gw, self.m, self.p0, self.p1 = ([] for _ in range(7))
        for r in range(n_runs):
            # the polynomial-free designs: yw has no polynomial part, so yw @ xw = yw @ X
            xs = [basis.xw[h][r] for h in range(n_h)]
            row = [self.sol[h][r] for h in range(n_h)]
            ws = np.stack([s.whitener() for s in row])
            self.x.append(dev.up(np.concatenate(xs, axis=1)))
            self.ws.append(dev.up(ws))
            self.wst.append(dev.up(np.ascontiguousarray(ws.transpose(0, 2, 1))))
            self.gw.append(dev.up(np.stack([s.gw for s in row])))
            self.m.append(dev.up(np.stack([s.m for s in row])))
            if opts.wantlss:
                p = [_lss_weights(s) for s in row]
                self.p0.append(dev.up(np.stack([a for a, _ in p])))
                self.p1.append(dev.up(np.stack([b for _, b in p])))


def device_type_b(
    dev: GlmDevice,
    setup: Setup,
    plan: Plan,
    chunks: list[tuple[int, int]],
    basis: Basis,
    need_d: bool,
) -> TypeB:
    """The type-B pass with the GLMdenoise cross-validation
    (:func:`echoprep.kernels.glm.typeb.type_b_and_xval` on the device; same arguments and
    result)."""
    torch = dev.torch
    td, opts = setup.td, setup.opts
    ss, q_all = basis.ss, basis.q_all
    n_runs, n_trials, n_h = td.n_runs, td.n_trials, len(basis.xw)
    sls = td.runslices
    layout = RunLayout.of(sls)
    k_e = [q.shape[1] for q in setup.qe]
    tb = empty_type_b(setup, basis, need_d)
    terms = _TypeBTerms(dev, setup, basis)
    q_t = [dev.up(q) for q in q_all]
    xval = XvalGroups(dev, setup, plan, basis, terms.sol, layout) if plan.xval_pcs else None
    # kept per voxel for all runs: d and betas of every HRF
    sub = dev.block_rows(2 * n_h * n_trials * 8 + 4 * n_h * layout.n_max * 8)

    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle type B (device): chunk %d of %d", k + 1, len(chunks))
        nv = v1 - v0
        ys, es = [], []
        for r in range(n_runs):
            y, _ = dev.read_projected(setup, r, v0, v1)
            e = y @ q_t[r]
            tb.estore[r][v0:v1] = dev.down(e, np.float32)
            ys.append(y)
            es.append(e)
        ss_c = dev.up(ss[v0:v1])
        d_chunk = dev.zeros(nv, n_trials)
        for b0 in range(0, nv, sub):
            b1 = min(nv, b0 + sub)
            rows = torch.arange(b1 - b0, device=dev.device)
            sse_all = dev.zeros(b1 - b0, n_runs, n_h)
            d_all, beta_all = [], []
            for r in range(n_runs):
                n_r = sls[r].stop - sls[r].start
                d = (ys[r][b0:b1] @ terms.x[r]).reshape(b1 - b0, n_h, n_r).transpose(0, 1)
                c = d
                if k_e[r]:
                    c = d - es[r][b0:b1, : k_e[r]] @ terms.m[r].transpose(1, 2)
                t = c @ terms.ws[r]  # (H, B, n)
                bet = t @ terms.wst[r]
                if k_e[r]:
                    fitted = 2.0 * (bet * d).sum(dim=-1) - ((bet @ terms.gw[r]) * bet).sum(dim=-1)
                else:  # fitted sum of squares = |t|²
                    fitted = (t * t).sum(dim=-1)
                sse_all[:, r, :] = (ss_c[b0:b1, r, None] - fitted.T).clamp(min=0.0)
                d_all.append(d)
                beta_all.append(bet)
                del t, c
            r2_all = r2_percent(torch, sse_all.sum(dim=1), ss_c[b0:b1].sum(dim=1)[:, None])
            r2run_all = r2_percent(torch, sse_all, ss_c[b0:b1, :, None])
            del sse_all
            ninf = torch.tensor(-float("inf"), dtype=r2_all.dtype, device=dev.device)
            hidx = torch.argmax(torch.where(torch.isnan(r2_all), ninf, r2_all), dim=1)
            hrun = torch.argmax(torch.where(torch.isnan(r2run_all), ninf, r2run_all), dim=2)
            g0, g1 = v0 + b0, v0 + b1
            tb.fithrfr2[g0:g1] = dev.down(r2_all, np.float32)
            if tb.fithrfr2run is not None:
                tb.fithrfr2run[g0:g1] = dev.down(r2run_all, np.float32)
            tb.hrfindex[g0:g1] = dev.down(hidx)
            tb.hrfindexrun[g0:g1] = dev.down(hrun)
            tb.r2[g0:g1] = dev.down(r2_all[rows, hidx], np.float32)
            tb.r2run[g0:g1] = dev.down(r2run_all[rows, :, hidx], np.float32)
            del r2_all, r2run_all
            bsel = torch.empty((b1 - b0, n_trials), dtype=dev.f64, device=dev.device)
            for r in range(n_runs):
                sl = sls[r]
                d_sel = d_all[r][hidx, rows]
                d_chunk[b0:b1, sl] = d_sel
                if opts.wantlss:
                    c_sel = d_sel
                    if k_e[r]:
                        m_sel = terms.m[r][hidx]  # (B, n, k)
                        e_b = es[r][b0:b1, : k_e[r]]
                        c_sel = d_sel - (m_sel @ e_b[:, :, None])[..., 0]
                    csum = c_sel.sum(dim=1, keepdim=True)
                    bsel[:, sl] = terms.p0[r][hidx] * c_sel + terms.p1[r][hidx] * (csum - c_sel)
                else:
                    bsel[:, sl] = beta_all[r][hidx, rows]
            tb.betas[g0:g1] = dev.down(bsel, np.float32)
            del d_all, beta_all, bsel
        del ys
        if tb.dstore is not None:
            tb.dstore[v0:v1] = dev.down(d_chunk, np.float32)
        if xval is not None:
            log.info("GLMsingle GLMdenoise cross-validation (device): chunk %d", k + 1)
            xval.run(d_chunk, es, tb.hrfindex[v0:v1], tb.glmbadness[v0:v1])
        del d_chunk, es
    dev.release()  # the last pass over the data
    return tb


__all__ = ["device_pcs", "device_type_a", "device_type_b"]

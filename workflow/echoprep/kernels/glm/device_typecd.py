"""Types C (GLMdenoise) and D (fractional ridge) on a torch device
(:func:`echoprep.kernels.glm.typecd.types_c_d`, same arguments and result; docs/glm.md §14,
"GPU").

Per HRF group, the SVDs of the runs' projected designs with ``pcnum`` PCs are computed on the
CPU (:func:`echoprep.kernels.glm.fit.solver`, in the device's thread pool) and padded into one
``(R, n_max, n_max)`` batch. Per voxel block on the device: the rotated OLS coefficients and
type-C betas of all runs in one batched product, the penalties of every ridge fraction at once,
the ridge betas of every fraction in one batched product and their badness, then the chosen
fraction, R² and autoscale.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from echoprep.kernels.glm.device import GlmDevice, RunLayout
from echoprep.kernels.glm.device_ops import (
    DeviceCrossValidation,
    autoscale,
    fraction_alphas,
    r2_percent,
    shrinkage,
    sse,
)
from echoprep.kernels.glm.fit import RunSolver, solver
from echoprep.kernels.glm.state import Basis, Plan, Setup, TypeB, TypesCD, groups
from echoprep.kernels.glm.typecd import TINY_ALPHA, empty_types_cd

log = logging.getLogger(__name__)


class _GroupSolvers:
    """The padded solvers of one HRF group (all runs, ``pcnum`` PCs as nuisance): ``w``
    ``(R, n_max, n_max)``, ``s2`` and ``s2inv`` ``(R, n_max)``, ``gw`` ``(R, n_max, n_max)``,
    ``m`` ``(R, n_max, k_max)`` on the device, ``s2_flat`` ``(R n_max,)`` on the host."""

    def __init__(self, dev: GlmDevice, sols: list[RunSolver], layout: RunLayout) -> None:
        k_max = max([s.k for s in sols] + [1])
        self.k = max(s.k for s in sols)
        s2 = layout.stack_vectors([s.s**2 for s in sols])
        self.s2_flat = s2.reshape(-1)
        self.w = dev.up(layout.stack([s.w for s in sols]))
        self.wt = self.w.transpose(1, 2)
        self.s2 = dev.up(s2)
        self.s2inv = dev.up(layout.stack_vectors([s.s2inv for s in sols]))
        self.gw = dev.up(layout.stack([s.gw for s in sols]))
        self.m = dev.up(layout.stack([s.m for s in sols], cols=k_max))


def device_types_c_d(
    dev: GlmDevice,
    setup: Setup,
    plan: Plan,
    chunks: list[tuple[int, int]],
    basis: Basis,
    typeb: TypeB,
    pcnum: int,
) -> TypesCD:
    """Types C and D from the type-B pass's ``d`` and ``e`` on the device (the arguments and
    result of :func:`echoprep.kernels.glm.typecd.types_c_d`).

    ``chunks`` is unused: the pass reads no data. It moves contiguous voxel blocks of ``d``
    and ``e`` to the device (at most :data:`~echoprep.kernels.glm.device.DEVICE_BLOCK_BYTES`
    of them and their outputs), fits each block's HRF groups in sub-blocks gathered on the
    device (temporaries bounded likewise) and writes the block's outputs back in one piece."""
    del chunks
    torch = dev.torch
    td, vox, opts = setup.td, setup.vox, setup.opts
    ss, q_all, level_k = basis.ss, basis.q_all, basis.level_k
    n_vox, n_runs, n_trials = vox.n_voxels, td.n_runs, td.n_trials
    layout = RunLayout.of(td.runslices)
    assert typeb.dstore is not None
    dstore: np.ndarray = typeb.dstore
    do_d = plan.ridge and plan.want[3]
    fit_fracs = plan.fit_fracs
    cd = empty_types_cd(setup, plan)
    cross_validate = do_d and not opts.fracs_scalar
    hidx_all = typeb.hrfindex
    present = [h for h, _ in groups(hidx_all)]
    pairs = [(h, r) for h in present for r in range(n_runs)]
    flat = dev.map(
        lambda hr: solver(basis.xw[hr[0]][hr[1]], q_all[hr[1]][:, : level_k[hr[1]][pcnum]]), pairs
    )
    solvers = {
        h: _GroupSolvers(dev, flat[g * n_runs : (g + 1) * n_runs], layout)
        for g, h in enumerate(present)
    }
    k_cols = [min(int(level_k[r][pcnum]), typeb.estore[r].shape[1]) for r in range(n_runs)]
    fit = _RowFit(dev, plan, layout, cross_validate, do_d, bool(opts.wantautoscale))
    n_fit = fit_fracs.size if cross_validate else 1
    step = dev.block_rows((8 + 3 * n_fit) * n_runs * layout.n_max * 8)
    outer = dev.block_rows(
        (4 * n_trials + 2 * n_runs + cd.rrbadness.shape[1] + 8 + sum(k_cols)) * 8
    )

    for v0 in range(0, n_vox, outer):
        v1 = min(n_vox, v0 + outer)
        log.debug("GLMsingle types C/D (device): voxels %d to %d", v0, v1)
        d_all = dev.up(dstore[v0:v1])
        e_all = [dev.up(typeb.estore[r][v0:v1, : k_cols[r]]) for r in range(n_runs)]
        ss_all = dev.up(ss[v0:v1])
        out: dict[str, Any] = {}
        for h, idx in groups(hidx_all[v0:v1]):
            for k in range(0, idx.size, step):
                it = dev.index(idx[k : k + step])
                res = fit.rows(solvers[h], d_all[it], [e[it] for e in e_all], ss_all[it])
                for name, value in res.items():
                    if name not in out:
                        out[name] = torch.zeros(
                            (v1 - v0, *value.shape[1:]), dtype=value.dtype, device=dev.device
                        )
                    out[name][it] = value
        cd.r2_c[v0:v1] = dev.down(out["r2_c"], np.float32)
        cd.r2run_c[v0:v1] = dev.down(out["r2run_c"], np.float32)
        dstore[v0:v1] = dev.down(out["beta1"], np.float32)
        if do_d:
            assert cd.betas_d is not None
            cd.betas_d[v0:v1] = dev.down(out["betas_d"], np.float32)
            cd.r2_d[v0:v1] = dev.down(out["r2_d"], np.float32)
            cd.r2run_d[v0:v1] = dev.down(out["r2run_d"], np.float32)
            cd.scaleoffset[v0:v1] = dev.down(out["so"])
            cd.fracvalue[v0:v1] = fit_fracs[dev.down(out["choice"])]
            if cross_validate:
                cd.rrbadness[v0:v1] = dev.down(out["rrbad"])
        del d_all, e_all, ss_all, out
    return cd


class _RowFit:
    """Types C and D of a voxel sub-block sharing one HRF (:meth:`rows`)."""

    def __init__(
        self,
        dev: GlmDevice,
        plan: Plan,
        layout: RunLayout,
        cross_validate: bool,
        do_d: bool,
        wantautoscale: bool,
    ) -> None:
        self.dev, self.layout, self.do_d, self.autoscale = dev, layout, do_d, wantautoscale
        self.fit_fracs = plan.fit_fracs
        self.sel_idx = np.flatnonzero(plan.selectable)
        self.cv = DeviceCrossValidation(dev, plan.cv) if cross_validate else None
        self.one = dev.torch.as_tensor(self.fit_fracs >= 1.0, device=dev.device)
        self.any_one = bool((self.fit_fracs >= 1.0).any())
        self.sel_t = dev.index(self.sel_idx)

    def rows(self, gs: _GroupSolvers, d_rows: Any, e_rows: list[Any], ss_rows: Any) -> dict:
        """Outputs of one sub-block: ``beta1`` (type C), ``r2_c``, ``r2run_c`` and, with type
        D, ``betas_d``, ``r2_d``, ``r2run_d``, ``choice`` (fraction index), ``so`` (scale,
        offset) and ``rrbad`` (with cross-validation).

        Parameters
        ----------
        gs
            The HRF group's solvers.
        d_rows
            ``(B, N)`` ``d`` of the voxels.
        e_rows
            ``R`` tensors ``(B, k_r)``: ``e`` with the ``pcnum`` PCs' columns.
        ss_rows
            ``(B, R)`` ``|yw|²``.
        """
        dev, layout = self.dev, self.layout
        torch = dev.torch
        nb = d_rows.shape[0]
        d = layout.pad(dev, d_rows)  # (R, B, n_max)
        c = d
        if gs.k:
            e = dev.zeros(layout.n_runs, nb, gs.m.shape[2])
            for r, er in enumerate(e_rows):
                e[r, :, : er.shape[1]] = er
            c = d - e @ gs.m.transpose(1, 2)
        bo = (c @ gs.w) * gs.s2inv[:, None, :]  # rotated OLS coefficients
        beta1_p = bo @ gs.wt
        ss_b = ss_rows.T  # (R, B)
        sse_run = sse(ss_b, beta1_p, d, gs.gw)  # (R, B)
        beta1 = layout.unpad(dev, beta1_p)  # (B, N)
        out = {
            "beta1": beta1,
            "r2_c": r2_percent(torch, sse_run.sum(dim=0), ss_b.sum(dim=0)),
            "r2run_c": r2_percent(torch, sse_run, ss_b).T,
        }
        if not self.do_d:
            return out
        bo_flat = bo.transpose(0, 1).reshape(nb, -1)  # (B, R n_max)
        alphas = fraction_alphas(dev, gs.s2_flat, bo_flat, self.fit_fracs)  # (B, F)
        if self.cv is not None:
            ref = self.cv.reference(beta1)
            a = torch.clamp(alphas, min=TINY_ALPHA).T  # (F, B); fraction 1: below
            coef = (bo * gs.s2[:, None, :])[None] / (gs.s2[None, :, None, :] + a[:, None, :, None])
            beta_l = layout.unpad(dev, coef @ gs.wt)  # (F, B, N)
            del coef
            if self.any_one:
                beta_l[self.one] = beta1
            bad = self.cv.badness(beta_l, ref).T  # (B, F)
            del beta_l
            choice = self.sel_t[torch.argmin(bad[:, self.sel_t], dim=1)]
            out["rrbad"] = bad[:, self.sel_t]
        else:
            choice = torch.full((nb,), int(self.sel_idx[0]), dtype=torch.int64, device=dev.device)
        alpha = alphas[torch.arange(nb, device=dev.device), choice]
        sc = shrinkage(torch, gs.s2[:, None, :], alpha[None, :])  # (R, B, n_max)
        beta_c_p = (bo * sc) @ gs.wt
        sse_run = sse(ss_b, beta_c_p, d, gs.gw)
        beta_c = layout.unpad(dev, beta_c_p)
        if self.autoscale:
            scale, offset = autoscale(torch, beta1, beta_c)
        else:
            scale, offset = torch.ones_like(beta_c[:, 0]), torch.zeros_like(beta_c[:, 0])
        out.update(
            betas_d=beta_c * scale[:, None] + offset[:, None],
            r2_d=r2_percent(torch, sse_run.sum(dim=0), ss_b.sum(dim=0)),
            r2run_d=r2_percent(torch, sse_run, ss_b).T,
            choice=choice,
            so=torch.stack([scale, offset], dim=1),
        )
        return out


__all__ = ["device_types_c_d"]

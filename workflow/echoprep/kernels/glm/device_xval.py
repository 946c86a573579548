"""The GLMdenoise cross-validation of the type-B pass on a torch device
(:func:`echoprep.kernels.glm.typeb._xval_group`; docs/glm.md §6, §7 and §14 "GPU").

Per HRF group, the betas of every PC level (0..``n_pcs``) and run of a voxel block come from
one batched product, and their badness from :class:`~echoprep.kernels.glm.device_ops
.DeviceCrossValidation`. The levels' inverses are built on the device (Sherman-Morrison updates
of level 0's, each checked) and, where a check fails, taken from the CPU engine's
pseudo-inverse.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from echoprep.kernels.glm.device import GlmDevice, RunLayout
from echoprep.kernels.glm.device_ops import DeviceCrossValidation
from echoprep.kernels.glm.fit import RunSolver, gram_pinv_eigh
from echoprep.kernels.glm.state import Basis, Plan, Setup, groups

log = logging.getLogger(__name__)

#: Largest ``|G X - I|`` entry accepted for an inverse ``X`` of a cross-validation level's
#: ``G`` built on the device (Sherman-Morrison from level 0); beyond it, the CPU's
#: pseudo-inverse.
XVAL_INVERSE_TOL = 1e-9


class XvalGroups:
    """The GLMdenoise cross-validation of the type-B pass, per HRF group: all PC levels and
    runs of a voxel block in one batched product. Level matrices are built on first use of an
    HRF and kept.

    Parameters
    ----------
    dev
        The device.
    setup, plan, basis
        The engine's setup, plan and basis (PCs included).
    sols
        ``sols[h][r]``: the type-B solvers (level 0: extra regressors only) of HRF ``h`` and
        run ``r``.
    layout
        The runs' padded trial layout.
    """

    def __init__(
        self,
        dev: GlmDevice,
        setup: Setup,
        plan: Plan,
        basis: Basis,
        sols: list[list[RunSolver]],
        layout: RunLayout,
    ) -> None:
        self.dev, self.setup, self.basis, self.sols, self.layout = dev, setup, basis, sols, layout
        self.n_levels = setup.opts.n_pcs + 1
        self.k_max = max([q.shape[1] for q in basis.q_all] + [1])
        self.cv = DeviceCrossValidation(dev, plan.cv)
        self.cache: dict[int, tuple[Any, Any]] = {}

    def _levels(self, h: int) -> tuple[Any, Any]:
        """``(L, R, n_max, k_max)`` nuisance products ``m = xw' q`` and ``(L, R, n_max,
        n_max)`` inverses of ``G = xw' xw - m m'`` of HRF ``h`` for every PC level
        (``L = n_pcs + 1``), on the device.

        Level 0's inverse comes from the type-B SVD; each further PC direction ``m`` updates it
        by Sherman-Morrison, ``(G - m m')^-1 = X + (X m)(X m)' / (1 - m' X m)``, batched over
        the runs. Every inverse is then checked, ``max |G X - I| <= XVAL_INVERSE_TOL``; where
        the check fails (a singular or badly conditioned ``G``, whose pseudo-inverse drops
        directions) the CPU engine's :func:`~echoprep.kernels.glm.fit.gram_pinv_eigh` gives it
        instead, so the levels are the CPU engine's pseudo-inverses up to rounding."""
        if h in self.cache:
            return self.cache[h]
        dev, basis, lay = self.dev, self.basis, self.layout
        n_runs, n_lev = self.setup.td.n_runs, self.n_levels
        m_all = [basis.xw[h][r].T @ basis.q_all[r] for r in range(n_runs)]
        sol0 = self.sols[h]
        shape = (n_lev, n_runs, lay.n_max)
        mlev = np.zeros((*shape, self.k_max))
        for n in range(n_lev):
            for r in range(n_runs):
                k = int(basis.level_k[r][n])
                mlev[n, r, : m_all[r].shape[0], :k] = m_all[r][:, :k]
        mlev_t = dev.up(mlev)
        gw = dev.up(lay.stack([s.gw for s in sol0]))
        x = dev.up(lay.stack([s.gram_pinv() for s in sol0]))
        inv = [x]
        for n in range(1, n_lev):
            for j in range(max(int(k[n] - k[n - 1]) for k in basis.level_k)):
                cols = np.zeros((n_runs, lay.n_max))
                for r in range(n_runs):
                    c = int(basis.level_k[r][n - 1]) + j
                    if c < basis.level_k[r][n]:
                        cols[r, : m_all[r].shape[0]] = m_all[r][:, c]
                m = dev.up(cols)[:, :, None]  # (R, n_max, 1)
                u = x @ m
                den = 1.0 - (m * u).sum(dim=(1, 2))
                x = x + (u @ u.transpose(1, 2)) / den[:, None, None]
            inv.append(x)
        glev = dev.torch.stack(inv)  # (L, R, n_max, n_max)
        g = gw[None] - mlev_t @ mlev_t.transpose(-1, -2)
        eye = dev.up(lay.stack([np.eye(s.gw.shape[0]) for s in sol0]))
        err = (g @ glev - eye).abs().amax(dim=(-1, -2))  # (L, R)
        full = dev.torch.as_tensor([bool((s.s > 0).all()) for s in sol0], device=dev.device)
        bad = ~(err <= XVAL_INVERSE_TOL) | ~full[None, :]
        fix = [(int(n), int(r)) for n, r in dev.down(bad.nonzero())]
        if fix:
            log.debug(
                "GLMsingle cross-validation (device): HRF %d, %d level inverses from the CPU",
                h,
                len(fix),
            )
            g_host = dev.down(g)

            def one(task: tuple[int, int]) -> np.ndarray:
                n, r = task
                n_r = m_all[r].shape[0]
                return gram_pinv_eigh(g_host[n, r, :n_r, :n_r])

            for (n, r), a in zip(fix, dev.map(one, fix), strict=True):
                glev[n, r] = dev.up(lay.stack([a]))[0]
        self.cache[h] = (mlev_t, glev)
        return self.cache[h]

    def run(self, d_chunk: Any, es: list[Any], hidx: np.ndarray, out: np.ndarray) -> None:
        """Badness ``(V_chunk, L)`` of the chunk's voxels, written into ``out``.

        Parameters
        ----------
        d_chunk
            ``(V_chunk, N)`` ``d`` of each voxel's HRF (device).
        es
            ``R`` tensors ``(V_chunk, k_r)``: ``e = yw @ q_all[r]`` (device).
        hidx
            ``(V_chunk,)`` host HRF indices.
        out
            ``(V_chunk, L)`` host float64, written.
        """
        dev, lay = self.dev, self.layout
        n_runs, n_trials = len(es), d_chunk.shape[1]
        e_pad = dev.zeros(n_runs, d_chunk.shape[0], self.k_max)
        for r, e in enumerate(es):
            e_pad[r, :, : e.shape[1]] = e
        per_row = 4 * self.n_levels * n_runs * lay.n_max * 8 + 2 * self.n_levels * n_trials * 8
        step = dev.block_rows(per_row)
        for h, idx in groups(hidx):
            mlev, glev = self._levels(h)
            for k in range(0, idx.size, step):
                part = idx[k : k + step]
                it = dev.index(part)
                dp = lay.pad(dev, d_chunk[it])  # (R, B, n_max)
                c = dp[None] - e_pad[:, it][None] @ mlev.transpose(-1, -2)  # (L, R, B, n_max)
                betas = lay.unpad(dev, c @ glev)  # (L, B, N)
                ref = self.cv.reference(betas[0])
                out[part] = dev.down(self.cv.badness(betas, ref).T)


__all__ = ["XVAL_INVERSE_TOL", "XvalGroups"]

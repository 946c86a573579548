"""Torch twins of the engine's element-wise steps, for the device passes (docs/glm.md §14).

Each function computes what its NumPy counterpart does, in float64 on the device, batched over
any leading axes: :func:`r2_percent` and :func:`sse` (:mod:`echoprep.kernels.glm.fit`), the
cross-validation badness :class:`DeviceCrossValidation` (:mod:`echoprep.kernels.glm.xval`),
and :func:`fraction_alphas`, :func:`shrinkage` and :func:`autoscale`
(:mod:`echoprep.kernels.glm.ridge`). Tensors are typed ``Any`` (torch is optional).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from echoprep.kernels.glm.device import GlmDevice
from echoprep.kernels.glm.ridge import alpha_grid
from echoprep.kernels.glm.xval import CrossValidation


def r2_percent(torch: Any, sse_sum: Any, ss_sum: Any) -> Any:
    """``100 (1 - SSE / |yw|²)``, NaN where ``|yw|² = 0`` (shapes broadcast; %)."""
    ok = ss_sum > 0
    r2 = 100.0 * (1.0 - sse_sum / torch.where(ok, ss_sum, torch.ones_like(ss_sum)))
    return torch.where(ok, r2, torch.full_like(r2, float("nan")))


def sse(ss: Any, beta: Any, d: Any, gw: Any) -> Any:
    """Residual sum of squares of the task-only fit, clipped at 0.

    Parameters
    ----------
    ss
        ``(..., B)`` ``|yw|²``.
    beta, d
        ``(..., B, n)`` betas and ``yw @ xw``.
    gw
        ``(..., n, n)`` ``xw' xw``.

    Returns
    -------
    Tensor
        ``(..., B)`` float64 (raw units squared).
    """
    out = ss - 2.0 * (beta * d).sum(dim=-1) + ((beta @ gw) * beta).sum(dim=-1)
    return out.clamp(min=0.0)


@dataclass(frozen=True)
class DeviceReference:
    """Set-0 quantities of a voxel block (:class:`echoprep.kernels.glm.xval.Reference`):
    ``mu``, ``inv_sd`` ``(B, S)``, ``e`` ``(B, N)`` and ``const`` ``(B,)``."""

    mu: Any
    inv_sd: Any
    e: Any
    const: Any


class DeviceCrossValidation:
    """The badness of :mod:`echoprep.kernels.glm.xval` on the device.

    The fold-pair counts ``B`` are held dense (``N x N`` float64: 8.8 MB for 1050 trials), so
    ``E = z0 B`` is one product without a sparse kernel.

    Parameters
    ----------
    dev
        The device.
    cv
        The design's static fold weights.
    """

    def __init__(self, dev: GlmDevice, cv: CrossValidation) -> None:
        self.torch = dev.torch
        self.a = dev.up(cv.a)
        self.w = dev.up(cv.w)
        self.b = dev.up(cv.b.toarray())
        self.sessions = [dev.index(s) for s in cv.sessions]
        self.sizes = [int(s.size) for s in cv.sessions]

    def zscore(self, beta: Any, mu: Any, inv_sd: Any) -> Any:
        """``(..., B, N)`` betas z-scored with per-session ``mu`` and ``inv_sd`` ``(B, S)``."""
        if len(self.sessions) == 1:
            return (beta - mu[:, :1]) * inv_sd[:, :1]
        z = self.torch.empty_like(beta)
        for s, idx in enumerate(self.sessions):
            z[..., idx] = (beta[..., idx] - mu[:, s : s + 1]) * inv_sd[:, s : s + 1]
        return z

    def reference(self, beta0: Any) -> DeviceReference:
        """Set-0 statistics of the unregularised betas ``(B, N)``."""
        torch = self.torch
        v = beta0.shape[0]
        n_s = len(self.sessions)
        mu = torch.zeros((v, n_s), dtype=beta0.dtype, device=beta0.device)
        inv_sd = torch.zeros_like(mu)
        for s, (idx, size) in enumerate(zip(self.sessions, self.sizes, strict=True)):
            x = beta0[:, idx]
            mu[:, s] = x.mean(dim=1)
            if size > 1:
                sd = (((x - mu[:, s : s + 1]) ** 2).sum(dim=1) / (size - 1)).sqrt()
                ok = sd > 0
                inv_sd[:, s] = torch.where(ok, 1.0 / torch.where(ok, sd, 1.0), 0.0)
        z0 = self.zscore(beta0, mu, inv_sd)
        return DeviceReference(mu=mu, inv_sd=inv_sd, e=z0 @ self.b, const=(z0 * z0) @ self.w)

    def badness(self, beta: Any, ref: DeviceReference) -> Any:
        """``(..., B)`` badness of betas ``(..., B, N)`` against the reference."""
        z = self.zscore(beta, ref.mu, ref.inv_sd)
        return (z * z) @ self.a - 2.0 * (ref.e * z).sum(dim=-1) + ref.const


def fraction_alphas(dev: GlmDevice, s2: np.ndarray, b: Any, fracs: np.ndarray) -> Any:
    """Per-voxel ridge penalties reaching the norm fractions ``fracs``
    (:func:`echoprep.kernels.glm.ridge.fraction_alphas`, all fractions at once).

    Parameters
    ----------
    s2
        ``(n,)`` host squared singular values of the stacked projected design (0 = dropped or
        padding).
    b
        ``(B, n)`` rotated OLS coefficients (0 where ``s2`` is 0).
    fracs
        ``(F,)`` fractions in (0, 1]; 1 gives alpha 0.

    Returns
    -------
    Tensor
        ``(B, F)`` float64 penalties (0 where the OLS solution is 0).
    """
    torch = dev.torch
    v = b.shape[0]
    out = torch.zeros((v, len(fracs)), dtype=b.dtype, device=b.device)
    fr = np.asarray(fracs, dtype=np.float64)
    todo = np.flatnonzero(fr < 1.0)
    if not np.any(s2 > 0) or v == 0 or not todo.size:
        return out
    grid = alpha_grid(s2)
    ok = np.flatnonzero(s2 > 0)
    s2k = s2[ok]
    shrink2 = dev.up((s2k / (s2k + grid[:, None])) ** 2)  # (G, n')
    bk = b[:, dev.index(ok)]
    norms2 = (bk * bk) @ shrink2.T
    ratio = (norms2 / norms2[:, :1]).sqrt()  # (B, G); NaN rows where the OLS solution is 0
    valid = torch.isfinite(ratio[:, 0])
    n_grid = grid.size
    f = dev.up(fr[todo])
    below = ratio[:, None, :] < f[None, :, None]  # (B, K, G)
    first = torch.argmax(below.to(torch.int32), dim=-1)
    i1 = torch.where(below.any(dim=-1), first, n_grid - 1).clamp(1, n_grid - 1)
    i0 = i1 - 1
    full = ratio[:, None, :].expand(-1, todo.size, -1)
    r0 = torch.gather(full, -1, i0[..., None])[..., 0]
    r1 = torch.gather(full, -1, i1[..., None])[..., 0]
    step = torch.where(r0 != r1, r1 - r0, torch.ones_like(r0))
    t = torch.where(r0 != r1, (f[None, :] - r0) / step, torch.zeros_like(r0))
    logs = dev.up(np.log1p(grid))
    la = logs[i0] + t * (logs[i1] - logs[i0])
    out[:, dev.index(todo)] = torch.where(valid[:, None], torch.expm1(la), torch.zeros_like(la))
    return out


def shrinkage(torch: Any, s2: Any, alpha: Any) -> Any:
    """``s² / (s² + alpha)`` per voxel (0 for dropped components).

    Parameters
    ----------
    s2
        ``(n,)`` squared singular values.
    alpha
        ``(..., B)`` penalties.

    Returns
    -------
    Tensor
        ``(..., B, n)``.
    """
    den = s2 + alpha[..., None]
    out = torch.where(den > 0, s2 / torch.where(den > 0, den, 1.0), 0.0)
    return torch.where(s2 > 0, out, 0.0)


def autoscale(torch: Any, b_ols: Any, b_ridge: Any) -> tuple[Any, Any]:
    """Per-voxel least squares ``b_ols ~ scale * b_ridge + offset`` over trials
    (:func:`echoprep.kernels.glm.ridge.autoscale`); ``(1, 0)`` where the scale is negative or
    ``b_ridge`` is constant.

    Parameters
    ----------
    b_ols, b_ridge
        ``(B, N)`` unregularised and ridge betas.

    Returns
    -------
    scale, offset
        ``(B,)`` float64 each.
    """
    mx = b_ridge.mean(dim=1)
    my = b_ols.mean(dim=1)
    xc = b_ridge - mx[:, None]
    var = (xc * xc).sum(dim=1)
    cov = (xc * (b_ols - my[:, None])).sum(dim=1)
    scale = cov / torch.where(var > 0, var, 1.0)
    offset = my - scale * mx
    bad = ~(var > 0) | ~torch.isfinite(scale) | (scale < 0)
    return torch.where(bad, 1.0, scale), torch.where(bad, 0.0, offset)


__all__ = [
    "DeviceCrossValidation",
    "DeviceReference",
    "autoscale",
    "fraction_alphas",
    "r2_percent",
    "shrinkage",
    "sse",
]

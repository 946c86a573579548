"""Per-run least squares of the GLMsingle engine, batched over voxels.

Nuisance terms (polynomials, extra regressors, GLMdenoise PCs) are handled by projection
(Frisch-Waugh-Lovell). Because every trial column is non-zero only in its own run and nuisance
terms are per run, the single-trial OLS problem is block-diagonal by run: each run is solved
separately with ``T_r x n_r`` matrices.

Notation for one run (``n`` trials, ``k`` nuisance directions beyond the polynomials):

- ``xw = P_poly X`` (``T x n``): convolved single-trial design with the polynomials removed;
- ``q`` (``T x k``): orthonormal extra nuisance directions, orthogonal to the polynomials;
- ``yw = P_poly y`` (``V x T``): data with the polynomials removed;
- ``d = yw @ xw`` (``V x n``; equal to ``yw @ X`` as ``yw`` has no polynomial part) and
  ``e = yw @ q`` (``V x k``): the only products with the data;
- ``xt = xw - q q' xw``: the fully projected design, ``xt' yw = d - e (xw' q)'``.

OLS betas are ``c G^+`` with ``c = xt' yw`` and ``G = xt' xt`` (pseudo-inverse through the SVD
of ``xt``; singular values ``<= tol`` count as 0, so all-zero regressors get beta 0). The model
fit for R² is the task part only, ``xw beta``, so
``SSE = |yw|² - 2 beta . d + beta' (xw' xw) beta`` needs no further product with the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Singular values at or below this (absolute) are treated as 0.
SVD_TOL = 1e-10


@dataclass(frozen=True)
class RunSolver:
    """Least-squares solver of one run at one HRF and one nuisance level.

    Attributes
    ----------
    s
        ``(n,)`` singular values of the projected design ``xt`` (0 where treated as 0).
    w
        ``(n, n)`` right singular vectors (columns), ``xt = U diag(s) w'``.
    m
        ``(n, k)`` ``xw' q`` (k = 0 without extra nuisance).
    gw
        ``(n, n)`` ``xw' xw``.
    """

    s: np.ndarray
    w: np.ndarray
    m: np.ndarray
    gw: np.ndarray

    @property
    def k(self) -> int:
        return int(self.m.shape[1])

    @property
    def s2inv(self) -> np.ndarray:
        """``(n,)`` ``1 / s²`` where ``s > 0``, else 0."""
        out = np.zeros_like(self.s)
        ok = self.s > 0
        out[ok] = 1.0 / self.s[ok] ** 2
        return out

    def gram_pinv(self) -> np.ndarray:
        """``(n, n)`` pseudo-inverse of ``xt' xt``."""
        return (self.w * self.s2inv) @ self.w.T

    def gram(self) -> np.ndarray:
        """``(n, n)`` ``xt' xt``."""
        return (self.w * self.s**2) @ self.w.T

    def coefs(self, d: np.ndarray, e: np.ndarray | None) -> np.ndarray:
        """``(V, n)`` float64 ``xt' yw = d - e m'`` (``e``: ``(V, >= k)``, first k used)."""
        c = d.astype(np.float64)
        if self.k:
            assert e is not None
            c -= e[:, : self.k].astype(np.float64) @ self.m.T
        return c

    def ols(self, c: np.ndarray) -> np.ndarray:
        """``(V, n)`` OLS betas from ``c = xt' yw``."""
        return c @ self.gram_pinv()

    def whitener(self) -> np.ndarray:
        """``(n, n)`` ``A = W diag(1/s)`` (0 columns for dropped s): ``G^+ = A A'``.

        ``t = c A`` gives the OLS betas ``t A'`` and, without extra nuisance, the fitted sum of
        squares ``|t|²`` (so ``SSE = |yw|² - |t|²``).
        """
        inv = np.zeros_like(self.s)
        ok = self.s > 0
        inv[ok] = 1.0 / self.s[ok]
        return self.w * inv


def solver(xw: np.ndarray, q: np.ndarray | None = None) -> RunSolver:
    """Build the :class:`RunSolver` of a poly-projected design ``xw`` (``T x n``) and extra
    orthonormal nuisance directions ``q`` (``T x k``, orthogonal to the polynomials)."""
    xw = np.asarray(xw, dtype=np.float64)
    n = xw.shape[1]
    if q is not None and q.shape[1]:
        m = xw.T @ q
        xt = xw - q @ m.T
    else:
        m = np.zeros((n, 0))
        xt = xw
    # fewer volumes than trials: all n right singular vectors, missing singular values are 0
    _, s, vt = np.linalg.svd(xt, full_matrices=xt.shape[0] < n)
    s = np.concatenate([s, np.zeros(n - s.size)])
    tol = max(SVD_TOL, s.max(initial=0.0) * max(xt.shape) * np.finfo(np.float64).eps)
    s = np.where(s > tol, s, 0.0)
    return RunSolver(s=s, w=vt.T.copy(), m=m, gw=xw.T @ xw)


def trial_products(y: np.ndarray, onsets: np.ndarray, hrfs_t: np.ndarray) -> np.ndarray:
    """``y @ X_h`` for every HRF h, using the banded structure of the single-trial design.

    Column j of the convolved design ``X_h`` is the HRF starting at volume ``onsets[j]``
    (truncated at the end of the run), so ``(y @ X_h)[:, j] = y[:, o_j : o_j + m] @ h``: one
    ``H x m`` by ``m x V`` product per trial instead of a dense ``T x n`` design per HRF.

    Parameters
    ----------
    y
        ``(V, T)`` float32 time series of one run.
    onsets
        ``(n,)`` onset volumes of the run's trials.
    hrfs_t
        ``(H, m)`` float32 HRFs (rows) sampled at TR from onset.

    Returns
    -------
    numpy.ndarray
        ``(n, H, V)`` float32.
    """
    n_vol = y.shape[1]
    m = hrfs_t.shape[1]
    out = np.empty((onsets.size, hrfs_t.shape[0], y.shape[0]), dtype=np.float32)
    for j, o in enumerate(onsets):
        length = min(m, n_vol - int(o))
        np.matmul(hrfs_t[:, :length], y[:, o : o + length].T, out=out[j])
    return out


def gram_pinv_eigh(g: np.ndarray, rel_tol: float = 1e-13) -> np.ndarray:
    """Pseudo-inverse of a Gram matrix ``xt' xt`` by symmetric eigendecomposition.

    Cheaper than the SVD of ``xt`` (used where many nuisance levels share one design: the
    GLMdenoise cross-validation). Regressors with an exactly zero diagonal (all-zero columns)
    get zero rows/columns; eigenvalues at or below ``rel_tol * n * max eigenvalue`` count as 0
    (singular values below about ``3e-7 * n^0.5`` of the largest).

    Parameters
    ----------
    g
        ``(n, n)`` symmetric positive semi-definite.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64.
    """
    n = g.shape[0]
    out = np.zeros((n, n))
    keep = np.flatnonzero(np.diag(g) > 0)
    if not keep.size:
        return out
    sub = g[np.ix_(keep, keep)]
    lam, vec = np.linalg.eigh((sub + sub.T) / 2.0)
    tol = rel_tol * n * max(float(lam.max()), 0.0)
    ok = lam > max(tol, SVD_TOL**2)
    a = vec[:, ok] / np.sqrt(lam[ok])
    out[np.ix_(keep, keep)] = a @ a.T
    return out


def sse(ss: np.ndarray, beta: np.ndarray, d: np.ndarray, gw: np.ndarray) -> np.ndarray:
    """Residual sum of squares of the task-only fit ``xw beta`` to ``yw``.

    Parameters
    ----------
    ss
        ``(V,)`` ``|yw|²`` per voxel.
    beta
        ``(V, n)`` betas.
    d
        ``(V, n)`` ``yw @ xw``.
    gw
        ``(n, n)`` ``xw' xw``.

    Returns
    -------
    numpy.ndarray
        ``(V,)`` float64, clipped at 0 (rounding).
    """
    b = beta.astype(np.float64, copy=False)
    out = ss - 2.0 * np.einsum("ij,ij->i", b, d, dtype=np.float64)
    out += np.einsum("ij,ij->i", b @ gw, b)
    return np.maximum(out, 0.0)


def r2_percent(sse_sum: np.ndarray, ss_sum: np.ndarray) -> np.ndarray:
    """``100 (1 - SSE / |yw|²)``; NaN where ``|yw|² = 0`` (all-zero data)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 100.0 * (1.0 - sse_sum / ss_sum)
    return np.where(ss_sum > 0, r2, np.nan)


def lss_betas(c: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Least-squares-separate betas of one run from ``c = xt' yw`` and ``g = xt' xt``.

    Trial j is fitted with two regressors, itself and the sum of the run's other trials
    (both fully projected). Where that 2 x 2 system is singular (e.g. a single-trial run) the
    minimum-norm solution is used.

    Parameters
    ----------
    c
        ``(V, n)``.
    g
        ``(n, n)``.

    Returns
    -------
    numpy.ndarray
        ``(V, n)`` float64.
    """
    diag = np.diag(g)
    rows = g.sum(axis=1)
    tot = g.sum()
    a11 = diag
    a12 = rows - diag
    a22 = tot - 2.0 * rows + diag
    det = a11 * a22 - a12**2
    csum = c.sum(axis=1, keepdims=True)
    r1 = c
    r2 = csum - c
    scale = np.maximum(np.abs(a11 * a22), 1e-300)
    regular = det > 1e-10 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = (a22 * r1 - a12 * r2) / np.where(regular, det, 1.0)
    if not regular.all():
        # minimum-norm least squares of the 2 x 2 system via its pseudo-inverse
        for j in np.flatnonzero(~regular):
            a = np.array([[a11[j], a12[j]], [a12[j], a22[j]]])
            p = np.linalg.pinv(a, rcond=1e-10)
            beta[:, j] = p[0, 0] * r1[:, j] + p[0, 1] * r2[:, j]
    return beta

"""Patch grid and batched low-rank algebra for patch-wise PCA denoising (NORDIC, MP-PCA).

A *patch* is a box of ``kx × ky × kz`` voxels of a 4D series ``(x, y, z, t)``; its Casorati
matrix has one row per voxel and one column per volume, shape ``(kx*ky*kz, t)``. Patches are
processed in batches: a 3-D stack ``(n_patches, M, N)`` goes through one Gram-matrix product
and one batched Hermitian eigendecomposition (NumPy loops over the stack in C and releases the
GIL), which is several times faster than a batched SVD of the tall matrices and accurate
enough for the thresholds used here (see ``benchmarks/nordic.py``).

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

#: How companion series pass a patch's kept rank (:func:`hard_threshold`).
COMPANION_MAPS = ("frozen", "tangent")


def axis_starts(n: int, k: int) -> list[int]:
    """0-based patch starts along y or z with overlap 2 (step ``max(1, k // 2)``).

    The starts are ``0, s, 2s, ... <= n - k`` followed by the last full patch ``n - k``; as in
    the reference, ``n - k`` can appear twice (then that patch counts twice in the average).
    Every index ``0 .. n-1`` is covered.

    Parameters
    ----------
    n
        Axis length (voxels).
    k
        Patch length along the axis, ``1 <= k <= n``.

    Returns
    -------
    list of int
        Starts, non-decreasing.
    """
    if not 1 <= k <= n:
        raise ValueError(f"patch length {k} does not fit an axis of {n} voxels")
    step = max(1, k // 2)
    return [*range(0, n - k + 1, step), n - k]


def x_starts(n: int, k: int) -> tuple[list[int], int | None]:
    """0-based patch starts along x: the reference's starts plus a fill-in patch.

    The reference takes ``0, s, 2s, ...`` from the candidates ``0 .. n-k-1`` plus the last
    candidate ``n-k-1`` (each once), so its patches end at ``n - 2`` and the last x-plane is
    never covered (its bug B1). We keep exactly those patches (so every other voxel averages
    the same patches as the reference) and add the last full patch ``n - k``, which fills only
    the planes the others leave uncovered: the last plane then gets the same single-patch-in-x
    coverage as the first plane.

    Parameters
    ----------
    n, k
        Axis length and patch length, ``1 <= k <= n``.

    Returns
    -------
    starts
        The reference's starts (empty when ``n == k``), increasing.
    fill_offset
        None, or the first plane (relative to start ``n - k``) that the fill-in patch at
        ``n - k`` contributes to: ``k - 1`` normally, 0 when ``n == k``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"patch length {k} does not fit an axis of {n} voxels")
    step = max(1, k // 2)
    starts = sorted({*range(0, n - k, step), n - k - 1}) if n > k else []
    covered = starts[-1] + k if starts else 0
    return starts, (covered - (n - k) if covered < n else None)


def patch_grid(
    shape: Sequence[int], kernel: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All patches of a 3-D grid with their weights (duplicates merged).

    x-major order; the fill-in patches along x (:func:`x_starts`) come last.

    Parameters
    ----------
    shape
        Spatial shape ``(nx, ny, nz)``.
    kernel
        Patch size ``(kx, ky, kz)``, each at most the corresponding ``shape`` entry.

    Returns
    -------
    starts
        ``(n_patches, 3)`` int array of 0-based corners.
    weights
        ``(n_patches,)`` float64: how many times the corner occurs in the product of the axis
        starts (1, or 2/4 for a duplicated last start along y/z).
    x_offset
        ``(n_patches,)`` int: the patch contributes to its planes ``x0 + x_offset .. x0 + kx - 1``
        only (0 except for the fill-in patches).
    """
    nx, ny, nz = (int(n) for n in shape)
    kx, ky, kz = (int(k) for k in kernel)
    xs, fill = x_starts(nx, kx)
    xlist = [(x, 0) for x in xs] + ([(nx - kx, fill)] if fill is not None else [])
    ys, zs = Counter(axis_starts(ny, ky)), Counter(axis_starts(nz, kz))
    rows = [
        (x, y, z, wy * wz, off)
        for x, off in xlist
        for y, wy in sorted(ys.items())
        for z, wz in sorted(zs.items())
    ]
    arr = np.asarray(rows, dtype=np.intp).reshape(-1, 5)
    return arr[:, :3].copy(), arr[:, 3].astype(np.float64), arr[:, 4].copy()


def gather(
    data: np.ndarray,
    starts: np.ndarray,
    kernel: Sequence[int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Casorati matrices of a batch of patches.

    Parameters
    ----------
    data
        ``(nx, ny, nz, t)`` array.
    starts
        ``(B, 3)`` 0-based corners.
    kernel
        ``(kx, ky, kz)``.
    out
        Optional C-contiguous ``(B, kx*ky*kz, t)`` array of ``data``'s dtype to fill (reusing
        a buffer avoids the page faults of a fresh allocation per batch).

    Returns
    -------
    numpy.ndarray
        ``(B, kx*ky*kz, t)``, ``data``'s dtype; rows in C order of the patch voxels.
    """
    kx, ky, kz = (int(k) for k in kernel)
    nt = data.shape[3]
    shape = (len(starts), kx * ky * kz, nt)
    if out is None:
        out = np.empty(shape, dtype=data.dtype)
    elif out.shape != shape or out.dtype != data.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {data.dtype} array of shape {shape}")
    boxes = out.reshape(len(starts), kx, ky, kz, nt)
    for b, (x, y, z) in enumerate(starts):
        boxes[b] = data[x : x + kx, y : y + ky, z : z + kz, :]
    return out


def _adjoint(a: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two axes (a view for real input)."""
    at = np.swapaxes(a, -1, -2)
    return at.conj() if np.iscomplexobj(a) else at


def gram(a: np.ndarray) -> np.ndarray:
    """The smaller Gram matrix of each Casorati matrix of a stack, in double precision.

    For a tall complex64 stack the product is formed in single precision on the float32 view
    of the data (``R = [Re a1, Im a1, Re a2, ...]``, ``R^T R`` with one real GEMM per matrix,
    no conjugated copy): about twice as fast as a complex GEMM on a conjugated copy, and NumPy
    releases the GIL, so worker threads run in parallel (SciPy's BLAS wrappers do not).

    Parameters
    ----------
    a
        ``(B, M, N)`` float32/float64/complex64/complex128.

    Returns
    -------
    numpy.ndarray
        ``(B, N, N)`` = ``A^H A`` when ``M >= N``, else ``(B, M, M)`` = ``A A^H``; float64 or
        complex128. Its eigenvalues are the squared singular values of ``A``.
    """
    m, n = a.shape[-2:]
    if m < n:
        g = a @ _adjoint(a)
    elif np.iscomplexobj(a) and a.flags.c_contiguous:
        r = a.view(a.real.dtype)  # (B, M, 2N), columns Re/Im interleaved
        rr = np.swapaxes(r, -1, -2) @ r
        g = np.empty((*rr.shape[:-2], n, n), np.complex128)
        g.real = rr[..., 0::2, 0::2]
        g.real += rr[..., 1::2, 1::2]
        g.imag = rr[..., 0::2, 1::2]
        g.imag -= rr[..., 1::2, 0::2]
        return g
    else:
        g = _adjoint(a) @ a
    return g.astype(np.complex128 if np.iscomplexobj(g) else np.float64)


def squared_singular_values(a: np.ndarray) -> np.ndarray:
    """Squared singular values of each matrix of a stack, descending.

    Parameters
    ----------
    a
        ``(B, M, N)``.

    Returns
    -------
    numpy.ndarray
        ``(B, min(M, N))`` float64, descending, clipped at 0.
    """
    w = np.linalg.eigvalsh(gram(a))
    return np.maximum(w[:, ::-1], 0)


def hard_threshold(
    a: np.ndarray,
    threshold: float,
    companions: Sequence[np.ndarray] = (),
    companion_map: str = "frozen",
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the singular components with singular value ``>= threshold``, in place.

    Eigendecomposition of the smaller Gram matrix (double precision); the reconstruction
    ``A V_k V_k^H`` (or ``U_k U_k^H A`` for wide matrices) is formed per patch with exactly its
    ``k`` kept components, so a patch's result does not depend on the other patches of the
    batch (bitwise).

    Parameters
    ----------
    a
        ``(B, M, N)`` stack of Casorati matrices (float or complex); **overwritten** with the
        low-rank reconstructions ``U S' V^H``.
    threshold
        Singular-value threshold (same units as ``a``).
    companions
        Stacks of the shape of ``a`` (other series at the same patches), **overwritten** with
        their projections on the subspaces kept for ``a`` (``C V_k V_k^H`` or ``U_k U_k^H
        C``): the decisions of ``a`` applied to them, a linear map (docs/comparison.md,
        "Responses planted in your data").
    companion_map
        ``"frozen"``: the projection above. ``"tangent"``: each companion ``C = A + D`` comes
        out as ``A``'s reconstruction plus ``D`` projected on the tangent space of the kept
        rank at ``A``, ``P_U D + D P_V - P_U D P_V`` (``P_U``, ``P_V`` the kept left and right
        subspaces): what a change ``D`` adds to the rank-``k`` approximation to first order,
        so a change in a kept spatial pattern passes whatever its time course (affine in
        ``C``; docs/comparison.md, "The tangent space and NORDIC's own phase").

    Returns
    -------
    recon
        ``a`` itself, now holding the reconstructions.
    removed
        ``(B,)`` int: number of components set to zero, out of ``min(M, N)``.
    """
    if companion_map not in COMPANION_MAPS:
        raise ValueError(
            f"NORDIC: companion_map must be one of {list(COMPANION_MAPS)}; got {companion_map!r}"
        )
    tangent = companion_map == "tangent" and bool(companions)
    _, m, n = a.shape
    w, v = np.linalg.eigh(gram(a))  # ascending eigenvalues = squared singular values
    n_keep = np.count_nonzero(w >= threshold * threshold, axis=1)
    for b, k in enumerate(n_keep):
        if k == 0 and not tangent:
            a[b] = 0
            for c in companions:
                c[b] = 0
            continue
        vk = v[b, :, -k:].astype(a.dtype)  # the k largest
        if tangent:
            _tangent_patch(a, b, vk, w[b, -k:] if k else w[b, :0], companions)
            continue
        for x in (a, *companions):
            if m >= n:  # A V_k V_k^H
                np.matmul(x[b] @ vk, _adjoint(vk), out=x[b])
            else:  # U_k U_k^H A
                np.matmul(vk, _adjoint(vk) @ x[b], out=x[b])
    return a, min(m, n) - n_keep


def _tangent_patch(
    a: np.ndarray, b: int, vk: np.ndarray, wk: np.ndarray, companions: Sequence[np.ndarray]
) -> None:
    """Patch ``b`` of :func:`hard_threshold` with ``companion_map="tangent"``: ``a[b]``
    becomes its rank-``k`` reconstruction, each companion that plus its change from ``a[b]``
    projected on the tangent space at it. ``vk``: the kept eigenvectors of the smaller Gram
    matrix (``(min(M, N), k)``), ``wk``: their eigenvalues (squared singular values)."""
    m, n = a.shape[1:]
    sk = np.sqrt(np.maximum(wk, np.finfo(np.float32).tiny)).astype(a.real.dtype)
    if m >= n:  # vk holds the right vectors V_k; U_k = A V_k / s
        right = vk
        av = a[b] @ vk
        left = av / sk
        recon = av @ _adjoint(vk)
    else:  # vk holds the left vectors U_k; V_k = A^H U_k / s
        left = vk
        ua = _adjoint(vk) @ a[b]
        right = _adjoint(ua / sk[:, None])
        recon = vk @ ua
    for c in companions:
        d = c[b] - a[b]
        dv = d @ right  # (M, k)
        c[b] = (
            recon
            + left @ (_adjoint(left) @ d)
            + (dv - left @ (_adjoint(left) @ dv)) @ _adjoint(right)
        )
    a[b] = recon


def mppca_noise_variance(sq_sv: np.ndarray, m: np.ndarray, n: int) -> np.ndarray:
    """Marchenko-Pastur noise variance of each patch (Veraart et al. 2016, as in NORDIC).

    For a patch with ``m`` non-zero rows and ``n`` columns, ``R = min(m, n)``,
    ``lam_j = s_j^2 / n`` (descending, ``j = 1..R``):
    ``sigma1(j) = mean(lam_j..lam_R) / ((max(m, n) - (j-1)) / n)``,
    ``sigma2(j) = (lam_j - lam_R) / (4 sqrt((m - (j-1)) / n))``; ``t`` is the first ``j`` with
    ``sigma2(j) < sigma1(j)`` and the variance is ``sigma2(t)``.

    Parameters
    ----------
    sq_sv
        ``(B, K)`` squared singular values, descending (``K >= R``).
    m
        ``(B,)`` number of rows whose temporal sum is not exactly zero.
    n
        Number of columns (volumes).

    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64 noise variance per entry (``E|z|^2`` for complex data); 0 for
        all-zero patches.
    """
    sq_sv = np.asarray(sq_sv, np.float64)
    m = np.asarray(m, np.int64)
    out = np.zeros(len(m))
    r_all = np.minimum(m, min(n, sq_sv.shape[1]))
    for r in np.unique(r_all):
        if r < 1:
            continue
        sel = np.flatnonzero(r_all == r)
        lam = sq_sv[sel, :r] / n
        mm = m[sel, None].astype(np.float64)
        j0 = np.arange(r, dtype=np.float64)[None, :]
        tail_mean = np.cumsum(lam[:, ::-1], axis=1)[:, ::-1] / (r - j0)
        sigma1 = tail_mean / ((np.maximum(mm, n) - j0) / n)
        sigma2 = (lam - lam[:, -1:]) / (4 * np.sqrt((mm - j0) / n))
        below = sigma2 < sigma1
        t = np.argmax(below, axis=1)
        var = sigma2[np.arange(len(sel)), t]
        out[sel] = np.where(below.any(axis=1), var, 0.0)
    return out

"""The two NORDIC patch passes on a torch device: MP-PCA g-factor and hard-threshold rebuild.

The device counterpart of :mod:`echoprep.kernels.nordic_patches`, on tensors that stay on
the device. Patches are read and written as lattices of non-overlapping patches
(:mod:`echoprep.kernels.patch_lattice`): a batch is gathered with one strided copy per piece
(converted to float64/complex128 on the way), decomposed with one batched SVD
(:func:`echoprep.kernels.patches_torch.right_singular`), and its results are added to
whole-volume sums with one strided in-place add per piece, pieces in lattice order. No
atomics, no scatter: every voxel's sum is the same sequence of additions on every run and
for every batch size, so the passes repeat bitwise on one device and torch build.

Batches hold at most ``batch_bytes // bytes_per_patch`` patches (at least one), so a pass
needs its sums (two or three ``(x, y, z)`` float64 maps, and in the rebuild pass one
``(x, y, z, t)`` float64/complex128 sum) plus ``batch_bytes``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from echoprep.kernels.patch_lattice import Piece, batches, n_patches, piece_weights
from echoprep.kernels.patches_torch import right_singular, singular_values

log = logging.getLogger(__name__)

#: Double-precision copies of one patch's ``M x N`` Casorati matrix a batch needs at its peak,
#: per patch: the gathered batch, the part of it sent to ``gesvda`` when some patches take
#: the Gram route, ``gesvda``'s own copy and its ``U``, the rebuilt batch, a weighted copy.
COPIES_PER_PATCH = 6
#: ... plus this many ``K x K`` matrices (``K = min(M, N)``): ``gesvda``'s workspace. Measured
#: with torch 2.11 on an H200 (peak over the input): 4.15 input copies for 1728 x 163, 12.95
#: for 196 x 90, i.e. about ``1.9 M N + 24 K^2``.
SMALL_COPIES_PER_PATCH = 26


def bytes_per_patch(kernel: tuple[int, int, int], n_volumes: int, is_complex: bool) -> int:
    """Device memory one patch of a batch needs at the peak of a pass (bytes), in double
    precision (16 bytes per complex entry, 8 real): :data:`COPIES_PER_PATCH` copies of its
    ``prod(kernel) x n_volumes`` Casorati matrix and :data:`SMALL_COPIES_PER_PATCH` square
    matrices of its smaller side."""
    m, n = int(np.prod(kernel)), int(n_volumes)
    entries = COPIES_PER_PATCH * m * n + SMALL_COPIES_PER_PATCH * min(m, n) ** 2
    return entries * (16 if is_complex else 8)


def box_view(t: Any, piece: Piece, kernel: tuple[int, int, int], contributing: bool) -> Any:
    """The patches of a piece as one strided view of a volume tensor.

    Parameters
    ----------
    t
        ``(nx, ny, nz, ...)`` tensor (any strides; e.g. the first volumes of a series).
    piece
        One run per axis.
    kernel
        ``(kx, ky, kz)``.
    contributing
        Only the planes the patches contribute to (the x fill-in patch skips its first
        ``offset`` planes), for adding results; else the whole patches, for reading them.

    Returns
    -------
    torch.Tensor
        ``(cx, cy, cz, kx', ky, kz, ...)`` view of ``t`` (``kx' = kx - offset`` when
        ``contributing``, else ``kx``); no two of its elements share memory.
    """
    x, y, z = piece
    kx, ky, kz = kernel
    off = x.offset if contributing else 0
    sx, sy, sz = t.stride()[:3]
    size = (x.count, y.count, z.count, kx - off, ky, kz, *t.shape[3:])
    stride = (x.spacing * sx, y.spacing * sy, z.spacing * sz, sx, sy, sz, *t.stride()[3:])
    start = t.storage_offset() + (x.start + off) * sx + y.start * sy + z.start * sz
    return t.as_strided(size, stride, start)


def gather(data: Any, batch: list[Piece], kernel: tuple[int, int, int], dtype: Any) -> Any:
    """Casorati matrices of a batch, ``(B, kx*ky*kz, t)`` in ``dtype`` (rows in C order of
    the patch voxels, pieces in order), from the ``(nx, ny, nz, t)`` tensor ``data``."""
    import torch

    kx, ky, kz = kernel
    nt = data.shape[3]
    total = sum(n_patches(p) for p in batch)
    out = torch.empty((total, kx * ky * kz, nt), dtype=dtype, device=data.device)
    b0 = 0
    for piece in batch:
        n = n_patches(piece)
        dest = out[b0 : b0 + n].view(piece[0].count, piece[1].count, piece[2].count, *kernel, nt)
        dest.copy_(box_view(data, piece, kernel, contributing=False))
        b0 += n
    return out


def low_rank(a: Any, threshold: float) -> tuple[Any, Any]:
    """Hard-threshold low-rank approximation of each matrix of a stack.

    The components with singular value ``>= threshold`` are kept; the rebuild is the
    projection onto their singular vectors (``A V_k V_k^H``, or ``U_k U_k^H A`` for a wide
    matrix), formed with only the smaller side's vectors, like the NumPy path.

    Parameters
    ----------
    a
        ``(B, M, N)`` float64/complex128 tensor.
    threshold
        Singular-value threshold, ``a``'s units.

    Returns
    -------
    recon
        ``(B, M, N)`` tensor, ``a``'s dtype.
    removed
        ``(B,)`` int64 tensor: components set to zero, out of ``min(M, N)``.
    """
    m, n = a.shape[-2:]
    tall = m >= n
    s, vh = right_singular(a if tall else a.mH)
    keep = s >= threshold
    proj = (vh.mH * keep.to(vh.dtype).unsqueeze(-2)) @ vh
    recon = a @ proj if tall else proj @ a
    return recon, min(m, n) - keep.sum(dim=-1)


def mppca_noise_variance(sq_sv: Any, m: Any, n: int) -> Any:
    """Marchenko-Pastur noise variance of each patch, as
    :func:`echoprep.kernels.patches.mppca_noise_variance` (same rule, vectorised over
    patches with different numbers of non-zero rows).

    Parameters
    ----------
    sq_sv
        ``(B, K)`` float64 squared singular values, descending.
    m
        ``(B,)`` int64 number of rows whose temporal sum is not exactly zero.
    n
        Number of columns (volumes).

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64 noise variance per entry; 0 for all-zero patches.
    """
    import torch

    k = sq_sv.shape[1]
    r = torch.clamp(m, max=min(n, k))
    j = torch.arange(k, device=sq_sv.device, dtype=torch.float64)
    valid = j.unsqueeze(0) < r.unsqueeze(1)
    lam = torch.where(valid, sq_sv / n, 0.0)
    tail = torch.flip(torch.cumsum(torch.flip(lam, (1,)), dim=1), (1,))
    mm = m.to(torch.float64).unsqueeze(1)
    tail_mean = tail / (r.unsqueeze(1) - j)
    sigma1 = tail_mean / ((torch.clamp(mm, min=n) - j) / n)
    last = lam.gather(1, torch.clamp(r - 1, min=0).unsqueeze(1))
    sigma2 = (lam - last) / (4 * torch.sqrt(torch.clamp(mm - j, min=0) / n))
    below = valid & (sigma2 < sigma1)
    first = torch.where(below, j, float(k)).amin(dim=1).to(torch.int64)
    var = sigma2.gather(1, torch.clamp(first, max=k - 1).unsqueeze(1)).squeeze(1)
    return torch.where(below.any(dim=1), var, 0.0)


def _add_pieces(
    batch: list[Piece],
    kernel: tuple[int, int, int],
    sums: list[tuple[Any, Any]],
    count: Any,
) -> None:
    """Add per-patch results of a batch into whole-volume sums, piece by piece in order.

    ``sums`` pairs a sum tensor ``(nx, ny, nz, ...)`` with the batch's ``(B, ...)`` values
    (``(B, kx, ky, kz, t)`` patch results, or ``(B, 1, 1, 1)`` per-patch numbers) and
    ``count`` (``(nx, ny, nz)``) receives the patch weights."""
    import torch

    b0 = 0
    for piece in batch:
        n = n_patches(piece)
        lattice = (piece[0].count, piece[1].count, piece[2].count)
        w = piece_weights(piece)
        wt = None if w is None else torch.as_tensor(w, device=count.device)
        off = piece[0].offset
        for total, values in sums:
            v = values[b0 : b0 + n].view(*lattice, *values.shape[1:])
            if off and v.shape[3] > 1:  # patch results: the fill-in patch's planes only
                v = v[:, :, :, off:]
            if wt is not None:
                v = v * wt.view(*lattice, *([1] * (v.dim() - 3)))
            box_view(total, piece, kernel, contributing=True).add_(v)
        box_view(count, piece, kernel, contributing=True).add_(
            1.0 if wt is None else wt.view(*lattice, 1, 1, 1)
        )
        b0 += n


def _pass_plan(
    data: Any, kernel: tuple[int, int, int], batch_bytes: int
) -> tuple[tuple[int, int, int], int, list[list[Piece]]]:
    """``(shape, nt, batches)`` of a pass over the ``(nx, ny, nz, t)`` tensor ``data``: the
    volume's shape, ``t`` and the batches of at most ``batch_bytes // bytes_per_patch``
    patches (at least one)."""
    shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    nt = int(data.shape[3])
    per = bytes_per_patch(kernel, nt, data.is_complex())
    return shape, nt, batches(shape, kernel, max(1, batch_bytes // per))


def _work_dtype(data: Any) -> Any:
    import torch

    return torch.complex128 if data.is_complex() else torch.float64


def gfactor_pass(data: Any, kernel: tuple[int, int, int], batch_bytes: int) -> tuple[Any, int]:
    """Per-voxel MP-PCA noise SD from patches of ``data`` (the device
    :func:`echoprep.kernels.nordic_patches.gfactor_pass`).

    Parameters
    ----------
    data
        ``(nx, ny, nz, t)`` float32/complex64 tensor (normalised units; may be a view).
    kernel
        Patch size.
    batch_bytes
        Memory budget of one batch (bytes, :func:`bytes_per_patch` per patch).

    Returns
    -------
    g
        ``(nx, ny, nz)`` float64 tensor, noise SD of one entry (data units).
    n_batches
        Batches used.
    """
    import torch

    shape, nt, plan = _pass_plan(data, kernel, batch_bytes)
    var_sum = torch.zeros(shape, dtype=torch.float64, device=data.device)
    count = torch.zeros_like(var_sum)
    for k, batch in enumerate(plan, start=1):
        a = gather(data, batch, kernel, _work_dtype(data))
        rows = torch.count_nonzero(a.sum(dim=2), dim=1)
        s = singular_values(a if a.shape[1] >= a.shape[2] else a.mH)
        del a
        var = mppca_noise_variance(s * s, rows, nt)
        _add_pieces(batch, kernel, [(var_sum, var.view(-1, 1, 1, 1))], count)
        _progress("g-factor", k, len(plan))
    return torch.sqrt(var_sum / count), len(plan)


def denoise_pass(
    data: Any, kernel: tuple[int, int, int], threshold: float, batch_bytes: int
) -> tuple[Any, Any, int]:
    """Patch-wise hard-threshold rebuild averaged over patches (the device
    :func:`echoprep.kernels.nordic_patches.denoise_pass`).

    Parameters
    ----------
    data
        ``(nx, ny, nz, t)`` float32/complex64 tensor, normalised units.
    kernel
        Patch size.
    threshold
        Singular-value threshold, ``data``'s units.
    batch_bytes
        Memory budget of one batch (bytes).

    Returns
    -------
    average
        ``(nx, ny, nz, t)`` tensor, ``data``'s dtype: the rebuilt patches averaged (summed in
        double precision).
    removed
        ``(nx, ny, nz)`` float32 tensor, mean number of removed components.
    n_batches
        Batches used.
    """
    import torch

    shape, nt, plan = _pass_plan(data, kernel, batch_bytes)
    acc = torch.zeros(data.shape, dtype=_work_dtype(data), device=data.device)
    removed_sum = torch.zeros(shape, dtype=torch.float64, device=data.device)
    count = torch.zeros_like(removed_sum)
    for k, batch in enumerate(plan, start=1):
        a = gather(data, batch, kernel, acc.dtype)
        recon, removed = low_rank(a, threshold)
        del a
        boxes = recon.view(-1, *kernel, nt)
        per_patch = removed.to(torch.float64).view(-1, 1, 1, 1)
        _add_pieces(batch, kernel, [(acc, boxes), (removed_sum, per_patch)], count)
        del recon, boxes
        _progress("patches", k, len(plan))
    real = torch.view_as_real(acc) if acc.is_complex() else acc.unsqueeze(-1)
    real.div_(count[..., None, None])
    average = acc.to(data.dtype)
    del acc
    return average, (removed_sum / count).to(torch.float32), len(plan)


def _progress(name: str, k: int, n: int) -> None:
    if k == n or k % max(1, n // 10) == 0:
        log.info("NORDIC %s: batch %d of %d", name, k, n)


__all__ = [
    "COPIES_PER_PATCH",
    "SMALL_COPIES_PER_PATCH",
    "box_view",
    "bytes_per_patch",
    "denoise_pass",
    "gather",
    "gfactor_pass",
    "low_rank",
    "mppca_noise_variance",
]

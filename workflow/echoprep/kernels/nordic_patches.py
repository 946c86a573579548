"""The two patch passes of NORDIC: MP-PCA g-factor and hard-threshold reconstruction.

Both walk the patch grid of :func:`echoprep.kernels.patches.patch_grid` in batches of
``chunk`` patches: the batch is gathered and decomposed in worker threads
(:func:`patch_pass`), and its results are accumulated into whole-volume sums in the calling
thread, in batch order, so results do not depend on the number of threads or the batch size.
Split from :mod:`echoprep.kernels.nordic` (noise level, threshold, phase and the steps around
these passes).
"""

from __future__ import annotations

import itertools
import logging
import queue
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

from echoprep.kernels.patches import (
    gather,
    hard_threshold,
    mppca_noise_variance,
    patch_grid,
    squared_singular_values,
)

log = logging.getLogger(__name__)

#: Bytes of temporaries per slab in the element-wise passes: below glibc's largest dynamic
#: mmap threshold (32 MiB), so temporaries are recycled from the heap instead of being fresh
#: mmap pages that fault on first touch (which cost more than the arithmetic here).
SLAB_BYTES = 8 * 2**20

_T = TypeVar("_T")


class PatchAlgebra(Protocol):
    """Where a batch's algebra runs: :data:`NUMPY_ALGEBRA` (LAPACK) or
    :class:`echoprep.kernels.patches_torch.TorchAlgebra` (a torch device)."""

    def squared_singular_values(self, a: np.ndarray) -> np.ndarray: ...

    def hard_threshold(self, a: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]: ...

    def describe(self) -> str: ...


class _NumpyAlgebra:
    """The batch algebra of :mod:`echoprep.kernels.patches` (NumPy, the default)."""

    squared_singular_values = staticmethod(squared_singular_values)
    hard_threshold = staticmethod(hard_threshold)

    @staticmethod
    def describe() -> str:
        """The path in words, for sidecars."""
        return "cpu (NumPy/LAPACK)"


#: The default batch algebra: NumPy's batched Gram matrices and LAPACK eigendecompositions.
NUMPY_ALGEBRA: PatchAlgebra = _NumpyAlgebra()


def patch_pass(
    name: str,
    data: np.ndarray,
    starts: np.ndarray,
    kernel: tuple[int, int, int],
    chunk: int,
    workers: int,
    compute: Callable[[np.ndarray, slice], _T],
    consume: Callable[[slice, np.ndarray, _T], None],
) -> None:
    """Patches of ``data`` in batches of ``chunk``: gather + ``compute`` (the batch and its
    slice of ``starts``) in worker threads, ``consume`` in the calling thread, in batch order
    (so results do not depend on the number of threads). One reused batch buffer per
    worker."""
    n = len(starts)
    bounds = [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    if not bounds:
        return
    n_buffers = min(len(bounds), workers)
    shape = (min(chunk, n), int(np.prod(kernel)), data.shape[3])
    free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(n_buffers):
        free.put(np.empty(shape, data.dtype))

    def task(b: slice) -> tuple[np.ndarray, np.ndarray, _T]:
        buf = free.get()
        try:
            a = gather(data, starts[b], kernel, out=buf[: b.stop - b.start])
            return buf, a, compute(a, b)
        except BaseException:
            free.put(buf)
            raise

    def finish(k: int, b: slice, result: tuple[np.ndarray, np.ndarray, _T]) -> None:
        buf, a, res = result
        try:
            consume(b, a, res)
        finally:
            free.put(buf)
        if k == len(bounds) or k % max(1, len(bounds) // 10) == 0:
            log.info("NORDIC %s: chunk %d of %d", name, k, len(bounds))

    if workers <= 1 or len(bounds) == 1:
        for k, b in enumerate(bounds, start=1):
            finish(k, b, task(b))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        todo = iter(bounds)
        pending = deque((b, pool.submit(task, b)) for b in itertools.islice(todo, n_buffers))
        try:
            k = 0
            while pending:
                b, fut = pending.popleft()
                result = fut.result()
                k += 1
                finish(k, b, result)
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(task, nxt)))
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            raise


def gfactor_pass(
    data: np.ndarray,
    kernel: tuple[int, int, int],
    chunk: int,
    workers: int,
    algebra: PatchAlgebra = NUMPY_ALGEBRA,
) -> np.ndarray:
    """Per-voxel MP-PCA noise SD (float64 (x, y, z)) from patches of ``data``; ``algebra``
    decomposes each batch."""
    starts, weights, offsets = patch_grid(data.shape[:3], kernel)
    nt = data.shape[3]
    kx, ky, kz = kernel
    var_sum = np.zeros(data.shape[:3])
    count = np.zeros(data.shape[:3])

    def compute(a: np.ndarray, _: slice) -> np.ndarray:
        m = np.count_nonzero(a.sum(axis=2) != 0, axis=1)
        return mppca_noise_variance(algebra.squared_singular_values(a), m, nt)

    def consume(b: slice, _: np.ndarray, var: np.ndarray) -> None:
        for (x, y, z), off, w, v in zip(starts[b], offsets[b], weights[b], var, strict=True):
            box = (slice(x + off, x + kx), slice(y, y + ky), slice(z, z + kz))
            var_sum[box] += w * v
            count[box] += w

    patch_pass("g-factor", data, starts, kernel, chunk, workers, compute, consume)
    return np.sqrt(var_sum / count)


def denoise_pass(
    data: np.ndarray,
    kernel: tuple[int, int, int],
    threshold: float,
    chunk: int,
    workers: int,
    algebra: PatchAlgebra = NUMPY_ALGEBRA,
    companions: Sequence[np.ndarray] = (),
    companion_map: str = "frozen",
) -> tuple[np.ndarray, np.ndarray]:
    """Patch-wise hard-threshold reconstruction averaged over patches.

    ``data`` is the normalised ``(x, y, z, t)`` series; singular values below ``threshold``
    (same units) are zeroed; ``algebra`` decomposes and reconstructs each batch. Returns the
    ``(x, y, z, t)`` average (``data``'s dtype) and the ``(x, y, z)`` float32 mean number of
    removed components. ``companions`` (series of ``data``'s shape, NumPy algebra only) are
    **overwritten** with their projections on the subspaces kept for ``data``, patch by patch,
    averaged the same way (:func:`echoprep.kernels.patches.hard_threshold`, whose
    ``companion_map`` says how)."""
    if companions and algebra is not NUMPY_ALGEBRA:
        raise ValueError("NORDIC: companion series run on the CPU (NumPy) algebra only")
    starts, weights, offsets = patch_grid(data.shape[:3], kernel)
    kx, ky, kz = kernel
    nt = data.shape[3]
    targets = [np.zeros(data.shape, data.dtype) for _ in range(1 + len(companions))]
    count = np.zeros(data.shape[:3])
    removed_sum = np.zeros(data.shape[:3])

    def compute(a: np.ndarray, b: slice) -> tuple[np.ndarray, list[np.ndarray]]:
        if not companions:
            return algebra.hard_threshold(a, threshold)[1], []
        others = [gather(c, starts[b], kernel) for c in companions]
        return hard_threshold(a, threshold, others, companion_map)[1], others

    def consume(b: slice, recon: np.ndarray, result: tuple[np.ndarray, list[np.ndarray]]) -> None:
        removed, others = result
        stacks = [x.reshape(-1, kx, ky, kz, nt) for x in (recon, *others)]
        for i, ((x, y, z), off, w, n_rm) in enumerate(
            zip(starts[b], offsets[b], weights[b], removed, strict=True)
        ):
            box = (slice(x + off, x + kx), slice(y, y + ky), slice(z, z + kz))
            for acc, boxes in zip(targets, stacks, strict=True):
                if w == 1:
                    acc[box] += boxes[i][off:]
                else:
                    acc[box] += np.float32(w) * boxes[i][off:]
            count[box] += w
            removed_sum[box] += w * n_rm

    patch_pass("patches", data, starts, kernel, chunk, workers, compute, consume)
    inv = (1 / count).astype(np.float32)
    for s in slabs(data.shape[0], int(np.prod(data.shape[1:])) * 8):
        for acc in targets:
            acc[s] *= inv[s][..., None]
    for c, acc in zip(companions, targets[1:], strict=True):
        c[...] = acc
    return targets[0], (removed_sum / count).astype(np.float32)


def slabs(n: int, bytes_per_plane: int) -> list[slice]:
    """Slices of ``0 .. n-1`` (the first axis) with about :data:`SLAB_BYTES` per slice, given
    the bytes of temporaries one index along that axis needs (at least one index each)."""
    step = max(1, SLAB_BYTES // max(1, bytes_per_plane))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


__all__ = [
    "NUMPY_ALGEBRA",
    "SLAB_BYTES",
    "PatchAlgebra",
    "denoise_pass",
    "gfactor_pass",
    "patch_pass",
    "slabs",
]

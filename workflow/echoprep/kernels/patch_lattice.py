"""The NORDIC patch grid as regular lattices of non-overlapping patches, for the device path.

The patches of :func:`echoprep.kernels.patches.patch_grid` are the product of per-axis
starts (every ``max(1, k // 2)`` voxels, plus the last full patch; along x the reference's
starts plus a fill-in patch). Along one axis the regular starts ``0, s, 2s, ...`` fall into
``q = ceil(k / s)`` classes (start index modulo ``q``) whose patches are ``q * s >= k`` apart,
so they do not overlap; every irregular start (the last full patch, the x fill-in patch) is a
class of its own. A product of one class per axis is a *lattice*: a regular 3-D array of
patches of which no two share a voxel, so a whole lattice is read with one strided view of
the series and its reconstructions are added back with one strided in-place add, without
atomics (``index_add_``/``fold`` on a GPU are atomic, and their float sums depend on
scheduling). Adding the lattices one after another in a fixed order makes every voxel's sum
the same sequence of additions on every run, whatever the batch size.

Batches are lists of *pieces* (a sub-box of one lattice) with at most ``max_patches``
patches in all, in lattice order.

Pure Python and NumPy (no torch): the device code is in
:mod:`echoprep.kernels.nordic_torch_patches`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from echoprep.kernels.patches import axis_starts, x_starts


@dataclass(frozen=True)
class AxisRun:
    """Patch starts along one axis that are at least a patch length apart.

    Attributes
    ----------
    start
        First start, 0-based voxel index.
    count
        Number of starts: ``start + i * spacing`` for ``i < count``.
    spacing
        Voxels between consecutive starts (``>= k`` when ``count > 1``).
    weights
        Per start: how many times it occurs in the grid (1, or 2 for a last start that
        coincides with a regular one along y or z).
    offset
        The patches contribute to their planes ``offset .. k - 1`` only (the x fill-in
        patch; 0 otherwise).
    """

    start: int
    count: int
    spacing: int
    weights: tuple[float, ...]
    offset: int = 0

    def starts(self) -> list[int]:
        """The starts, increasing."""
        return [self.start + i * self.spacing for i in range(self.count)]

    def part(self, first: int, count: int) -> AxisRun:
        """The run of starts ``first .. first + count - 1`` of this one."""
        return AxisRun(
            self.start + first * self.spacing,
            count,
            self.spacing,
            self.weights[first : first + count],
            self.offset,
        )


#: A piece of a lattice: one :class:`AxisRun` per axis (x, y, z).
Piece = tuple[AxisRun, AxisRun, AxisRun]


def axis_runs(
    starts: dict[int, float], k: int, offsets: dict[int, int] | None = None
) -> list[AxisRun]:
    """Split one axis's starts into runs of non-overlapping patches.

    Parameters
    ----------
    starts
        Start (0-based) -> weight.
    k
        Patch length along the axis.
    offsets
        Start -> first contributing plane, for starts with a non-zero offset (each becomes a
        run of its own).

    Returns
    -------
    list of AxisRun
        The ``q`` classes of the regular starts ``0, s, 2s, ...`` (``s = max(1, k // 2)``),
        then every other start on its own, in increasing order; each start appears once.
    """
    offsets = offsets or {}
    step = max(1, k // 2)
    n_regular = 0
    while n_regular * step in starts and n_regular * step not in offsets:
        n_regular += 1
    q = math.ceil(k / step)
    runs = []
    for c in range(min(q, n_regular)):
        idx = range(c, n_regular, q)
        runs.append(AxisRun(c * step, len(idx), q * step, tuple(starts[i * step] for i in idx)))
    regular = {i * step for i in range(n_regular)}
    for s in sorted(set(starts) - regular):
        runs.append(AxisRun(s, 1, k, (starts[s],), offsets.get(s, 0)))
    return runs


def grid_runs(shape: tuple[int, int, int], kernel: tuple[int, int, int]) -> list[list[AxisRun]]:
    """The runs of each axis for the patch grid of :func:`echoprep.kernels.patches.patch_grid`
    (same patches, weights and x offsets).

    Parameters
    ----------
    shape
        ``(nx, ny, nz)``.
    kernel
        ``(kx, ky, kz)``, each at most the matching ``shape`` entry.

    Returns
    -------
    list of list of AxisRun
        Runs along x, y and z.
    """
    (nx, ny, nz), (kx, ky, kz) = shape, kernel
    xs, fill = x_starts(nx, kx)
    x_weights: dict[int, float] = dict.fromkeys(xs, 1.0)
    x_offsets: dict[int, int] = {}
    if fill is not None:
        x_weights[nx - kx] = 1.0  # never one of xs: those end before nx - 1
        x_offsets[nx - kx] = fill
    runs = [axis_runs(x_weights, kx, x_offsets)]
    for n, k in ((ny, ky), (nz, kz)):
        counts = Counter(axis_starts(n, k))
        runs.append(axis_runs({s: float(w) for s, w in counts.items()}, k))
    return runs


def pieces(
    shape: tuple[int, int, int], kernel: tuple[int, int, int], max_patches: int
) -> Iterator[Piece]:
    """The lattices of the patch grid cut into pieces of at most ``max_patches`` patches.

    Lattices come in the order x run, y run, z run (each in :func:`grid_runs` order); a
    lattice too large is cut along x first (whole y-z layers), then y, then z.

    Parameters
    ----------
    shape, kernel
        As for :func:`grid_runs`.
    max_patches
        At least 1.

    Yields
    ------
    Piece
        One run per axis; ``count`` products are at most ``max_patches``.
    """
    if max_patches < 1:
        raise ValueError(f"max_patches must be >= 1; found {max_patches}")
    rx, ry, rz = grid_runs(shape, kernel)
    for x in rx:
        for y in ry:
            for z in rz:
                yield from _cut(x, y, z, max_patches)


def _cut(x: AxisRun, y: AxisRun, z: AxisRun, max_patches: int) -> Iterator[Piece]:
    layer = y.count * z.count
    if layer <= max_patches:
        step = max_patches // layer
        for i in range(0, x.count, step):
            yield x.part(i, min(step, x.count - i)), y, z
        return
    for i in range(x.count):
        xi = x.part(i, 1)
        if z.count <= max_patches:
            step = max_patches // z.count
            for j in range(0, y.count, step):
                yield xi, y.part(j, min(step, y.count - j)), z
            continue
        for j in range(y.count):
            for m in range(0, z.count, max_patches):
                yield xi, y.part(j, 1), z.part(m, min(max_patches, z.count - m))


def n_patches(piece: Piece) -> int:
    """Patches in a piece."""
    return piece[0].count * piece[1].count * piece[2].count


def batches(
    shape: tuple[int, int, int], kernel: tuple[int, int, int], max_patches: int
) -> list[list[Piece]]:
    """The pieces of :func:`pieces` packed in order into batches of at most ``max_patches``
    patches (a new batch starts when the next piece does not fit)."""
    out: list[list[Piece]] = []
    size = max_patches
    for piece in pieces(shape, kernel, max_patches):
        n = n_patches(piece)
        if size + n > max_patches:
            out.append([])
            size = 0
        out[-1].append(piece)
        size += n
    return out


def piece_weights(piece: Piece) -> np.ndarray | None:
    """``(cx, cy, cz)`` float64 weight of each patch of the piece (product of the axes'
    weights), or None when all are 1."""
    x, y, z = piece
    if all(w == 1 for run in piece for w in run.weights):
        return None
    return np.multiply.outer(np.multiply.outer(x.weights, y.weights), z.weights)


__all__ = [
    "AxisRun",
    "Piece",
    "axis_runs",
    "batches",
    "grid_runs",
    "n_patches",
    "piece_weights",
    "pieces",
]

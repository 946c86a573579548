"""The patch grid as lattices of non-overlapping patches (kernels/patch_lattice.py), the
layout of NORDIC's device path: the same patches, weights and x offsets as
:func:`echoprep.kernels.patches.patch_grid`, no two patches of a piece sharing a voxel, and
batches within their size."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from echoprep.kernels.patch_lattice import (
    AxisRun,
    axis_runs,
    batches,
    n_patches,
    piece_weights,
    pieces,
)
from echoprep.kernels.patches import patch_grid

GRIDS = [
    ((20, 22, 14), (7, 7, 7)),  # odd kernel: three classes per axis
    ((19, 21, 13), (6, 6, 6)),  # the grid does not divide the volume
    ((90, 110, 72), (12, 12, 12)),  # LAION geometry, main pass
    ((90, 110, 72), (14, 14, 1)),  # LAION geometry, g-factor pass
    ((12, 9, 5), (12, 4, 5)),  # kernel as large as the volume along x and z
    ((7, 8, 3), (1, 2, 3)),
]


def _rows(shape, kernel, max_patches):
    rows = Counter()
    for piece in pieces(shape, kernel, max_patches):
        w = piece_weights(piece)
        x, y, z = piece
        for i, xs in enumerate(x.starts()):
            for j, ys in enumerate(y.starts()):
                for m, zs in enumerate(z.starts()):
                    rows[(xs, ys, zs, 1.0 if w is None else w[i, j, m], x.offset)] += 1
    return rows


@pytest.mark.parametrize("shape, kernel", GRIDS)
@pytest.mark.parametrize("max_patches", [1, 7, 10**6])
def test_pieces_hold_the_patch_grid_once(shape, kernel, max_patches):
    starts, weights, offsets = patch_grid(shape, kernel)
    expected = Counter(
        (*map(int, s), float(w), int(o)) for s, w, o in zip(starts, weights, offsets, strict=True)
    )
    assert _rows(shape, kernel, max_patches) == expected


@pytest.mark.parametrize("shape, kernel", GRIDS)
def test_no_two_patches_of_a_piece_share_a_voxel(shape, kernel):
    for piece in pieces(shape, kernel, 10**6):
        cover = np.zeros(shape, int)
        x, y, z = piece
        kx, ky, kz = kernel
        for xs in x.starts():
            for ys in y.starts():
                for zs in z.starts():
                    cover[xs + x.offset : xs + kx, ys : ys + ky, zs : zs + kz] += 1
        assert cover.max() == 1


def test_batches_keep_the_lattice_order_and_their_size():
    shape, kernel = (20, 22, 14), (7, 7, 7)
    whole = list(pieces(shape, kernel, 10**6))
    for max_patches in (1, 5, 40, 10**6):
        plan = batches(shape, kernel, max_patches)
        assert all(sum(n_patches(p) for p in b) <= max_patches for b in plan)
        flat = [p for b in plan for p in b]
        assert sum(map(n_patches, flat)) == sum(map(n_patches, whole))
    assert len(batches(shape, kernel, 10**6)) == 1
    assert len(batches(shape, kernel, 5)) > len(batches(shape, kernel, 40))


def test_axis_runs_split_the_regular_starts_into_classes():
    # starts 0, 3, 6, 9 (+ the last start 9 twice) of a 7-voxel patch: spacing 9 >= 7
    runs = axis_runs({0: 1.0, 3: 1.0, 6: 1.0, 9: 2.0, 10: 1.0}, 7)
    assert runs == [
        AxisRun(0, 2, 9, (1.0, 2.0)),
        AxisRun(3, 1, 9, (1.0,)),
        AxisRun(6, 1, 9, (1.0,)),
        AxisRun(10, 1, 7, (1.0,)),
    ]
    assert runs[0].part(1, 1) == AxisRun(9, 1, 9, (2.0,))
    with pytest.raises(ValueError, match="max_patches must be >= 1"):
        next(pieces((8, 8, 8), (4, 4, 4), 0))

"""Fieldmap → voxel shift map: units, the PE sign convention, resampling, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.geometry.distortion import (
    combine_fieldmaps,
    distorted_positions,
    fieldmap_to_grid,
    pe_axis_sign,
    phasediff_to_hz,
    shift_jacobian,
    siemens_phase_to_radians,
    smooth_fieldmap,
    voxel_shift_map,
)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("i", (0, 1)),
        ("i-", (0, -1)),
        ("j", (1, 1)),
        ("j-", (1, -1)),
        ("k", (2, 1)),
        ("k-", (2, -1)),
    ],
)
def test_pe_axis_sign(direction, expected):
    assert pe_axis_sign(direction) == expected


@pytest.mark.parametrize("bad", ["y-", "AP", "", "j+", "-j", "J"])
def test_unknown_pe_direction(bad):
    with pytest.raises(ValueError, match="unknown PhaseEncodingDirection"):
        pe_axis_sign(bad)


def test_phasediff_units():
    hz = phasediff_to_hz(np.array([np.pi / 2, -np.pi, 0.0]), 1.02e-3)
    np.testing.assert_allclose(hz, [1 / (4 * 1.02e-3), -1 / (2 * 1.02e-3), 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        siemens_phase_to_radians(np.array([4096, -4096, 2048])), [np.pi, -np.pi, np.pi / 2]
    )
    with pytest.raises(ValueError, match="delta_te must be > 0"):
        phasediff_to_hz(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="must be in radians"):
        phasediff_to_hz(np.array([4000.0]), 1.02e-3)
    with pytest.raises(ValueError, match="non-finite"):
        phasediff_to_hz(np.array([np.nan]), 1.02e-3)


def test_voxel_shift_map_sign_and_scale():
    hz = np.full((3, 4, 5), 100.0, np.float32)
    vsm, axis = voxel_shift_map(hz, 0.02, "j")
    assert axis == 1
    np.testing.assert_allclose(vsm, 2.0)
    vsm, axis = voxel_shift_map(hz, 0.02, "j-")
    np.testing.assert_allclose(vsm, -2.0)
    vsm, axis = voxel_shift_map(hz, 0.02, "k-")
    assert axis == 2
    with pytest.raises(ValueError, match="readout_time must be > 0"):
        voxel_shift_map(hz, 0.0, "j")
    with pytest.raises(ValueError, match="unknown PhaseEncodingDirection"):
        voxel_shift_map(hz, 0.02, "x")


@pytest.mark.parametrize(("direction", "moves"), [("j", +3), ("j-", -3)])
def test_forward_model_moves_a_line_by_the_shift(direction, moves):
    """A bright plane at true j = 20 with +100 Hz and T_ro 0.03 s shows at 20 + sign * 3."""
    shape = (4, 40, 3)
    hz = np.full(shape, 100.0, np.float32)
    vsm, axis = voxel_shift_map(hz, 0.03, direction)
    p = distorted_positions(vsm, axis)  # true position seen at each distorted grid position
    truth = np.zeros(shape)
    truth[:, 20] = 1.0
    # I_d(q) = I(p(q)) / J(p(q)); the true image is sampled at p(q)
    j = np.arange(shape[1])
    distorted = np.stack(
        [[np.interp(p[x, :, z], j, truth[x, :, z]) for z in range(3)] for x in range(4)]
    ).transpose(0, 2, 1) / shift_jacobian(vsm, axis)
    assert np.argmax(distorted[0, :, 0]) == 20 + moves


def test_distorted_positions_inverts_a_smooth_shift():
    j = np.arange(60, dtype=np.float64)
    s_true = 4.0 * np.exp(-((j - 30) ** 2) / (2 * 8.0**2))  # |ds/dj| < 1
    vsm = np.broadcast_to(s_true[None, :, None], (2, 60, 2)).astype(np.float32)
    p = distorted_positions(vsm, 1)
    # p + s(p) = q (interior, where p stays inside the grid)
    s_at_p = np.interp(p[0, :, 0], j, s_true)
    np.testing.assert_allclose((p[0, :, 0] + s_at_p)[5:-5], j[5:-5], atol=1e-6)


def test_shift_jacobian_of_a_ramp():
    vsm = np.broadcast_to(0.25 * np.arange(10, dtype=np.float32)[None, None, :], (3, 4, 10))
    np.testing.assert_allclose(shift_jacobian(vsm, 2), 1.25)
    np.testing.assert_allclose(shift_jacobian(vsm, 0), 1.0)


def test_fieldmap_to_grid_linear_field():
    def field(x):
        return 5.0 + 2.0 * x[..., 0] - 1.5 * x[..., 1] + 0.5 * x[..., 2]

    f_aff = np.diag([2.5, 2.5, 3.0, 1.0])
    f_aff[:3, 3] = [-50, -60, -40]
    f_shape = (41, 49, 28)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in f_shape], indexing="ij"), -1)
    fmap = field(ijk @ f_aff[:3, :3].T + f_aff[:3, 3]).astype(np.float32)
    b_aff = np.diag([1.8, 1.8, 1.8, 1.0])
    b_aff[:3, 3] = [-30, -40, -20]
    b_shape = (30, 40, 20)
    bijk = np.stack(np.meshgrid(*[np.arange(n) for n in b_shape], indexing="ij"), -1)
    bw = bijk @ b_aff[:3, :3].T + b_aff[:3, 3]
    out = fieldmap_to_grid(fmap, f_aff, b_shape, b_aff)
    np.testing.assert_allclose(out, field(bw), rtol=1e-4, atol=1e-3)
    # head displaced by +2 mm in x in the fieldmap session
    shift = np.eye(4)
    shift[0, 3] = 2.0
    out2 = fieldmap_to_grid(fmap, f_aff, b_shape, b_aff, fmap_from_target=shift)
    np.testing.assert_allclose(out2, field(bw) + 4.0, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="fieldmap must be 3D"):
        fieldmap_to_grid(fmap[..., None], f_aff, b_shape, b_aff)


def test_smooth_fieldmap_fills_and_preserves_constants():
    hz = np.full((20, 20, 20), 50.0, np.float32)
    mask = np.zeros(hz.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    hz[~mask] = -1000.0  # garbage outside the reliable mask
    out = smooth_fieldmap(hz, mask, (2.0, 2.0, 2.0), fwhm_mm=6.0)
    np.testing.assert_allclose(out[mask], 50.0, rtol=1e-5)
    np.testing.assert_allclose(out[3, 10, 10], 50.0, rtol=1e-5)  # filled next to the mask
    filled = smooth_fieldmap(hz, mask, (2.0, 2.0, 2.0), fwhm_mm=0.0)
    np.testing.assert_allclose(filled, 50.0)
    with pytest.raises(ValueError, match="mask shape"):
        smooth_fieldmap(hz, mask[1:], (2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="mask is empty"):
        smooth_fieldmap(hz, np.zeros_like(mask), (2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="fwhm_mm must be >= 0"):
        smooth_fieldmap(hz, mask, (2.0, 2.0, 2.0), fwhm_mm=-1)


def test_combine_fieldmaps_weights_masks_and_head_transform():
    """Weighted on one grid, masks intersected, the noise outside a mask kept out, and a
    fieldmap of a moved head brought back by its transform."""
    shape, aff = (10, 12, 8), np.diag([2.0, 2.0, 2.0, 1.0])
    a = np.full(shape, 10.0, np.float32)
    b = np.full(shape, 30.0, np.float32)
    ma, mb = np.ones(shape, bool), np.ones(shape, bool)
    ma[0], mb[-1] = False, False
    b[-1] = 1000.0  # background phase noise outside b's mask
    hz, mask = combine_fieldmaps([a, b], [aff, aff], [ma, mb], [0.25, 0.75], shape, aff)
    np.testing.assert_allclose(hz, 25.0, atol=1e-5)
    assert np.array_equal(mask, ma & mb)
    # the head moved 2 mm (one voxel) along +x in the second fieldmap
    ramp = np.broadcast_to(np.arange(10.0)[:, None, None], shape).astype(np.float32)
    moved = ramp - 1
    move = np.eye(4)
    move[0, 3] = 2.0
    hz, mask = combine_fieldmaps([moved], [aff], [None], [1.0], shape, aff, [move])
    assert mask is None
    np.testing.assert_allclose(hz[:-1], ramp[:-1], atol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        combine_fieldmaps([a], [aff], [None], [0.0], shape, aff)

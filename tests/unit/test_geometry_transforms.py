"""Rigid-transform conventions of the geometry kernels (and their agreement with the simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.geometry.distortion import pe_axis_sign
from echoprep.kernels.geometry.transforms import (
    apply_matrix,
    check_matrix,
    grid_center,
    is_rigid,
    rigid_matrix,
    rigid_params,
    rms_displacement,
    rotation_angles,
    rotation_matrix,
)


def _random_params(rng: np.random.Generator, n: int, mm: float = 5.0, deg: float = 10.0):
    return np.concatenate(
        [rng.uniform(-mm, mm, (n, 3)), np.deg2rad(rng.uniform(-deg, deg, (n, 3)))], axis=1
    )


def test_rotation_is_rz_ry_rx_right_handed():
    # a +90 deg rotation about z takes +x to +y; about x takes +y to +z; about y takes +z to +x
    np.testing.assert_allclose(
        rotation_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-12
    )
    np.testing.assert_allclose(
        rotation_matrix([np.pi / 2, 0, 0]) @ [0, 1, 0], [0, 0, 1], atol=1e-12
    )
    np.testing.assert_allclose(
        rotation_matrix([0, np.pi / 2, 0]) @ [0, 0, 1], [1, 0, 0], atol=1e-12
    )
    a = np.array([0.1, -0.2, 0.3])
    rx, ry, rz = (rotation_matrix(v) for v in np.diag(a))
    np.testing.assert_allclose(rotation_matrix(a), rz @ ry @ rx, atol=1e-12)


def test_params_matrix_round_trip_and_centre():
    rng = np.random.default_rng(0)
    p = _random_params(rng, 20)
    c = np.array([1.0, -20.0, 15.0])
    m = rigid_matrix(p, c)
    assert m.shape == (20, 4, 4)
    assert all(is_rigid(mm) for mm in m)
    np.testing.assert_allclose(rigid_params(m, c), p, atol=1e-12)
    np.testing.assert_allclose(rotation_angles(rotation_matrix(p[:, 3:])), p[:, 3:], atol=1e-12)
    # the centre is moved by the translation only: x -> c + R (x - c) + d
    np.testing.assert_allclose(apply_matrix(m[3], c), c + p[3, :3], atol=1e-12)


def test_grid_center_and_rms_displacement():
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = [-10, -20, 5]
    np.testing.assert_allclose(grid_center((11, 21, 5), aff), [0, 0, 11])
    shift = np.eye(4)
    shift[:3, 3] = [3, 4, 0]
    pts = np.random.default_rng(1).normal(size=(100, 3))
    assert rms_displacement(shift, np.eye(4), pts) == pytest.approx(5.0)


def test_check_matrix_messages():
    with pytest.raises(ValueError, match="must be a 4x4 matrix"):
        check_matrix(np.eye(3), "m")
    with pytest.raises(ValueError, match="last row"):
        check_matrix(np.ones((4, 4)), "m")
    with pytest.raises(ValueError, match="not a rigid transform"):
        check_matrix(np.diag([2.0, 1, 1, 1]), "m", rigid=True)
    with pytest.raises(ValueError, match="rigid_matrix: params must have shape"):
        rigid_matrix(np.zeros(5))


def test_conventions_agree_with_the_simulator():
    """Motion parameters and the PE sign mean the same in the simulator and the kernels."""
    sim = pytest.importorskip("echoprep.simulate.geometry")
    rng = np.random.default_rng(2)
    c = np.array([0.0, 18.0, -7.0])
    for p in _random_params(rng, 5):
        np.testing.assert_allclose(sim.rigid_matrix(p, c), rigid_matrix(p, c), atol=1e-12)
    axis, sign = pe_axis_sign(sim.PE_DIRECTION)
    assert axis == sim.PE_AXIS
    assert sign == sim.PE_SIGN

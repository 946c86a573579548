"""BOLD reference → T1w rigid registration with ANTs: conversions and a known cross-modal offset.

The ANTs calls are :mod:`echoprep.adapters.ants`; the RAS/LPS arithmetic under them is
:mod:`echoprep.kernels.geometry.registration` (pure numpy, tested without ANTs first).

Target (issue 6): a T2*-like and a T1-like image of the same synthetic head with a known rigid
offset (<= 8 deg, <= 10 mm) recovered to <= 1 mm RMS displacement over the brain.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from echoprep.kernels.geometry.registration import (
    itk_affine_to_world,
    lps_geometry,
    ras_affine,
    world_to_itk_affine,
)
from echoprep.kernels.geometry.transforms import rigid_matrix as _rigid


def test_lps_geometry_and_ras_affine_round_trip():
    aff = np.eye(4)
    aff[:3, :3] = _rigid(np.array([0, 0, 0, 0.2, -0.1, 0.3]))[:3, :3] @ np.diag([2.0, 1.5, 3.0])
    aff[:3, 3] = [40.0, -20.0, 10.0]
    origin, spacing, direction = lps_geometry(aff)
    np.testing.assert_allclose(spacing, [2.0, 1.5, 3.0])
    np.testing.assert_allclose(origin, [-40.0, 20.0, 10.0])  # RAS -> LPS: x and y negated
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(ras_affine(origin, spacing, direction), aff, atol=1e-12)
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="ants_image: the affine has shear"):
        lps_geometry(shear)


def test_itk_affine_parameters_round_trip_with_a_centre():
    m = _rigid(np.array([3.0, -4.0, 5.0, 0.1, 0.2, -0.15]), np.array([10.0, 0.0, -5.0]))
    params, fixed = world_to_itk_affine(m)
    assert params.shape == (12,) and np.array_equal(fixed, np.zeros(3))
    np.testing.assert_allclose(itk_affine_to_world(params, fixed), m, atol=1e-12)
    # the same transform about another centre c: translation t' = t + A c - c
    c = np.array([7.0, -3.0, 2.0])
    a = params[:9].reshape(3, 3)
    moved = np.concatenate([params[:9], params[9:] + a @ c - c])
    np.testing.assert_allclose(itk_affine_to_world(moved, c), m, atol=1e-12)
    with pytest.raises(ValueError, match="expected 12 affine parameters; found 6"):
        itk_affine_to_world(np.zeros(6), np.zeros(3))


os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

ants = pytest.importorskip("ants")

from echoprep.adapters.ants import (  # noqa: E402
    ants_image,
    ants_transform_to_world,
    register_cross_modal,
    world_to_ants_transform,
)
from echoprep.kernels.geometry.phantom import brain_fraction, grid_points, head_phantom  # noqa: E402
from echoprep.kernels.geometry.transforms import (  # noqa: E402
    apply_matrix,
    rigid_matrix,
    rms_displacement,
)


def _grid(shape, vs):
    a = np.diag([vs, vs, vs, 1.0])
    a[:3, 3] = -(np.asarray(shape) - 1) / 2 * vs
    return a


def test_ants_image_geometry_matches_the_affine():
    aff = np.eye(4)
    aff[:3, :3] = rigid_matrix(np.array([0, 0, 0, 0.2, -0.1, 0.3]))[:3, :3] @ np.diag(
        [-2.0, 1.5, 3.0]
    )
    aff[:3, 3] = [40.0, -20.0, 10.0]
    img = ants_image(np.zeros((5, 6, 7)), aff)
    for ijk in ([0, 0, 0], [4, 5, 6], [1, 3, 2]):
        lps = np.asarray(ants.transform_index_to_physical_point(img, [int(v) for v in ijk]))
        np.testing.assert_allclose(
            lps * [-1, -1, 1], apply_matrix(aff, np.array(ijk, float)), atol=1e-4
        )
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="shear"):
        ants_image(np.zeros((2, 2, 2)), shear)


def test_world_ants_transform_round_trip_and_direction():
    m = rigid_matrix(np.array([3.0, -4.0, 5.0, 0.1, 0.2, -0.15]), np.array([10.0, 0.0, -5.0]))
    tx = world_to_ants_transform(m)
    np.testing.assert_allclose(ants_transform_to_world(tx), m, atol=1e-6)
    # ITK transforms map fixed (LPS) points to moving (LPS) points: moving_from_fixed
    x = np.array([12.0, -7.0, 30.0])
    y_lps = np.asarray(tx.apply_to_point(tuple(x * [-1, -1, 1])))
    np.testing.assert_allclose(y_lps * [-1, -1, 1], apply_matrix(m, x), atol=1e-5)


def test_cross_modal_known_offset():
    t1_shape, t1_aff = (80, 96, 76), _grid((80, 96, 76), 2.0)
    b_shape, b_aff = (60, 74, 50), _grid((60, 74, 50), 2.5)
    # the BOLD reference's head is the T1w head moved by ref_from_t1w (7 deg, 9.8 mm)
    ref_from_t1w = rigid_matrix(
        np.array([6.0, -6.0, 4.5, np.deg2rad(7), np.deg2rad(-5), np.deg2rad(6)]), np.zeros(3)
    )
    t1_pts = grid_points(t1_shape, t1_aff)
    brain = brain_fraction(t1_pts, seed=2)
    t1_brain = head_phantom(t1_pts, "t1", seed=2) * (brain > 0.5)
    b_pts = grid_points(b_shape, b_aff)
    rng = np.random.default_rng(0)
    boldref = head_phantom(apply_matrix(np.linalg.inv(ref_from_t1w), b_pts), "bold", seed=2)
    boldref += 0.02 * rng.standard_normal(b_shape).astype(np.float32)
    res = register_cross_modal(t1_brain, t1_aff, boldref, b_aff)
    pts = t1_pts[brain > 0.5]
    assert rms_displacement(res.moving_from_fixed, ref_from_t1w, pts) <= 1.0
    assert rms_displacement(np.eye(4), ref_from_t1w, pts) > 8.0  # not trivial
    assert res.transform == "Rigid" and res.metric == "mattes"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transform": "Affine"}, "transform must be one of"),
        ({"metric": "CC"}, "metric must be one of"),
        ({"seed": 0}, "seed must be >= 1 or None"),
        ({"fixed_mask": np.ones((3, 3, 3))}, "fixed_mask shape"),
    ],
)
def test_bad_settings(kwargs, match):
    img = np.ones((6, 6, 6), np.float32)
    with pytest.raises(ValueError, match=match):
        register_cross_modal(img, np.eye(4), img, np.eye(4), **kwargs)


def test_bad_images():
    img = np.ones((6, 6, 6), np.float32)
    with pytest.raises(ValueError, match="moving image must be 3D"):
        register_cross_modal(img, np.eye(4), img[..., None], np.eye(4))
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="fixed image has non-finite values"):
        register_cross_modal(bad, np.eye(4), img, np.eye(4))

"""One-shot resampler: the composed chain against a known answer, one interpolation per volume,
identical transforms for all echoes (by digest and by a spy), output grids, input checks."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

import echoprep.kernels.geometry.resampling as rs
from echoprep.kernels.geometry.phantom import brain_fraction, grid_points, head_phantom
from echoprep.kernels.geometry.resampling import (
    Chain,
    OutputGrid,
    native_grid,
    resample,
    t1w_aligned_grid,
    undistort_reference,
)
from echoprep.kernels.geometry.transforms import apply_matrix, grid_center, rigid_matrix

SHAPE = (48, 58, 40)
PE_AXIS = 1
T = 4


def _grid(shape, vs, center=(0.0, 0.0, 0.0)):
    a = np.diag([vs, vs, vs, 1.0])
    a[:3, 3] = np.asarray(center) - (np.asarray(shape) - 1) / 2 * vs
    return a


AFFINE = _grid(SHAPE, 3.0)
_X0, _SIG, _AMP = np.array([10.0, 30.0, -10.0]), 25.0, 3.0


def _shift(x):
    """Analytic voxel shift (voxels along j) at world points of the reference head."""
    return _AMP * np.exp(-np.sum((x - _X0) ** 2, -1) / (2 * _SIG**2))


@cache
def _case():
    """A moved and distorted native series with its exact truth.

    Volume t at native voxel w shows the distorted reference image at q = inv(A) inv(M_t) A w;
    the true position p solves p + s(p) e_j = q; the intensity is I(p) / J(p).
    """
    rng = np.random.default_rng(1)
    params = np.concatenate([rng.uniform(-2, 2, (T, 3)), np.deg2rad(rng.uniform(-2, 2, (T, 3)))], 1)
    vol_from_ref = rigid_matrix(params, grid_center(SHAPE, AFFINE))
    ijk = np.indices(SHAPE).reshape(3, -1).T.astype(np.float64)
    series = np.empty((*SHAPE, T), np.float32)
    for t in range(T):
        q = apply_matrix(np.linalg.inv(AFFINE) @ np.linalg.inv(vol_from_ref[t]) @ AFFINE, ijk)
        p = q.copy()
        for _ in range(100):
            p_new = q.copy()
            p_new[:, PE_AXIS] -= _shift(apply_matrix(AFFINE, p))
            if np.abs(p_new - p).max() < 1e-9:
                break
            p = p_new
        x = apply_matrix(AFFINE, p_new)
        grad = -(x - _X0) / _SIG**2 * _shift(x)[:, None]
        jac = 1 + grad @ AFFINE[:3, PE_AXIS]
        series[..., t] = (head_phantom(x) / jac).reshape(SHAPE)
    vsm = _shift(grid_points(SHAPE, AFFINE)).astype(np.float32)
    return series, vol_from_ref, vsm


def _t1w_setup():
    ref_from_t1w = rigid_matrix(np.array([3.0, -4.0, 2.0, 0.05, -0.04, 0.06]))
    grid = OutputGrid((60, 72, 60), _grid((60, 72, 60), 2.5))
    return ref_from_t1w, grid


def test_chain_reproduces_the_truth_in_t1w_space():
    series, vol_from_ref, vsm = _case()
    ref_from_t1w, grid = _t1w_setup()
    pts = grid_points(grid.shape, grid.affine)
    truth = head_phantom(apply_matrix(ref_from_t1w, pts))
    brain = brain_fraction(apply_matrix(ref_from_t1w, pts)) > 0.5
    errs = {}
    for sdc in (True, False):
        chain = Chain(
            SHAPE,
            AFFINE,
            vol_from_ref,
            grid,
            ref_from_out=ref_from_t1w,
            vsm=vsm if sdc else None,
            pe_axis=PE_AXIS if sdc else None,
        )
        out, rec = resample(series, chain, n_threads=2)
        assert out.shape == (*grid.shape, T) and out.dtype == np.float32
        assert rec.interpolations == T and rec.n_volumes == T and rec.chain_digest == chain.digest
        errs[sdc] = np.abs(out - truth[..., None])[brain]
    # with SDC the remaining error is the cubic interpolation of a 3 mm image (~1 %)
    assert np.median(errs[True]) < 0.01 and np.percentile(errs[True], 95) < 0.04
    # without SDC the distortion (up to 3 voxels) is left in: much worse
    assert np.percentile(errs[False], 95) > 4 * np.percentile(errs[True], 95)


def test_each_echo_interpolated_once_with_the_same_chain(monkeypatch):
    series, vol_from_ref, vsm = _case()
    ref_from_t1w, grid = _t1w_setup()
    chain = Chain(SHAPE, AFFINE, vol_from_ref, grid, ref_from_out=ref_from_t1w, vsm=vsm, pe_axis=1)
    calls: list[tuple[int, str]] = []
    real = rs._interpolate

    def spy(volume, coords, order):
        # the sampled array is a raw native volume of the echo being resampled (no earlier
        # interpolation), sampled at the chain's coordinates for that volume
        t = next(t for t in range(T) if np.array_equal(volume, current[..., t]))
        np.testing.assert_array_equal(coords, chain.volume_coordinates(t))
        calls.append((t, chain.digest))
        return real(volume, coords, order)

    monkeypatch.setattr(rs, "_interpolate", spy)
    echoes = [series * f for f in (1.6, 1.0, 0.55)]  # linear: same chain -> proportional outputs
    outs, records = [], []
    for current in echoes:
        calls.clear()
        out, rec = resample(current, chain, n_threads=1)
        assert sorted(t for t, _ in calls) == list(range(T))  # exactly one call per volume
        outs.append(out)
        records.append(rec)
    assert len({r.chain_digest for r in records}) == 1
    assert all(
        r.interpolations == T and r.to_json()["InterpolationsPerVolume"] == 1 for r in records
    )
    np.testing.assert_allclose(outs[0], 1.6 * outs[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs[2], 0.55 * outs[1], rtol=1e-4, atol=1e-5)


def test_identity_chain_returns_the_input():
    series, _, _ = _case()
    chain = Chain(SHAPE, AFFINE, np.repeat(np.eye(4)[None], T, 0), native_grid(SHAPE, AFFINE))
    out, _ = resample(series, chain)
    np.testing.assert_allclose(out, series, atol=1e-4)


def test_chunk_and_thread_invariance():
    series, vol_from_ref, vsm = _case()
    chain = Chain(SHAPE, AFFINE, vol_from_ref, native_grid(SHAPE, AFFINE), vsm=vsm, pe_axis=1)
    a, _ = resample(series, chain, chunk_volumes=1, n_threads=1)
    b, _ = resample(series, chain, chunk_volumes=8, n_threads=2)
    np.testing.assert_array_equal(a, b)
    out = np.zeros_like(a)
    c, _ = resample(series, chain, out=out)
    assert c is out
    np.testing.assert_array_equal(a, c)


def test_digest_is_stable_and_sensitive():
    _, vol_from_ref, vsm = _case()
    grid = native_grid(SHAPE, AFFINE)

    def make(**kw):
        args = {"vol_from_ref": vol_from_ref.copy(), "vsm": vsm.copy(), "pe_axis": 1} | kw
        return Chain(SHAPE, AFFINE.copy(), output=grid, **args)

    base = make()
    assert make().digest == base.digest
    moved = vol_from_ref.copy()
    moved[2, 0, 3] += 1e-9
    assert make(vol_from_ref=moved).digest != base.digest
    assert make(vsm=vsm * 1.001).digest != base.digest
    assert make(order=1).digest != base.digest
    assert make(jacobian=False).digest != base.digest
    assert make(vsm=None, pe_axis=None).digest != base.digest
    # frozen: neither the fields nor their arrays can change after the digest was taken
    with pytest.raises(ValueError, match="read-only"):
        base.vol_from_ref[0, 0, 0] = 2.0
    with pytest.raises(AttributeError):
        base.order = 1  # type: ignore[misc]
    side = base.describe()
    assert side["TransformChainDigest"] == base.digest
    json.dumps(side)


def test_t1w_aligned_grid_covers_the_mask_with_t1w_axes():
    # an oblique, left-right flipped T1w grid
    rot = rigid_matrix(np.array([0, 0, 0, 0.1, -0.05, 0.2]))[:3, :3]
    t1_aff = np.eye(4)
    t1_aff[:3, :3] = rot @ np.diag([-1.0, 1.0, 1.2])
    t1_aff[:3, 3] = [80.0, -100.0, -60.0]
    shape = (160, 200, 150)
    mask = np.zeros(shape, bool)
    mask[30:120, 40:170, 20:110] = True
    g = t1w_aligned_grid(shape, t1_aff, 1.8, mask=mask, margin_mm=5.0)
    np.testing.assert_allclose(g.voxel_size, 1.8)
    dirs_t1 = t1_aff[:3, :3] / np.linalg.norm(t1_aff[:3, :3], axis=0)
    np.testing.assert_allclose(g.affine[:3, :3] / 1.8, dirs_t1, atol=1e-12)
    corners = np.array([[i, j, k] for i in (30, 119) for j in (40, 169) for k in (20, 109)], float)
    inside = apply_matrix(np.linalg.inv(g.affine), apply_matrix(t1_aff, corners))
    margin_vox = 5.0 / 1.8
    assert (inside >= margin_vox - 0.5 - 1e-6).all()
    assert (inside <= np.asarray(g.shape) - 1 - margin_vox + 0.5 + 1e-6).all()
    extent = np.array([90 * 1.0, 130 * 1.0, 90 * 1.2]) + 10
    assert np.all(np.asarray(g.shape) == np.ceil(extent / 1.8 - 1e-6))
    full = t1w_aligned_grid(shape, t1_aff, 2.0)
    assert full.shape == (80, 100, 90)
    with pytest.raises(ValueError, match="mask shape"):
        t1w_aligned_grid(shape, t1_aff, 1.8, mask=mask[1:])
    with pytest.raises(ValueError, match="brain mask is empty"):
        t1w_aligned_grid(shape, t1_aff, 1.8, mask=np.zeros(shape, bool))
    with pytest.raises(ValueError, match="voxel_size must be > 0"):
        t1w_aligned_grid(shape, t1_aff, 0.0)


def test_bad_inputs():
    series, vol_from_ref, vsm = _case()
    grid = native_grid(SHAPE, AFFINE)
    chain = Chain(SHAPE, AFFINE, vol_from_ref, grid)
    with pytest.raises(ValueError, match="does not match the chain"):
        resample(series[:-1], chain)
    with pytest.raises(ValueError, match="does not match the chain"):
        resample(series[..., :-1], chain)
    with pytest.raises(ValueError, match="series must be a 4D array"):
        resample(series[..., 0], chain)
    with pytest.raises(ValueError, match="chain must be a Chain"):
        resample(series, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_volumes must be >= 1"):
        resample(series, chain, chunk_volumes=0)
    with pytest.raises(ValueError, match="out must be float32"):
        resample(series, chain, out=np.zeros((2, 2, 2, T), np.float32))
    with pytest.raises(ValueError, match="vsm shape"):
        Chain(SHAPE, AFFINE, vol_from_ref, grid, vsm=vsm[1:], pe_axis=1)
    with pytest.raises(ValueError, match="pe_axis must be 0, 1 or 2"):
        Chain(SHAPE, AFFINE, vol_from_ref, grid, vsm=vsm, pe_axis=None)
    with pytest.raises(ValueError, match="pe_axis given without a vsm"):
        Chain(SHAPE, AFFINE, vol_from_ref, grid, pe_axis=1)
    bad = vol_from_ref.copy()
    bad[1, :3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"vol_from_ref\[1\] is not a rigid transform"):
        Chain(SHAPE, AFFINE, bad, grid)
    with pytest.raises(ValueError, match=r"vol_from_ref must have shape \(t, 4, 4\)"):
        Chain(SHAPE, AFFINE, np.eye(4), grid)
    with pytest.raises(ValueError, match="order must be 0-5"):
        Chain(SHAPE, AFFINE, vol_from_ref, grid, order=7)
    with pytest.raises(ValueError, match="output must be an OutputGrid"):
        Chain(SHAPE, AFFINE, vol_from_ref, (SHAPE, AFFINE))  # type: ignore[arg-type]


def test_undistort_reference_recovers_the_true_image():
    series, vol_from_ref, vsm = _case()
    # volume 0 moved back to the reference pose is the distorted reference; build it exactly
    ref_pose = Chain(SHAPE, AFFINE, vol_from_ref[:1], native_grid(SHAPE, AFFINE))
    distorted, _ = resample(series[..., :1], ref_pose)
    truth = head_phantom(grid_points(SHAPE, AFFINE))
    brain = brain_fraction(grid_points(SHAPE, AFFINE)) > 0.5
    fixed = undistort_reference(distorted[..., 0], AFFINE, vsm, PE_AXIS)
    err_fixed = np.abs(fixed - truth)[brain]
    err_raw = np.abs(distorted[..., 0] - truth)[brain]
    assert np.percentile(err_fixed, 95) < 0.06
    assert np.percentile(err_raw, 95) > 3 * np.percentile(err_fixed, 95)
    with pytest.raises(ValueError, match="reference must be 3D"):
        undistort_reference(distorted, AFFINE, vsm, PE_AXIS)

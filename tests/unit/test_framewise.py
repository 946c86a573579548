"""Frame-wise distortion correction from the multi-echo phase (docs/distortion.md): the field
estimation against a known field per volume, the resampling chain with a field per volume,
and the plan's choice of method (``spatial.sdc``)."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.geometry import Chain, native_grid, resample
from echoprep.kernels.geometry.framewise import (
    congruent,
    field_change,
    framewise_fields,
    reference_field,
    undistort_field,
    unwrap_quality_guided,
)

TES = np.array([0.011, 0.02882, 0.04662])
SHAPE = (24, 28, 16)


def _head(shape=SHAPE):
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    head = (x**2 + y**2 + z**2) < 0.85
    return x, y, z, head


def _echoes(field, phase0, mag, tes=TES, noise=0.0, rng=None):
    """``(E, ...)`` complex echoes of a field (Hz) with a receive phase, optional noise."""
    z = np.stack([mag * np.exp(1j * (phase0 + 2 * np.pi * field * te)) for te in tes])
    if noise:
        z = z + noise * (rng.standard_normal(z.shape) + 1j * rng.standard_normal(z.shape))
    return z.astype(np.complex64)


def test_quality_guided_unwrapping_recovers_a_steep_smooth_phase():
    """A phase ramp and bump spanning many turns, wrapped: unwrapped exactly up to one turn."""
    x, y, z, head = _head()
    true = 14 * x + 9 * np.exp(-((y - 0.3) ** 2 + z**2) / 0.1)  # rad, up to ~4 turns
    wrapped = np.angle(np.exp(1j * true))
    out = unwrap_quality_guided(wrapped, head.astype(float), head)
    diff = (out - true)[head]
    assert np.ptp(diff) < 1e-9  # one common offset
    assert abs(diff[0] / (2 * np.pi) - round(diff[0] / (2 * np.pi))) < 1e-9  # whole turns
    np.testing.assert_array_equal(out[~head], wrapped[~head])


def test_the_reference_field_is_the_field_whatever_the_receive_phase():
    x, y, z, head = _head()
    field = 120 * x - 60 * y**2 + 40 * np.exp(-(x**2 + (z + 0.5) ** 2) / 0.05)  # Hz, wraps
    phase0 = 1.5 * y + 0.7
    est = reference_field(_echoes(field, phase0, head.astype(float)), TES, head)
    np.testing.assert_allclose(est[head], field[head], atol=1e-6)


def test_the_change_between_volumes_needs_no_unwrapping():
    """A change of up to 9 Hz (the last echo turns by up to 2.6 rad) plus a receive-phase
    change: recovered voxel by voxel; a noisy version within 0.3 Hz."""
    x, y, z, _ = _head()
    static = 150 * x
    change = 9 * np.exp(-((y + 0.4) ** 2) / 0.2) - 3 * z
    ref = _echoes(static, 0.2 * x, 1.0)
    vol = _echoes(static + change, 0.2 * x + 0.4, 1.0)
    # the echoes are complex64: a phase known to ~1e-7 rad is a field known to ~1e-6 Hz
    # (measured 1.6e-6 at worst on a CPU with AVX-512, 1e-6 on AVX2)
    np.testing.assert_allclose(field_change(vol, ref, TES), change, atol=1e-5)
    rng = np.random.default_rng(0)
    noisy = _echoes(static + change, 0.2 * x + 0.4, 1.0, noise=0.01, rng=rng)
    err = np.abs(field_change(noisy, ref, TES) - change)
    assert np.median(err) < 0.1 and np.percentile(err, 99) < 0.3
    assert congruent(np.array([3.0]), np.array([3.0 + 2 * np.pi]))[0] == pytest.approx(
        3.0 + 2 * np.pi
    )


def test_a_field_seen_in_the_distorted_image_is_moved_back():
    """``F(q) = f(p)`` at ``q = p + k f(p)``: the fixed point gives ``f`` back."""
    p = np.arange(64, dtype=float)
    f_true = 30 * np.sin(p / 10)  # Hz
    k = 0.03  # voxels per Hz: shifts up to 0.9 voxel
    q = p + k * f_true
    measured = np.interp(p, q, f_true)  # the field where the image shows it
    est = undistort_field(np.broadcast_to(measured, (2, 3, 64)), 2, k, n_iter=20)
    np.testing.assert_allclose(est[0, 0, 2:-2], f_true[2:-2], atol=0.1)


def test_framewise_fields_follow_a_known_field_per_volume():
    """Volumes whose field changes (breathing-like and a slow drift) without motion and
    distortion: the static part and each volume's field are recovered in the head."""
    x, y, z, head = _head()
    nt = 30
    static = 80 * x - 40 * y
    pattern = 6 * np.exp(-((z + 0.5) ** 2) / 0.3)
    course = np.sin(np.arange(nt) * 0.9)
    drift = np.linspace(-2, 2, nt)
    mag = np.where(head, 1.0, 0.0)
    rng = np.random.default_rng(1)
    echoes = np.stack(
        [
            _echoes(static + pattern * course[t] + drift[t], 0.3 * y, mag, noise=0.002, rng=rng)
            for t in range(nt)
        ],
        axis=-1,
    )
    res = framewise_fields(
        echoes,
        TES,
        axis=1,
        shift_per_hz=0.0,
        ref_volume=0,
        motion=None,
        voxel_size=np.ones(3) * 3.0,
        fwhm_mm=0.0,
        max_rank=4,
    )
    assert res.maps.shape[0] <= 4 and res.courses.shape == (nt, res.maps.shape[0])
    inner = head & (x**2 + y**2 + z**2 < 0.6)
    errs = [
        np.abs(res.field(t) - (static + pattern * course[t] + drift[t]))[inner] for t in range(nt)
    ]
    assert np.percentile(np.concatenate(errs), 95) < 0.2
    assert res.energy > 0.9


def test_the_refusals_name_the_problem():
    with pytest.raises(ValueError, match=r"expected \(echoes >= 2, x, y, z, t\) complex data"):
        framewise_fields(
            np.zeros((1, 2, 2, 2, 3), np.complex64),
            TES[:1],
            axis=1,
            shift_per_hz=0.0,
            ref_volume=0,
            motion=None,
            voxel_size=np.ones(3),
        )
    with pytest.raises(ValueError, match=r"ref_volume 5 not in 0\.\.2"):
        framewise_fields(
            np.zeros((3, 2, 2, 2, 3), np.complex64),
            TES,
            axis=1,
            shift_per_hz=0.0,
            ref_volume=5,
            motion=None,
            voxel_size=np.ones(3),
        )


def _chain(nt, vsm, maps=None, courses=None, jacobian=False):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return Chain(
        SHAPE,
        affine,
        np.repeat(np.eye(4)[None], nt, axis=0),
        native_grid(SHAPE, affine),
        vsm=vsm,
        pe_axis=1,
        jacobian=jacobian,
        order=1,
        vsm_maps=maps,
        vsm_courses=courses,
    )


def test_the_chain_applies_each_volumes_own_shift():
    """A linear ramp along the phase-encoding axis resampled with a shift of ``c_t`` voxels in
    volume ``t``: each volume reads the ramp ``c_t`` voxels further; zero courses give the
    static chain's result, and the digest tells the chains apart."""
    nt = 4
    ramp = np.broadcast_to(np.arange(SHAPE[1], dtype=np.float32)[None, :, None], SHAPE)
    series = np.repeat(ramp[..., None], nt, axis=3).copy()
    zero = np.zeros(SHAPE, np.float32)
    maps = np.ones((1, *SHAPE), np.float32)
    courses = np.array([[0.0], [0.5], [1.0], [-1.5]], np.float32)
    out, _ = resample(series, _chain(nt, zero, maps, courses), n_threads=1)
    inner = out[:, 3:-3]  # away from the ends (held values)
    for t, c in enumerate(courses[:, 0]):
        np.testing.assert_allclose(inner[..., t], ramp[:, 3:-3] + c, atol=1e-5)
    static, _ = resample(series, _chain(nt, zero), n_threads=1)
    same, _ = resample(series, _chain(nt, zero, maps, np.zeros_like(courses)), n_threads=1)
    np.testing.assert_allclose(same, static, atol=1e-6)
    assert _chain(nt, zero, maps, courses).digest != _chain(nt, zero).digest
    assert _chain(nt, zero, maps, courses).describe()["FramewiseDistortionComponents"] == 1
    with pytest.raises(ValueError, match="vsm_maps and vsm_courses go together"):
        _chain(nt, zero, maps, None)
    with pytest.raises(ValueError, match=r"vsm_courses shape \(3, 1\) != \(volumes, K\)"):
        _chain(nt, zero, maps, courses[:3])


def test_the_jacobian_follows_the_volumes_shift():
    """A shift growing along the PE axis by ``c_t * 0.05`` per voxel stretches volume ``t``:
    its Jacobian is ``1 + 0.05 c_t``."""
    nt = 2
    series = np.ones((*SHAPE, nt), np.float32)
    zero = np.zeros(SHAPE, np.float32)
    maps = (0.05 * np.arange(SHAPE[1], dtype=np.float32))[None, None, :, None] * np.ones(
        (1, *SHAPE), np.float32
    )
    courses = np.array([[0.0], [2.0]], np.float32)
    out, _ = resample(series, _chain(nt, zero, maps, courses, jacobian=True), n_threads=1)
    np.testing.assert_allclose(out[4:-4, 4:-4, 4:-4, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(out[4:-4, 4:-4, 4:-4, 1], 1.1, atol=1e-5)


def test_the_spatial_stage_corrects_a_run_frame_by_frame(tmp_path):
    """A simulated run whose field changes: the geometry step writes the run's mean shift and
    its change, the resampling applies one shift per volume, and the shifts follow the truth
    better than the static fieldmap does."""
    import nibabel as nib

    from echoprep.io.bids import discover
    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.truth import run_field_path
    from echoprep.stages.spatial.resample import resample_run
    from echoprep.stages.spatial.run import run_geometry

    bids = tmp_path / "bids"
    simulate_dataset(
        bids, "tiny", runs=1, motion=False, fieldmap=True, distortion=True, field_dynamics=True
    )
    (run,) = discover(bids).runs
    truth = np.asarray(nib.load(run_field_path(bids, "01", "01", "01")).dataobj)
    results = {}
    for method in ("phase-framewise", "fieldmap"):
        out = tmp_path / method
        out.mkdir()
        files = {"boldref": out / "ref.nii.gz", "xfm": out / "xfm.npz"}
        record = run_geometry(
            run.echoes[1].mag,
            files,
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            fieldmap=run.fieldmap.as_spec() if method == "fieldmap" else None,
            framewise=[[e.mag, e.phase, e.echo_time] for e in run.echoes]
            if method != "fieldmap"
            else None,
            pe_direction=run.pe_direction,
            readout_time=run.total_readout_time,
        )
        assert record["FieldmapCorrection"]["Method"] == (
            "phase-framewise" if method != "fieldmap" else "static fieldmap"
        )
        with np.load(files["xfm"]) as z:
            vsm, maps, courses = z["vsm"], z["vsm_maps"], z["vsm_courses"]
        if method == "fieldmap":
            assert maps.size == 0
            shifts = np.repeat(vsm[..., None], truth.shape[-1], axis=-1)
        else:
            assert maps.shape[1:] == vsm.shape and courses.shape == (truth.shape[-1], len(maps))
            shifts = vsm[..., None] + np.einsum("tk,kxyz->xyzt", courses, maps)
        brain = truth.std(axis=-1) > 0
        results[method] = np.median(np.abs(shifts - (-run.total_readout_time * truth))[brain])
        (rec,) = resample_run(
            [run.echoes[1].mag], files["xfm"], files["boldref"], [out / "b.nii.gz"]
        )
        assert rec["InterpolatedOnce"]
        assert rec["TransformChain"]["FramewiseDistortionComponents"] == (
            len(maps) if method != "fieldmap" else 0
        )
    assert results["phase-framewise"] < results["fieldmap"]

    # the report's figure: before/after and, for frame-wise, the change over the run
    from echoprep.report.distortion import sdc_figure
    from echoprep.stages.report import build_report

    for method in ("phase-framewise", "fieldmap"):
        out = tmp_path / method
        sdc_run = [run.echoes[1].mag, out / "ref.nii.gz", out / "xfm.npz"]
        png, stats = sdc_figure(*sdc_run)
        assert png.startswith(b"\x89PNG")
        assert stats["corrected"] and stats["framewise"] == (method == "phase-framewise")
        assert (stats["change_p95"] > 0) == (method == "phase-framewise")
    html = build_report("01", tmp_path / "r.html", sdc_run=sdc_run).read_text()
    assert (
        "sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz: method static "
        "fieldmap, largest shift"
    ) in html

"""NORDIC stage: files in, denoised magnitude + maps + sidecars out; bad input named."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.images import StageInputError
from echoprep.options import OptionsError
from echoprep.stages.nordic import add_arguments, run_from_args, run_nordic

SHAPE = (20, 18, 10, 40)


def _series(tmp_path, n_noise=0, seed=0, slope=1.0):
    """A low-rank complex series + complex noise, written as int16 magnitude and phase."""
    rng = np.random.default_rng(seed)
    x, y, z, t = SHAPE
    space = rng.random((x * y * z, 2))
    time = np.stack([np.ones(t), np.sin(np.linspace(0, 6, t))])
    # a smooth phase ramp that wraps over the whole -pi..pi range, as scanner phase does
    ramp = np.linspace(-np.pi, 3 * np.pi, x)[:, None, None, None] + np.zeros(SHAPE)
    clean = 800 * (1 + 0.05 * space @ time).reshape(SHAPE) * np.exp(1j * ramp)
    if n_noise:
        clean[..., -n_noise:] = 0
    noisy = clean + 20 * (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE))
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    mag_img = nib.Nifti1Image(np.round(np.abs(noisy) / slope).astype(np.int16), affine)
    mag_img.header.set_slope_inter(slope, 0)
    phase = np.round(np.angle(noisy) / np.pi * 4096).clip(-4096, 4095).astype(np.int16)
    nib.save(mag_img, tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(phase, affine), tmp_path / "phase.nii.gz")
    return tmp_path / "mag.nii.gz", tmp_path / "phase.nii.gz", np.abs(clean)


def _outputs(tmp_path):
    return {k: tmp_path / "out" / f"{k}.nii.gz" for k in ("bold", "gfactor", "removed")}


def test_denoises_writes_maps_and_sidecars(tmp_path):
    mag, phase, clean = _series(tmp_path)
    out = _outputs(tmp_path)
    record = run_nordic(mag, phase, out, seed=3, echo_time=0.028, repetition_time=1.9)
    den = nib.load(out["bold"]).get_fdata()
    raw = nib.load(mag).get_fdata()
    assert den.shape == SHAPE and nib.load(out["bold"]).get_data_dtype() == np.float32
    assert np.sqrt(np.mean((den - clean) ** 2)) < 0.5 * np.sqrt(np.mean((raw - clean) ** 2))
    np.testing.assert_allclose(nib.load(out["bold"]).affine, nib.load(mag).affine)
    assert nib.load(out["gfactor"]).shape == SHAPE[:3]
    side = json.loads((tmp_path / "out" / "bold.json").read_text())
    assert side["Sources"] == [str(mag), str(phase)]
    assert side["NORDIC"]["Mode"] == "complex"
    assert side["NORDIC"]["Threshold"] == pytest.approx(record["Threshold"])
    assert side["Parameters"]["seed"] == 3
    assert side["EchoTime"] == 0.028 and side["RepetitionTime"] == 1.9
    for key in ("gfactor", "removed"):
        assert json.loads((tmp_path / "out" / f"{key}.json").read_text())["Description"]


def test_noise_volumes_are_removed_from_the_output_and_recorded(tmp_path):
    mag, phase, _ = _series(tmp_path, n_noise=3)
    out = _outputs(tmp_path)
    run_nordic(mag, phase, out, options={"noise_volumes": 3})
    assert nib.load(out["bold"]).shape[3] == SHAPE[3] - 3
    rec = json.loads((tmp_path / "out" / "bold.json").read_text())["NORDIC"]
    assert rec["NoiseVolumes"] == 3 and rec["NoiseVolumesRemoved"] is True
    assert rec["NumberOfVolumesIn"] == SHAPE[3] and rec["NumberOfVolumes"] == SHAPE[3] - 3


def test_same_seed_same_output(tmp_path):
    mag, phase, _ = _series(tmp_path)
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    run_nordic(mag, phase, a, seed=1)
    run_nordic(mag, phase, b, seed=1)
    np.testing.assert_array_equal(nib.load(a["bold"]).get_fdata(), nib.load(b["bold"]).get_fdata())


def test_stored_scaling_is_applied_and_units_kept(tmp_path):
    mag, _phase, clean = _series(tmp_path, slope=2.0)
    out = _outputs(tmp_path)
    run_nordic(mag, None, out)
    den = nib.load(out["bold"]).get_fdata()
    assert abs(np.median(den) / np.median(clean) - 1) < 0.05
    assert json.loads((tmp_path / "out" / "bold.json").read_text())["NORDIC"]["Mode"] == (
        "magnitude-only"
    )


def test_phase_shape_mismatch_names_both_files(tmp_path):
    mag, phase, _ = _series(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 9, 40), np.int16), np.eye(4)), phase)
    with pytest.raises(
        StageInputError,
        match=r"phase.nii.gz: expected the shape of its magnitude "
        r"mag.nii.gz \(20, 18, 10, 40\); found \(20, 18, 9, 40\)",
    ):
        run_nordic(mag, phase, _outputs(tmp_path))


def test_kernel_errors_name_the_file(tmp_path):
    mag, phase, _ = _series(tmp_path)
    with pytest.raises(StageInputError, match=r"mag.nii.gz: .*noise"):
        run_nordic(mag, phase, _outputs(tmp_path), options={"noise_volumes": SHAPE[3]})


def test_a_3d_magnitude_is_refused(tmp_path):
    f = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4)), f)
    with pytest.raises(StageInputError, match=r"m.nii.gz: expected a 4D magnitude series"):
        run_nordic(f, None, _outputs(tmp_path))


def test_unknown_option_is_refused(tmp_path):
    mag, phase, _ = _series(tmp_path)
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['kernel'\]"):
        run_nordic(mag, phase, _outputs(tmp_path), options={"kernel": [3, 3, 3]})


def test_a_value_the_schema_does_not_allow_is_refused(tmp_path):
    mag, phase, _ = _series(tmp_path)
    with pytest.raises(OptionsError, match=r"nordic.temporal_phase"):
        run_nordic(mag, phase, _outputs(tmp_path), options={"temporal_phase": 7})


def test_phase_on_another_grid_names_both_files(tmp_path):
    mag, phase, _ = _series(tmp_path)
    img = nib.load(phase)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), np.diag([2.0, 2, 2, 1])), phase)
    with pytest.raises(StageInputError, match=r"phase.nii.gz: expected a phase series on the grid"):
        run_nordic(mag, phase, _outputs(tmp_path))


def test_kernel_options_are_the_schema_section_without_enabled():
    from echoprep.options import option_names
    from echoprep.stages.nordic import KERNEL_OPTIONS

    assert KERNEL_OPTIONS == tuple(k for k in option_names("nordic") if k != "enabled")


def test_sidecar_records_the_options_with_a_value_and_the_seed(tmp_path):
    """As the rule passes them (every kernel option): null ones are not recorded."""
    from echoprep.options import section_defaults
    from echoprep.stages.nordic import KERNEL_OPTIONS

    mag, phase, _ = _series(tmp_path)
    given = {k: section_defaults("nordic")[k] for k in KERNEL_OPTIONS}
    run_nordic(mag, phase, _outputs(tmp_path), options=given, seed=2)
    params = json.loads((tmp_path / "out" / "bold.json").read_text())["Parameters"]
    assert params == {**{k: v for k, v in given.items() if v is not None}, "seed": 2}


def test_the_kernel_takes_every_option_and_denoise_arrays_fills_the_schema_defaults():
    """One source of defaults: the kernel has none for the nordic: options; the stage's
    denoise_arrays passes the schema defaults of those not given."""
    import inspect

    from echoprep.kernels.nordic import nordic
    from echoprep.options import section_defaults
    from echoprep.stages.nordic import KERNEL_OPTIONS, denoise_arrays

    params = inspect.signature(nordic).parameters
    assert all(params[k].default is inspect.Parameter.empty for k in KERNEL_OPTIONS)
    rng = np.random.default_rng(0)
    mag = 100 + rng.standard_normal((12, 12, 6, 12)).astype(np.float32)
    defaults = {k: section_defaults("nordic")[k] for k in KERNEL_OPTIONS}
    a = denoise_arrays(mag, None, seed=1, n_threads=1, chunk_patches=64)
    b = nordic(mag, None, seed=1, n_threads=1, **{**defaults, "chunk_patches": 64})
    np.testing.assert_array_equal(a.magnitude, b.magnitude)
    with pytest.raises(OptionsError, match=r"nordic\.chunk_patches"):
        denoise_arrays(mag, None, chunk_patches=0)


def _echo_series(tmp_path, n_echoes=3):
    """``n_echoes`` echoes of one run (each its own signal and noise): magnitude and phase."""
    files = []
    for e in range(1, n_echoes + 1):
        folder = tmp_path / f"in{e}"
        folder.mkdir(parents=True)
        mag, phase, _ = _series(folder, seed=10 + e)
        files.append((mag, phase))
    return files


def _one_run_cli(tmp_path, echoes, seed, more=()):
    """``echoprep nordic`` for every echo of a run at once: outputs below ``tmp_path``."""
    import argparse

    outs = [_outputs(tmp_path / f"e{e}") for e in range(1, len(echoes) + 1)]
    argv = ["--mag", *[str(m) for m, _ in echoes], "--phase", *[str(p) for _, p in echoes]]
    argv += ["--te", *[f"{0.011 * e:.3f}" for e in range(1, len(echoes) + 1)], "--tr", "1.9"]
    argv += ["--seed", str(seed), "--threads", "2", *more, "--out"]
    argv += [f"{k}={path}" for out in outs for k, path in out.items()]
    args = add_arguments(argparse.ArgumentParser()).parse_args(argv)
    return run_from_args(args), outs


def _sidecar(image):
    """A sidecar without the NORDIC timing (the one field that differs between runs)."""
    side = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
    side["NORDIC"].pop("Seconds")
    return side


def test_one_job_for_every_echo_writes_what_each_echo_alone_writes(tmp_path):
    """The workflow's NORDIC job takes every echo of a run (--mag/--phase/--te per echo,
    --out per echo) and denoises them one after another with the same seed: each echo's
    images (data, header) and sidecars equal those of denoising that echo alone, as the
    per-echo jobs did."""
    echoes = _echo_series(tmp_path / "in")
    status, together = _one_run_cli(tmp_path / "run", echoes, seed=4)
    assert status == 0
    for e, ((mag, phase), outs) in enumerate(zip(echoes, together, strict=True), start=1):
        alone = _outputs(tmp_path / f"alone{e}")
        run_nordic(
            mag, phase, alone, seed=4, n_threads=2, echo_time=float(f"{0.011 * e:.3f}"),
            repetition_time=1.9,
        )  # fmt: skip
        for key in ("bold", "gfactor", "removed"):
            a, b = nib.load(alone[key]), nib.load(outs[key])
            assert a.header.binaryblock == b.header.binaryblock, (e, key)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            assert _sidecar(alone[key]) == _sidecar(outs[key]), (e, key)
        assert _sidecar(outs["bold"])["EchoTime"] == float(f"{0.011 * e:.3f}")
        assert _sidecar(outs["bold"])["Sources"] == [str(mag), str(phase)]
    # each echo is its own series (the job did not write one echo's result for all)
    first, second = (nib.load(o["bold"]).get_fdata() for o in together[:2])
    assert not np.array_equal(first, second)


def test_the_command_line_refuses_echo_lists_that_do_not_pair(tmp_path):
    echoes = _echo_series(tmp_path / "in", n_echoes=2)
    with pytest.raises(SystemExit, match=r"--te expects one value per --mag \(2\); got 3"):
        _one_run_cli(tmp_path / "a", echoes, seed=0, more=("--te", "0.01", "0.02", "0.03"))
    import argparse

    argv = ["--mag", *[str(m) for m, _ in echoes], "--out", "bold=one.nii.gz"]
    args = add_arguments(argparse.ArgumentParser()).parse_args(argv)
    with pytest.raises(SystemExit, match=r"--out expects one bold=PATH per --mag \(2\); got 1"):
        run_from_args(args)
    assert not (tmp_path / "a").exists()

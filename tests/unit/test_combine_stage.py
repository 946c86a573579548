"""Echo handling stage: known T2* recovered by tedana t2smap, single echo copied, inputs checked."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from echoprep.stages.combine import StageInputError, run_optcom, write_single_echo

TES = [0.011, 0.02882, 0.04662]


def _write_echoes(tmp_path, t2s, s0=1000.0, n_t=30, noise=2.0, seed=0):
    """Mono-exponential echoes of a block 'brain' (zero background) with known T2* (s)."""
    rng = np.random.default_rng(seed)
    shape = t2s.shape
    files = []
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    for te in TES:
        sig = s0 * np.exp(-te / np.where(t2s > 0, t2s, 1.0))
        sig = np.where(t2s > 0, sig, 0.0)[..., None] * np.ones(n_t)
        data = np.abs(sig + noise * rng.standard_normal((*shape, n_t)))
        img = nib.Nifti1Image(data.astype(np.float32), affine)
        img.header.set_xyzt_units("mm", "sec")
        f = tmp_path / f"echo-{len(files) + 1}.nii.gz"
        nib.save(img, f)
        files.append(f)
    return files


@pytest.fixture
def t2s_truth():
    t2s = np.zeros((14, 14, 8))
    t2s[2:12, 2:12, 1:7] = np.linspace(0.02, 0.06, 10)[:, None, None]  # 20-60 ms along x
    return t2s


def test_optcom_recovers_known_t2star_and_combines(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth)
    out = {k: tmp_path / "out" / f"{k}.nii.gz" for k in ("bold", "t2star", "s0", "mask")}
    run_optcom(files, TES, out, work_dir=tmp_path / "work", repetition_time=1.9)
    t2s = nib.load(out["t2star"]).get_fdata()
    inner = np.zeros_like(t2s_truth, bool)
    inner[3:11, 3:11, 2:6] = True
    err_ms = np.abs(t2s[inner] - t2s_truth[inner]) * 1000
    assert np.median(err_ms) < 0.5, np.median(err_ms)
    combined = nib.load(out["bold"]).get_fdata()
    assert combined.shape == (14, 14, 8, 30)
    # T2*-weighted combination: weights TE·exp(-TE/T2*) normalised, with tedana's T2* map
    in_mask = inner & (nib.load(out["mask"]).get_fdata() > 0)
    assert in_mask.sum() >= 0.9 * inner.sum()
    echoes = np.stack([nib.load(f).get_fdata()[in_mask] for f in files])  # (echo, vox, t)
    tes = np.asarray(TES)[:, None]
    w = tes * np.exp(-tes / t2s[in_mask][None, :])
    expected = (w[..., None] * echoes).sum(0) / w.sum(0)[:, None]
    np.testing.assert_allclose(combined[in_mask], expected, rtol=1e-3)
    side = json.loads((tmp_path / "out" / "bold.json").read_text())
    assert side["Sources"] == [str(f) for f in files]
    assert side["RepetitionTime"] == 1.9 and side["EchoTime"] == TES
    assert side["Parameters"]["fittype"] == "loglin"
    assert "tedana 26.0.3" in side["SoftwareVersions"]
    assert side["SkullStripped"] is True
    assert json.loads((tmp_path / "out" / "t2star.json").read_text())["Units"] == "s"
    assert not list((tmp_path / "work").iterdir()), "tedana working folder left behind"


def test_single_echo_is_the_chosen_echo_unchanged(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=5)
    out = tmp_path / "single.nii.gz"
    write_single_echo(files, TES, {"bold": out}, options={"echo": 3}, repetition_time=1.9)
    np.testing.assert_array_equal(nib.load(out).get_fdata(), nib.load(files[2]).get_fdata())
    side = json.loads((tmp_path / "single.json").read_text())
    assert side["EchoTime"] == TES[2] and side["Parameters"] == {"echo": 3, "drop_volumes": 0}


def test_combined_series_keep_the_echoes_slice_timing_correction(tmp_path, t2s_truth):
    """Echoes corrected for slice timing (the spatial stage writes SliceTimingCorrected and
    StartTime) give combined series whose sidecars say so; a reader that finds neither takes
    each voxel as sampled at its slice's acquisition time (the planted design's shape fit read
    the corrected series that way, which put its curves late by the slices' timing)."""
    from echoprep.stages.comparison.planted_design import _series_timing

    files = _write_echoes(tmp_path, t2s_truth, n_t=6)
    timing = {"SliceTimingCorrected": True, "StartTime": 0.0, "RepetitionTime": 1.9}
    for f in files:
        (tmp_path / f.name.replace(".nii.gz", ".json")).write_text(json.dumps(timing))
    single = tmp_path / "single.nii.gz"
    write_single_echo(files, TES, {"bold": single}, repetition_time=1.9)
    out = {k: tmp_path / "out" / f"{k}.nii.gz" for k in ("bold", "t2star", "s0", "mask")}
    run_optcom(files, TES, out, work_dir=tmp_path / "work", repetition_time=1.9)
    for path in (single, out["bold"]):
        side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert side["SliceTimingCorrected"] is True and side["StartTime"] == 0.0
    assert "StartTime" not in json.loads((tmp_path / "out" / "t2star.json").read_text())
    ijk = np.array([[5, 5, z] for z in range(8)])
    slice_times = list(np.linspace(0.0, 1.7, 8))
    _, offsets = _series_timing(single, nib.load(single), slice_times, 2, ijk)
    np.testing.assert_array_equal(offsets, 0.0)
    # echoes never corrected: no timing fields, and the slices' own times
    plain = tmp_path / "plain"
    plain.mkdir()
    files = _write_echoes(plain, t2s_truth, n_t=6)
    write_single_echo(files, TES, {"bold": plain / "single.nii.gz"}, repetition_time=1.9)
    side = json.loads((plain / "single.json").read_text())
    assert "SliceTimingCorrected" not in side and "StartTime" not in side
    img = nib.load(plain / "single.nii.gz")
    _, offsets = _series_timing(plain / "single.nii.gz", img, slice_times, 2, ijk)
    np.testing.assert_allclose(offsets, slice_times)


def test_a_float32_echo_is_copied_as_the_slow_path_would_write_it(tmp_path, t2s_truth):
    """The resampling writes float32 echoes with units and unit scaling: the single echo is then
    a copy of the file (no decode, no encode) and equals what decoding and writing gives."""
    import gzip

    from echoprep.io.images import atomic_save, float_image

    files = _write_echoes(tmp_path, t2s_truth, n_t=5)
    src = nib.load(files[1])
    ours = tmp_path / "echo-2_bold.nii.gz"  # as the resampling step writes it
    atomic_save(float_image(src.get_fdata(dtype=np.float32), src), ours)
    fast = tmp_path / "fast_bold.nii.gz"
    write_single_echo([files[0], ours, files[2]], TES, {"bold": fast}, options={"echo": 2})
    assert fast.read_bytes() == ours.read_bytes()  # copied
    slow = tmp_path / "slow_bold.nii.gz"
    again = nib.load(ours)
    atomic_save(float_image(again.get_fdata(dtype=np.float32), again), slow)
    assert gzip.decompress(fast.read_bytes()) == gzip.decompress(slow.read_bytes())
    # an int16 echo with a scale factor is decoded and written as float32, same values
    scaled = nib.Nifti1Image(np.round(src.get_fdata() * 10).astype(np.int16), src.affine)
    scaled.header.set_slope_inter(0.1, 0.0)
    scaled.header.set_xyzt_units("mm", "sec")
    nib.save(scaled, tmp_path / "int16.nii.gz")
    other = tmp_path / "other_bold.nii.gz"
    write_single_echo(
        [files[0], tmp_path / "int16.nii.gz", files[2]], TES, {"bold": other}, options={"echo": 2}
    )
    back = nib.load(other)
    assert back.get_data_dtype() == np.float32
    np.testing.assert_allclose(back.get_fdata(), np.round(src.get_fdata() * 10) * 0.1, atol=1e-4)


def test_echo_out_of_range_is_explained(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=3)
    with pytest.raises(
        StageInputError, match=r"expected single_echo.echo between 1 and 3; found 4"
    ):
        write_single_echo(files, TES, {"bold": tmp_path / "x.nii.gz"}, options={"echo": 4})


def test_echo_times_in_ms_are_rejected_with_the_fix(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=3)
    with pytest.raises(
        StageInputError, match=r"echo times in seconds.*divide milliseconds by 1000"
    ):
        write_single_echo(files, [11.0, 28.82, 46.62], {"bold": tmp_path / "x.nii.gz"})


def test_echo_on_another_grid_names_both_files(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=3)
    img = nib.load(files[1])
    nib.save(nib.Nifti1Image(img.get_fdata(), np.diag([2.0, 3, 3, 1])), files[1])
    with pytest.raises(
        StageInputError,
        match=r"echo-2.nii.gz: expected a echo on the grid of .*echo-1.nii.gz .* "
        r"Fix: all echoes of a run must share one voxel grid",
    ):
        write_single_echo(files, TES, {"bold": tmp_path / "x.nii.gz"})


def test_unknown_options_and_values_the_schema_refuses(tmp_path, t2s_truth):
    from echoprep.options import OptionsError

    files = _write_echoes(tmp_path, t2s_truth, n_t=3)
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['echoes'\]"):
        write_single_echo(files, TES, {"bold": tmp_path / "x.nii.gz"}, options={"echoes": 1})
    with pytest.raises(OptionsError, match=r"optcom.fittype: 'linear' is not one of"):
        run_optcom(files, TES, {"bold": tmp_path / "x.nii.gz"}, options={"fittype": "linear"})


def test_mismatched_echo_shapes_name_the_file(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=3)
    bad = tmp_path / "echo-2.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((14, 14, 8, 4), np.float32), np.diag([3.0, 3, 3, 1])), bad)
    with pytest.raises(StageInputError, match=r"echo-2.nii.gz: expected the same shape as echo-1"):
        write_single_echo(files, TES, {"bold": tmp_path / "x.nii.gz"})


def test_a_3d_image_is_not_a_bold_series(tmp_path):
    f = tmp_path / "e1.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), f)
    with pytest.raises(
        StageInputError, match=r"expected a 4D BOLD series .* found shape \(4, 4, 4\)"
    ):
        write_single_echo([f], [0.028], {"bold": tmp_path / "x.nii.gz"}, options={"echo": 1})


def test_unreadable_file_is_named(tmp_path):
    f = tmp_path / "broken.nii.gz"
    f.write_bytes(b"not a nifti")
    with pytest.raises(StageInputError, match=r"broken.nii.gz: expected a readable NIfTI image"):
        write_single_echo([f], [0.028], {"bold": tmp_path / "x.nii.gz"}, options={"echo": 1})


def test_trailing_noise_volumes_are_dropped(tmp_path, t2s_truth):
    files = _write_echoes(tmp_path, t2s_truth, n_t=12)
    out = tmp_path / "single.nii.gz"
    write_single_echo(files, TES, {"bold": out}, options={"echo": 2}, drop_volumes=3)
    np.testing.assert_array_equal(
        nib.load(out).get_fdata(), nib.load(files[1]).get_fdata()[..., :9]
    )
    oc = {k: tmp_path / "oc" / f"{k}.nii.gz" for k in ("bold", "t2star", "s0", "mask")}
    run_optcom(files, TES, oc, work_dir=tmp_path / "work", drop_volumes=3)
    assert nib.load(oc["bold"]).shape[3] == 9
    with pytest.raises(StageInputError, match=r"more volumes than the 12 noise volumes"):
        write_single_echo(files, TES, {"bold": out}, options={"echo": 2}, drop_volumes=12)


def test_cli_options_come_from_the_options_json(monkeypatch, capsys):
    """The variant's whole config section arrives as --options-json (missing keys: schema
    defaults); --nordic marks NORDIC-denoised echoes; unknown keys and disallowed values are
    refused."""
    from echoprep.cli import build_parser
    from echoprep.options import OptionsError, section_defaults
    from echoprep.stages.combine import SECTIONS, TedanaOptions
    from echoprep.stages.combine import cli as combine_cli
    from echoprep.stages.combine.echoes import section_options

    calls = []
    monkeypatch.setattr(combine_cli, "run_tedana", lambda *a, **kw: calls.append((a, kw)))
    base = ["combine", "denoised", "--echo", "a", "b", "c", "--te", "1", "2", "3"]
    base += ["--out", "bold=x.nii.gz"]

    def run(*more):
        args = build_parser("combine").parse_args([*base, *more])
        assert args.func(args) == 0
        return calls.pop()

    given = {"tedpca": "kic", "maxit": 20, "masktype": ["dropout", "decay"]}
    (echoes, tes, outputs), kw = run("--options-json", json.dumps(given), "--tr", "1.9")
    opts = kw["options"]
    section, cls = SECTIONS["denoised"]
    assert isinstance(opts, TedanaOptions) and opts == section_options(cls, section, given)
    assert (opts.tedpca, opts.maxit, opts.masktype) == ("kic", 20, ("dropout", "decay"))
    # the keys not given take the schema defaults (a NORDIC-off run's JSON omits nordic_tedpca)
    defaults = section_defaults("tedana")
    assert opts.nordic_tedpca == defaults["nordic_tedpca"] and opts.tree == defaults["tree"]
    assert [str(e) for e in echoes] == ["a", "b", "c"] and list(tes) == [1.0, 2.0, 3.0]
    assert {k: str(v) for k, v in outputs.items()} == {"bold": "x.nii.gz"}
    assert kw["nordic"] is False and kw["raw_components"] is None
    assert kw["repetition_time"] == 1.9 and kw["drop_volumes"] == 0
    # no JSON: every option from the schema; NORDIC runs pass --nordic and the raw run's sidecar
    _, kw = run("--nordic", "--raw-components", "raw.json", "--drop-volumes", "3")
    assert kw["options"] == section_options(cls, section, {})
    assert kw["nordic"] is True and str(kw["raw_components"]) == "raw.json"
    assert kw["drop_volumes"] == 3
    # the legacy one-option flags are gone: the section travels only as --options-json
    legacy = {
        "--single-echo": "2",
        "--fittype": "curvefit",
        "--masktype": "decay",
        "--tedpca": "kic",
        "--nordic-tedpca": "same",
        "--tree": "minimal",
        "--ica-method": "robustica",
        "--n-robust-runs": "10",
        "--maxit": "20",
        "--maxrestart": "2",
    }
    for flag, value in legacy.items():
        with pytest.raises(SystemExit):
            build_parser("combine").parse_args([*base, flag, value])
        assert f"unrecognized arguments: {flag} {value}" in capsys.readouterr().err
    assert not calls
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['tedpcaa'\]"):
        run("--options-json", '{"tedpcaa": "aic"}')
    with pytest.raises(OptionsError, match=r"tedana.ica_method: 'pca' is not one of"):
        run("--options-json", '{"ica_method": "pca"}')
    # each variant takes only its own section: tedana keys are unknown to optcom
    optcom_section, optcom_cls = SECTIONS["optcom"]
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['tedpca'\]"):
        section_options(optcom_cls, optcom_section, {"tedpca": "aic"})

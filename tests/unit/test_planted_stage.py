"""The planting stage (``echoprep planted echoes|difference``) on small files with known
answers: the planted responses are where, when and as large as the design says, consistent
across echoes, of opposite sign in the two plantings, and the input dataset is untouched."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.adapters.tedana import denoise_frozen
from echoprep.io.images import StageInputError
from echoprep.kernels.glm.hrf import FINE_DT
from echoprep.kernels.planted import optcom_weights, response_curves
from echoprep.kernels.planted_shape import warped
from echoprep.stages.comparison.planting import (
    add_arguments,
    half_difference,
    plant_echoes,
    planted_difference,
    run_from_args,
)

TE = (0.011, 0.02882, 0.04662)
TR = 0.5
SHAPE = (5, 5, 3)
N_SIGNAL = 120  # volumes with responses (60 s)
N_NOISE = 2  # trailing noise volumes
FACTOR = 0.5
# planted response (% at TE_ref) of each design voxel to images "a" and "b"
VOXELS = np.array([[1, 1, 1], [2, 3, 0]])
PLANTED = np.array([[2.0, -1.0], [0.5, 3.0]])
ONSETS = {"a": 2.0, "b": 32.0, "c": 45.0}  # "c" has no planted response


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def run(tmp_path: Path) -> dict:
    """A raw three-echo run in a read-only-by-convention ``bids`` folder, a design and trials."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    bids = tmp_path / "bids" / "sub-01" / "ses-01" / "func"
    bids.mkdir(parents=True)
    mags = []
    for e in range(3):
        data = (800.0 / (e + 1) + rng.normal(0, 5, (*SHAPE, N_SIGNAL + N_NOISE))).astype(np.float32)
        path = bids / f"sub-01_ses-01_task-images_run-01_echo-{e + 1}_part-mag_bold.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), path)
        mags.append(path)
    design = tmp_path / "design.npz"
    np.savez(
        design,
        voxels=VOXELS,
        shape=np.array(SHAPE),
        affine=affine,
        images=np.array(["a", "b"]),
        planted=PLANTED,
        truth=PLANTED,
        hrf=np.array([0, 5]),
        factor=np.array(FACTOR),
        te_ref=np.array(TE[1]),
        stimdur=np.array(0.5),
        roi=np.array([True, True]),
        curves=response_curves(0.5)[1],
    )
    trials = tmp_path / "trials.tsv"
    rows = ["beta_index\tsession_label\trun_label\tlabel\tonset"]
    rows += [f"{i}\t01\t01\t{lab}\t{on}" for i, (lab, on) in enumerate(ONSETS.items())]
    rows += ["3\t01\t02\ta\t5.0"]  # another run's trial: not this run's
    trials.write_text("\n".join(rows) + "\n")
    return {"bids": tmp_path / "bids", "mags": mags, "design": design, "trials": trials}


def _plant(run: dict, out: Path, **kw) -> dict[str, list[Path]]:
    outputs = {s: [out / f"{s}{e}.nii" for e in range(3)] for s in ("plus", "minus", "diff")}
    written = plant_echoes(
        run["mags"],
        TE,
        TR,
        run["design"],
        run["trials"],
        "01",
        {"+": outputs["plus"], "-": outputs["minus"], "diff": outputs["diff"]},
        noise_volumes=N_NOISE,
        **kw,
    )
    return written


def test_planted_echoes_carry_the_design_and_leave_the_input_untouched(run, tmp_path):
    before = _digest(run["bids"])
    written = _plant(run, tmp_path / "work")
    assert _digest(run["bids"]) == before  # nothing written into the input dataset
    orig = [np.asarray(nib.load(p).dataobj, np.float64) for p in run["mags"]]
    plus = [np.asarray(nib.load(p).dataobj, np.float64) for p in written["+"]]
    minus = [np.asarray(nib.load(p).dataobj, np.float64) for p in written["-"]]
    inside = np.zeros(SHAPE, bool)
    inside[tuple(VOXELS.T)] = True
    for e in range(3):
        # voxels without a planted response and the noise volumes are copied as they are
        np.testing.assert_array_equal(plus[e][~inside], orig[e][~inside])
        np.testing.assert_array_equal(plus[e][..., N_SIGNAL:], orig[e][..., N_SIGNAL:])
    # % signal change at the reference echo: each trial's response peaks at the design's
    # amplitude times the factor, at the trial's time (peak-1 response curves)
    pct = [100 * np.log(plus[e] / orig[e])[tuple(VOXELS.T)] for e in range(3)]  # (V, T)
    t = np.arange(N_SIGNAL + N_NOISE) * TR
    for v in range(2):
        for i, image in enumerate(("a", "b")):
            window = (t >= ONSETS[image]) & (t < ONSETS[image] + 25)
            seg = pct[1][v, window]
            peak = seg[np.argmax(np.abs(seg))]
            assert peak == pytest.approx(FACTOR * PLANTED[v, i], rel=0.03), (v, image)
            assert 3 <= t[window][np.argmax(np.abs(seg))] - ONSETS[image] <= 9  # a BOLD delay
        # nothing before the first trial; "c" (no planted response) adds none
        assert np.all(pct[1][v, t < ONSETS["a"]] == 0)
    # one R2* change: the log signal change scales with the echo time
    big = np.abs(pct[1]) > 0.05
    for e in (0, 2):
        np.testing.assert_allclose(pct[e][big] / pct[1][big], TE[e] / TE[1], rtol=1e-3)
        # the two plantings are of opposite sign
        lp = np.log(plus[e] / orig[e])[tuple(VOXELS.T)]
        lm = np.log(minus[e] / orig[e])[tuple(VOXELS.T)]
        np.testing.assert_allclose(lm[big], -lp[big], rtol=1e-3, atol=1e-6)


def test_slice_times_along_another_axis_time_each_voxels_planted_response(run, tmp_path):
    """``slice_axis=1`` (SliceEncodingDirection j): a voxel samples its planted response at
    its slice's time along the second axis. Slice 1 at 0 s plants as without slice times,
    slice 3 at 0.4 s does not; along the third axis (3 slices) the 5 times are refused."""
    times = [0.0, 0.0, 0.0, 0.4, 0.0]
    plain = _plant(run, tmp_path / "plain")
    along_j = _plant(run, tmp_path / "j", slice_timing=times, slice_axis=1)
    a, b = (np.asarray(nib.load(w["diff"][1]).dataobj, np.float64) for w in (plain, along_j))
    (i0, j0, k0), (i1, j1, k1) = VOXELS  # j = 1 and j = 3
    np.testing.assert_allclose(b[i0, j0, k0], a[i0, j0, k0], rtol=1e-6, atol=1e-6)
    assert np.abs(b[i1, j1, k1] - a[i1, j1, k1]).max() > 0.05 * np.abs(a[i1, j1, k1]).max()
    with pytest.raises(StageInputError, match="SliceTiming has 5 entries; the series has 3"):
        _plant(run, tmp_path / "k", slice_timing=times)


def test_half_the_difference_gives_back_what_was_planted(run, tmp_path):
    written = _plant(run, tmp_path / "work")
    orig = np.asarray(nib.load(run["mags"][1]).dataobj, np.float64)
    # the half difference written by `planted echoes` and by `planted half` agree
    halves = half_difference(written["+"], written["-"], [tmp_path / f"h{e}.nii" for e in range(3)])
    for direct, half in zip(written["diff"], halves, strict=True):
        np.testing.assert_allclose(
            np.asarray(nib.load(half).dataobj), np.asarray(nib.load(direct).dataobj), atol=1e-3
        )
    out = planted_difference(
        "raw-single",
        written["diff"],
        tmp_path / "single.nii.gz",
        echo_times=TE,
        single_echo=2,
        drop_volumes=N_NOISE,
        factor=FACTOR,
    )
    diff = np.asarray(nib.load(out).dataobj, np.float64)
    assert diff.shape == (*SHAPE, N_SIGNAL)  # the noise volumes left out, as the chain does
    v = tuple(VOXELS[0])
    # half the difference of M e^{+x} and M e^{-x} is M sinh(x) ~ M x for small x
    pct = 100 * diff[v] / orig[v][:N_SIGNAL]
    assert np.max(pct) == pytest.approx(FACTOR * PLANTED[0, 0], rel=0.03)
    sidecar = json.loads(Path(str(out).replace(".nii.gz", ".json")).read_text())
    assert sidecar["PlantingFactor"] == FACTOR
    with pytest.raises(StageInputError, match="needs the run's --t2star --good-echoes"):
        planted_difference("raw-optcom", written["diff"], tmp_path / "o.nii.gz", echo_times=TE)


def test_one_command_writes_a_sides_three_variants_as_the_frozen_chains_give_them(run, tmp_path):
    """``planted difference --side raw --out single=.. optcom=.. denoised=..``: the single
    echo's series, the echoes weighted by the run's frozen T2* weights, and that combination
    less what the run's rejected ICA components explain of it (tedana's own denoise_ts), each
    the same as the variant written alone; a side whose optimal combination lacks its maps is
    refused naming them."""
    import argparse

    written = _plant(run, tmp_path / "work")
    rng = np.random.default_rng(1)
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    t2 = rng.uniform(0.02, 0.06, SHAPE)
    good = np.full(SHAPE, 3, np.int16)
    good[0, 0, 0], good[4, 4, 2], good[0, 4, 1] = 2, 0, 1
    nib.save(nib.Nifti1Image(t2, affine), tmp_path / "t2.nii.gz")
    nib.save(nib.Nifti1Image(good, affine), tmp_path / "good.nii.gz")
    mixing = rng.normal(size=(N_SIGNAL, 3))
    names = ["ICA_00", "ICA_01", "ICA_02"]
    (tmp_path / "mix.tsv").write_text(
        "\t".join(names) + "\n" + "\n".join("\t".join(f"{v:.9g}" for v in r) for r in mixing)
    )
    (tmp_path / "metrics.tsv").write_text(
        "Component\tclassification\nICA_00\taccepted\nICA_01\trejected\nICA_02\taccepted\n"
    )
    frozen = {
        "t2star": tmp_path / "t2.nii.gz",
        "good_echoes": tmp_path / "good.nii.gz",
        "mixing": tmp_path / "mix.tsv",
        "metrics": tmp_path / "metrics.tsv",
    }
    outs = {c: tmp_path / f"all-{c}.nii.gz" for c in ("single", "optcom", "denoised")}
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["difference", "--side", "raw", "--echoes", *map(str, written["diff"])]
        + ["--te", *map(str, TE), "--drop-volumes", str(N_NOISE)]
        + [f"--{k.replace('_', '-')}={v}" for k, v in frozen.items()]
        + ["--out", *[f"{c}={p}" for c, p in outs.items()]]
    )
    assert run_from_args(args) == 0
    echoes = [np.asarray(nib.load(p).dataobj, np.float64)[..., :N_SIGNAL] for p in written["diff"]]
    got = {c: np.asarray(nib.load(p).dataobj, np.float64) for c, p in outs.items()}
    np.testing.assert_allclose(got["single"], echoes[1], rtol=1e-6)
    w = optcom_weights(t2.ravel(), good.ravel(), TE)
    flat = np.stack([e.reshape(-1, N_SIGNAL) for e in echoes], axis=2)
    optcom = np.einsum("vte,ve->vt", flat, w)
    assert np.all(optcom[good.ravel() == 0] == 0) and np.abs(optcom).max() > 0
    np.testing.assert_allclose(got["optcom"].reshape(-1, N_SIGNAL), optcom, rtol=1e-5, atol=1e-6)
    denoised = denoise_frozen(
        optcom, mixing, ["accepted", "rejected", "accepted"], good.ravel() > 0
    )
    np.testing.assert_allclose(
        got["denoised"].reshape(-1, N_SIGNAL), denoised, rtol=1e-4, atol=1e-5
    )
    # the rejected component took something out (the denoised series is not the optcom's)
    assert np.abs(got["denoised"] - got["optcom"]).max() > 0.01 * np.abs(got["optcom"]).max()
    for c, path in outs.items():
        alone = planted_difference(
            f"raw-{c}",
            written["diff"],
            tmp_path / f"alone-{c}.nii.gz",
            echo_times=TE,
            drop_volumes=N_NOISE,
            **frozen,
        )
        np.testing.assert_array_equal(np.asarray(nib.load(alone).dataobj), got[c])
        sidecar = json.loads(Path(str(path).replace(".nii.gz", ".json")).read_text())
        assert f"the raw-{c} series" in sidecar["Description"]
    with pytest.raises(StageInputError, match="needs the run's --mixing --metrics"):
        planted_difference(
            "nordic-denoised",
            written["diff"],
            tmp_path / "x.nii.gz",
            echo_times=TE,
            t2star=frozen["t2star"],
            good_echoes=frozen["good_echoes"],
        )


def test_a_run_on_another_grid_or_without_trials_is_named(run, tmp_path):
    img = nib.load(run["mags"][0])
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([2.0, 2.0, 2.0, 1.0])), moved)
    with pytest.raises(StageInputError, match="not the planted design's functional grid"):
        _plant({**run, "mags": [moved, *run["mags"][1:]]}, tmp_path / "w1")
    with pytest.raises(StageInputError, match="expected trials of run 07; found none"):
        plant_echoes(
            run["mags"],
            TE,
            TR,
            run["design"],
            run["trials"],
            "07",
            {"+": [tmp_path / "p.nii"] * 3},
        )


def _design_inputs(tmp_path: Path, n_images: int, repeats: int = 2) -> dict:
    """Type-B betas of n_images images shown ``repeats`` times (and one shown once), their
    trials (8 per run), two fits' HRF maps and masks, an analysis mask and an ROI on a 5 x 5 x
    3 grid."""
    rng = np.random.default_rng(1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    labels = [f"img{i:02d}" for i in range(n_images)] * repeats + ["once"]
    betas = rng.normal(0, 1, (*SHAPE, len(labels))).astype(np.float32)
    paths = {"reference": tmp_path / "betas.nii.gz", "trials": tmp_path / "trials.tsv"}
    nib.save(nib.Nifti1Image(betas, affine), paths["reference"])
    rows = ["beta_index\tsession_label\trun_label\tlabel"]
    rows += [f"{i}\t01\t{1 + i // 8:02d}\t{lab}" for i, lab in enumerate(labels)]
    paths["trials"].write_text("\n".join(rows) + "\n")
    for name, value in (("hrf0", 3), ("hrf1", 5), ("hrf2", 4)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.full(SHAPE, value, np.int16), affine), paths[name])
    full = np.ones(SHAPE, np.uint8)
    part = full.copy()
    part[0] = 0  # one fit lacks the first slab: no planted response there
    for name, data in (("mask0", full), ("mask1", part), ("mask2", full), ("brain", full)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    roi = np.zeros(SHAPE, np.uint8)
    roi[2:4, 2:4] = 1
    paths["roi"] = tmp_path / "roi.nii.gz"
    nib.save(nib.Nifti1Image(roi, affine), paths["roi"])
    return {"paths": paths, "betas": betas, "labels": labels}


def test_the_design_plants_each_images_odd_presentations_scored_against_its_even_ones(tmp_path):
    from echoprep.stages.comparison.planted_design import make_design, read_design

    inputs = _design_inputs(tmp_path, 12)
    p = inputs["paths"]
    before = _digest(tmp_path)
    design = make_design(
        p["reference"],
        p["trials"],
        [p["hrf0"], p["hrf1"], p["hrf2"]],
        [p["mask0"], p["mask1"], p["mask2"]],
        p["brain"],
        p["roi"],
        tmp_path / "design.npz",
        te_ref=0.03,
        stimdur=2.5,
        shape="library",
    )
    after = _digest(tmp_path)
    assert all(after[k] == v for k, v in before.items())  # inputs untouched
    d = read_design(tmp_path / "design.npz")
    assert d["images"].tolist() == [f"img{i:02d}" for i in range(12)]  # "once" is left out
    voxels = d["voxels"]
    assert len(voxels) == 4 * 5 * 3 and voxels[:, 0].min() == 1  # every fit's voxels only
    betas = inputs["betas"][tuple(voxels.T)].astype(np.float64)  # (V, N)
    runs = np.arange(betas.shape[1]) // 8  # the trials table's runs
    for r in np.unique(runs):  # each run's mean removed
        betas[:, runs == r] -= betas[:, runs == r].mean(axis=1, keepdims=True)
    a, b = betas[:, :12], betas[:, 12:24]  # the first and the second presentation
    np.testing.assert_allclose(d["planted"], a - a.mean(axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(d["truth"], b - b.mean(axis=1, keepdims=True), atol=1e-5)
    assert np.all(d["hrf"] == 4)  # the median of the fits' HRF choices
    np.testing.assert_allclose(d["curves"], response_curves(2.5)[1], atol=1e-6)
    assert 0.1 <= float(d["factor"]) <= 1.0 and design["factor"] == d["factor"]
    assert d["roi"].sum() == 2 * 2 * 3


def test_a_runs_offset_in_the_reference_betas_does_not_enter_the_design(tmp_path):
    """Drift the fit left in a run's betas is not an image's response: offsets per run and
    voxel added to the reference betas leave the planted responses and their truth as they
    were."""
    from echoprep.stages.comparison.planted_design import make_design, read_design

    p = _design_inputs(tmp_path, 12)["paths"]
    kwargs = {"te_ref": 0.03, "stimdur": 2.5, "shape": "library", "amplitude": 0.5}
    fits = ([p["hrf0"]], [p["mask0"]], p["brain"], p["roi"])
    make_design(p["reference"], p["trials"], *fits, tmp_path / "plain.npz", **kwargs)
    img = nib.load(p["reference"])
    betas = np.asarray(img.dataobj, np.float64)
    runs = np.arange(betas.shape[3]) // 8
    offsets = np.random.default_rng(3).normal(0, 5.0, (*betas.shape[:3], runs.max() + 1))
    shifted = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image((betas + offsets[..., runs]).astype(np.float32), img.affine), shifted)
    make_design(shifted, p["trials"], *fits, tmp_path / "shifted.npz", **kwargs)
    plain, moved = read_design(tmp_path / "plain.npz"), read_design(tmp_path / "shifted.npz")
    for key in ("planted", "truth"):
        np.testing.assert_allclose(moved[key], plain[key], atol=1e-4)


def test_voxels_whose_betas_are_no_bold_response_are_left_out_of_the_planting(tmp_path, caplog):
    """A trial beta of 4.8e10 % (a trial at a stopped run's last volume, a run whose baseline
    is near 0 in the voxel) made the planted echoes overflow: such voxels are left out of the
    design, with a warning and a count in the sidecar, and every other voxel is planted as
    before. The same for a voxel whose mean in the other session is beyond the bound."""
    from echoprep.stages.comparison.planted_design import make_design, read_design

    inputs = _design_inputs(tmp_path, 12)
    p = inputs["paths"]
    fits = ([p["hrf0"]], [p["mask0"]], p["brain"], p["roi"])
    make_design(p["reference"], p["trials"], *fits, tmp_path / "plain.npz", **DESIGN_KW)
    img = nib.load(p["reference"])
    betas = np.asarray(img.dataobj, np.float32)
    betas[2, 2, 1, 5] = 4.8e10  # an ROI voxel, one trial
    betas[4, 0, 0, 20] = -150.0  # beyond the bound, in a half-B presentation
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(betas, img.affine), bad)
    with caplog.at_level("WARNING"):
        make_design(bad, p["trials"], *fits, tmp_path / "bad.npz", **DESIGN_KW)
    assert "bad.nii.gz: 2 of 75 voxels have an image mean beyond 100 % signal change" in (
        caplog.text
    )
    plain, got = read_design(tmp_path / "plain.npz"), read_design(tmp_path / "bad.npz")
    gone = {(2, 2, 1), (4, 0, 0)}
    assert {tuple(v) for v in got["voxels"]} == {tuple(v) for v in plain["voxels"]} - gone
    kept = np.array([tuple(v) not in gone for v in plain["voxels"]])
    for key in ("planted", "truth", "hrf", "roi"):
        np.testing.assert_allclose(got[key], plain[key][kept], atol=1e-5)
    assert json.loads((tmp_path / "bad.json").read_text())["VoxelsBeyondResponseBound"] == 2
    assert np.abs(got["planted"]).max() <= 100 and np.abs(got["truth"]).max() <= 100
    # a voxel whose mean over the other session is beyond the bound
    shared = [f"img{i:02d}" for i in range(10)]
    other = _other_session(tmp_path, shared)
    oimg = nib.load(other["betas"])
    odata = np.asarray(oimg.dataobj, np.float32)
    odata[3, 3, 2, :] += 500.0 * (np.arange(odata.shape[3]) % 2)  # alternate trials: +500 %
    nib.save(nib.Nifti1Image(odata, oimg.affine), other["betas"])
    args = (p["reference"], p["trials"], *fits)
    with caplog.at_level("WARNING"):
        d = _design_from(args, tmp_path / "other.npz", other)
    assert str(d["source"]) == "other_sessions"
    assert (3, 3, 2) not in {tuple(v) for v in d["voxels"]}
    assert "1 voxels have a mean over the other sessions beyond 100 % signal change" in caplog.text
    side = json.loads((tmp_path / "other.json").read_text())["ResponseSource"]
    assert side["VoxelsBeyondResponseBoundElsewhere"] == 1


def test_a_session_without_enough_repeats_plants_nothing_and_does_not_fail(tmp_path, caplog):
    from echoprep.stages.comparison.planted_design import make_design, read_design

    p = _design_inputs(tmp_path, 3)["paths"]
    with caplog.at_level("WARNING"):
        make_design(
            p["reference"],
            p["trials"],
            [p["hrf0"]],
            [p["mask0"]],
            p["brain"],
            p["roi"],
            tmp_path / "design.npz",
            te_ref=0.03,
            stimdur=2.5,
        )  # the shape is not estimated: nothing is planted
    assert "3 images shown twice or more (at least 10 are needed" in caplog.text
    d = read_design(tmp_path / "design.npz")
    assert d["images"].size == 0 and d["planted"].shape[1] == 0 and float(d["factor"]) == 0


def test_the_design_plants_the_response_shape_of_the_sessions_own_series(tmp_path, caplog):
    """Series whose voxels respond with a curve that is not the library's (library curve 10,
    1 s later and 25 % wider): the design's curve for index 10 is that shape, the reference
    betas giving each trial's amplitude from the image's other presentation."""
    from echoprep.stages.comparison.planted_design import make_design, read_design

    rng = np.random.default_rng(3)
    shape, tr, n_vol, stimdur = (10, 10, 3), 1.9, 160, 2.5
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    _, library = response_curves(stimdur)
    true = warped(library[:, 10], 1.0, 1.25, library.shape[0], FINE_DT)
    true /= true.max()
    n_vox, n_img = int(np.prod(shape)), 40
    resp = rng.normal(size=(n_vox, n_img))
    rows = ["beta_index\trun_label\tlabel\tonset"]
    betas, series, labels = [], [], []
    for run in range(2):
        onsets = np.arange(n_img) * 7.0 + 4.0 + rng.uniform(0, 1, n_img)
        images = rng.permutation(n_img)
        lags = np.arange(n_vol)[:, None] * tr - onsets[None, :]
        design = np.interp(lags, np.arange(true.size) * FINE_DT, true, left=0, right=0)
        y = 100 + resp[:, images] @ design.T + rng.normal(0, 0.5, (n_vox, n_vol))
        path = tmp_path / f"run-{run + 1:02d}_bold.nii.gz"
        nib.save(nib.Nifti1Image(y.reshape(*shape, n_vol).astype(np.float32), affine), path)
        side = {"RepetitionTime": tr, "SliceTimingCorrected": True, "StartTime": 0.0}
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(side))
        series.append(path)
        for i, img in enumerate(images):
            rows.append(f"{len(labels)}\t{run + 1:02d}\timg{img:02d}\t{onsets[i]:.3f}")
            labels.append(img)
            betas.append(resp[:, img] + rng.normal(0, 0.5, n_vox))
    paths = {"reference": tmp_path / "betas.nii.gz", "trials": tmp_path / "trials.tsv"}
    nib.save(nib.Nifti1Image(np.stack(betas, 1).reshape(*shape, -1), affine), paths["reference"])
    paths["trials"].write_text("\n".join(rows) + "\n")
    for name, data in (("hrf", np.full(shape, 10, np.int16)), ("mask", np.ones(shape, np.uint8))):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    args = (paths["reference"], paths["trials"], [paths["hrf"]], [paths["mask"]])
    args += (paths["mask"], paths["mask"], tmp_path / "design.npz")
    before = _digest(tmp_path)
    make_design(*args, te_ref=0.03, stimdur=stimdur, series=series, run_labels=["01", "02"])
    assert all(_digest(tmp_path)[k] == v for k, v in before.items())  # inputs untouched
    d = read_design(tmp_path / "design.npz")
    est = d["curves"][: true.size, 10]
    assert np.corrcoef(est, true)[0, 1] > 0.99
    assert np.corrcoef(library[:, 10], true[: library.shape[0]])[0, 1] < 0.95
    record = json.loads((tmp_path / "design.json").read_text())["ResponseShape"]
    assert record["Shape"] == "estimated" and record["Fit"]["Estimated"]
    assert record["Fit"]["Voxels"] == int(np.prod(shape))
    # every voxel's planted time course is the session's curve, whatever its library HRF
    np.testing.assert_array_equal(d["curves"][:, 3], d["curves"][:, 10])
    assert [str(p) for p in series] == [
        s for s in json.loads((tmp_path / "design.json").read_text())["Sources"] if "run-" in s
    ]
    with pytest.raises(StageInputError, match=r"expected trials of run 03 in the trials table"):
        make_design(*args, te_ref=0.03, stimdur=stimdur, series=series, run_labels=["01", "03"])
    with pytest.raises(StageInputError, match=r"set comparison\.planted\.shape: library"):
        make_design(*args, te_ref=0.03, stimdur=stimdur)
    # series whose responses are upside down: no curve is estimated, the library's is planted
    flipped = []
    for path in series:
        img = nib.load(path)
        out = path.with_name("flipped_" + path.name)
        nib.save(nib.Nifti1Image(200.0 - img.get_fdata(dtype=np.float32), affine), out)
        side = path.with_name(path.name.replace(".nii.gz", ".json"))
        out.with_name(out.name.replace(".nii.gz", ".json")).write_text(side.read_text())
        flipped.append(out)
    with caplog.at_level(logging.WARNING):
        make_design(*args, te_ref=0.03, stimdur=stimdur, series=flipped, run_labels=["01", "02"])
    assert "planted response shape: not estimated (" in caplog.text
    record = json.loads((tmp_path / "design.json").read_text())["ResponseShape"]
    assert record["Shape"] == "library" and not record["Fit"]["Estimated"]
    assert record["Fit"]["Reason"] in caplog.text  # e.g. a peak outside 1-15 s
    np.testing.assert_allclose(read_design(tmp_path / "design.npz")["curves"], library, atol=1e-6)


def _other_session(tmp_path: Path, images: list[str], affine: np.ndarray | None = None) -> dict:
    """Another session's type-B betas: each of ``images`` shown three times in three runs (in
    another order), with an offset per run and voxel, plus an image this session never
    shows."""
    rng = np.random.default_rng(5)
    labels = [*images, "elsewhere"] * 3
    order = rng.permutation(len(labels))
    labels = [labels[i] for i in order]
    runs = np.arange(len(labels)) * 3 // len(labels)
    betas = rng.normal(0, 1, (*SHAPE, len(labels)))
    offsets = rng.normal(0, 4.0, (*SHAPE, 3))
    path = tmp_path / "other_betas.nii.gz"
    img = (betas + offsets[..., runs]).astype(np.float32)
    nib.save(
        nib.Nifti1Image(img, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), path
    )
    trials = tmp_path / "other_trials.tsv"
    rows = ["beta_index\tsession_label\trun_label\tlabel"]
    pairs = enumerate(zip(runs, labels, strict=True))
    rows += [f"{i}\t02\t{1 + r:02d}\t{lab}" for i, (r, lab) in pairs]
    trials.write_text("\n".join(rows) + "\n")
    return {"betas": path, "trials": trials, "data": betas, "labels": labels}


DESIGN_KW = {"te_ref": 0.03, "stimdur": 2.5, "shape": "library", "amplitude": 0.5}


def _design_from(args: tuple, out: Path, other: dict, **kw) -> dict:
    """make_design with ``other`` as the other session's betas and trials; the design read
    back."""
    from echoprep.stages.comparison.planted_design import make_design, read_design

    make_design(
        *args,
        out,
        source_betas=[other["betas"]],
        source_trials=[other["trials"]],
        **DESIGN_KW,
        **kw,
    )
    return read_design(out)


def test_the_design_plants_each_images_mean_in_the_other_sessions_where_they_show_it(
    tmp_path, capsys
):
    """comparison.planted.source other_sessions: the images the other session shows get its
    mean of their presentations (each run's mean removed), the rest are not planted, the truth
    is still this session's even-numbered presentations, and NORDIC's map is the tangent one."""
    from echoprep.stages.comparison import planting

    inputs = _design_inputs(tmp_path, 12)
    p = inputs["paths"]
    shared = [f"img{i:02d}" for i in range(10)]  # img10 and img11 only here
    other = _other_session(tmp_path, shared)
    args = (p["reference"], p["trials"], [p["hrf0"]], [p["mask0"]], p["brain"], p["roi"])
    d = _design_from(args, tmp_path / "design.npz", other)
    assert str(d["source"]) == "other_sessions"
    assert d["images"].tolist() == shared
    voxels = d["voxels"]
    data = other["data"][tuple(voxels.T)]  # (V, N): without the runs' offsets
    labels = np.asarray(other["labels"])
    means = np.stack([data[:, labels == i].mean(axis=1) for i in shared], axis=1)
    # the expected means are those of the run-centred betas (the offsets go with each run's
    # mean, which also holds each run's share of the images), centred over the images
    img = np.asarray(nib.load(other["betas"]).dataobj, np.float64)[tuple(voxels.T)]
    runs = np.arange(len(labels)) * 3 // len(labels)
    for r in range(3):
        img[:, runs == r] -= img[:, runs == r].mean(axis=1, keepdims=True)
    expected = np.stack([img[:, labels == i].mean(axis=1) for i in shared], axis=1)
    expected -= expected.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(d["planted"], expected, atol=1e-5)
    assert np.corrcoef(d["planted"].ravel(), means.ravel())[0, 1] > 0.8  # the images' own
    # the truth: this session's second presentations of the shared images, centred over them
    betas = inputs["betas"][tuple(voxels.T)].astype(np.float64)
    own_runs = np.arange(betas.shape[1]) // 8
    for r in np.unique(own_runs):
        betas[:, own_runs == r] -= betas[:, own_runs == r].mean(axis=1, keepdims=True)
    b = betas[:, 12:22]
    np.testing.assert_allclose(d["truth"], b - b.mean(axis=1, keepdims=True), atol=1e-5)
    side = json.loads((tmp_path / "design.json").read_text())
    assert side["ResponseSource"]["Images"] == 10
    assert side["ResponseSource"]["ImagesNotShownElsewhere"] == 2
    assert side["CompanionMap"] == "tangent"
    parser = planting.add_arguments(__import__("argparse").ArgumentParser())
    planting.run_from_args(parser.parse_args(["map", "--design", str(tmp_path / "design.npz")]))
    assert capsys.readouterr().out.strip() == "tangent"
    # source: session keeps half A (and the frozen map), whatever other sessions there are
    own = _design_from(args, tmp_path / "own.npz", other, source="session")
    assert str(own["source"]) == "session" and own["images"].size == 12
    planting.run_from_args(parser.parse_args(["map", "--design", str(tmp_path / "own.npz")]))
    assert capsys.readouterr().out.strip() == "frozen"


def test_source_other_runs_plants_third_presentations_from_another_run(tmp_path, capsys):
    """comparison.planted.source other_runs: each image shown three times is planted with its
    third presentation, which lies in another run than its first (no decision of the first's
    run saw its noise), scored against its second; NORDIC's map is the tangent one. source:
    session, and other_sessions without other sessions, keep half A."""
    from echoprep.stages.comparison import planting
    from echoprep.stages.comparison.planted_design import make_design, read_design

    inputs = _design_inputs(tmp_path, 12, repeats=3)  # trials 0-11, 12-23, 24-35: runs 1-5
    p = inputs["paths"]
    args = (p["reference"], p["trials"], [p["hrf0"]], [p["mask0"]], p["brain"], p["roi"])
    parser = planting.add_arguments(__import__("argparse").ArgumentParser())
    out = tmp_path / "other_runs.npz"
    make_design(*args, out, source="other_runs", **DESIGN_KW)
    d = read_design(out)
    assert str(d["source"]) == "other_runs" and d["images"].size == 12
    betas = inputs["betas"][tuple(d["voxels"].T)].astype(np.float64)
    runs = np.arange(betas.shape[1]) // 8
    for r in np.unique(runs):
        betas[:, runs == r] -= betas[:, runs == r].mean(axis=1, keepdims=True)
    third, second = betas[:, 24:36], betas[:, 12:24]
    np.testing.assert_allclose(d["planted"], third - third.mean(axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(d["truth"], second - second.mean(axis=1, keepdims=True), atol=1e-5)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["ResponseSource"]["Source"] == "other_runs"
    assert side["ResponseSource"]["Presentations"] == 12
    assert side["CompanionMap"] == "tangent"
    planting.run_from_args(parser.parse_args(["map", "--design", str(out)]))
    assert capsys.readouterr().out.strip() == "tangent"
    make_design(*args, tmp_path / "alone.npz", source="other_sessions", **DESIGN_KW)
    assert str(read_design(tmp_path / "alone.npz")["source"]) == "session"
    make_design(*args, tmp_path / "own.npz", source="session", **DESIGN_KW)
    own = read_design(tmp_path / "own.npz")
    assert str(own["source"]) == "session"
    betas = inputs["betas"][tuple(own["voxels"].T)].astype(np.float64)
    runs = np.arange(betas.shape[1]) // 8
    for r in np.unique(runs):
        betas[:, runs == r] -= betas[:, runs == r].mean(axis=1, keepdims=True)
    half_a = (betas[:, :12] + betas[:, 24:36]) / 2
    np.testing.assert_allclose(own["planted"], half_a - half_a.mean(1, keepdims=True), atol=1e-5)


def test_other_sessions_that_cannot_give_the_responses_leave_half_a_with_a_warning(
    tmp_path, caplog
):
    """Too few shared images, or a session on another grid (or, with source other_runs, no
    image shown a third time): half A is planted (legal data, the job does not fail), and the
    log says why."""
    from echoprep.stages.comparison.planted_design import make_design, read_design

    p = _design_inputs(tmp_path, 12)["paths"]
    args = (p["reference"], p["trials"], [p["hrf0"]], [p["mask0"]], p["brain"], p["roi"])
    few = _other_session(tmp_path, ["img00", "img01", "img02"])
    with caplog.at_level("WARNING"):
        d = _design_from(args, tmp_path / "few.npz", few)
    assert "other comparison sessions show 3 of this session's 12 repeated images" in caplog.text
    assert str(d["source"]) == "session" and d["images"].size == 12
    caplog.clear()
    moved = _other_session(
        tmp_path, [f"img{i:02d}" for i in range(12)], affine=np.diag([2.0, 2.0, 2.5, 1.0])
    )
    with caplog.at_level("WARNING"):
        d = _design_from(args, tmp_path / "grid.npz", moved)
    assert "Not used as a source of planted responses" in caplog.text
    assert str(d["source"]) == "session"
    with pytest.raises(StageInputError, match="one trials table per source session"):
        make_design(*args, tmp_path / "x.npz", source_betas=[moved["betas"]], **DESIGN_KW)
    with pytest.raises(StageInputError, match=r"comparison\.planted\.source: expected one of"):
        make_design(*args, tmp_path / "x.npz", source="nearby", **DESIGN_KW)
    caplog.clear()
    with caplog.at_level("WARNING"):  # no image is shown a third time: half A
        make_design(*args, tmp_path / "runs.npz", source="other_runs", **DESIGN_KW)
    assert "0 of the session's 12 repeated images are shown a third time" in caplog.text
    assert str(read_design(tmp_path / "runs.npz")["source"]) == "session"

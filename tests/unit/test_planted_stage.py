"""The planting stage (``echoprep planted echoes|difference``) on small files with known
answers: the planted responses are where, when and as large as the design says, consistent
across echoes, of opposite sign in the two plantings, and the input dataset is untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.images import StageInputError
from echoprep.stages.comparison.planting import plant_echoes, planted_difference

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
    )
    trials = tmp_path / "trials.tsv"
    rows = ["beta_index\tsession_label\trun_label\tlabel\tonset"]
    rows += [f"{i}\t01\t01\t{lab}\t{on}" for i, (lab, on) in enumerate(ONSETS.items())]
    rows += ["3\t01\t02\ta\t5.0"]  # another run's trial: not this run's
    trials.write_text("\n".join(rows) + "\n")
    return {"bids": tmp_path / "bids", "mags": mags, "design": design, "trials": trials}


def _plant(run: dict, out: Path, **kw) -> dict[str, list[Path]]:
    outputs = {s: [out / f"{s}{e}.nii" for e in range(3)] for s in ("plus", "minus")}
    written = plant_echoes(
        run["mags"],
        TE,
        TR,
        run["design"],
        run["trials"],
        "01",
        {"+": outputs["plus"], "-": outputs["minus"]},
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


def test_half_the_difference_gives_back_what_was_planted(run, tmp_path):
    written = _plant(run, tmp_path / "work")
    orig = np.asarray(nib.load(run["mags"][1]).dataobj, np.float64)
    out = planted_difference(
        "raw-single",
        written["+"],
        written["-"],
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
        planted_difference(
            "raw-optcom", written["+"], written["-"], tmp_path / "o.nii.gz", echo_times=TE
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

"""The held-out fits stage (``echoprep glm-heldout``): each half of the runs fitted on its own."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.events import read_trials
from echoprep.io.images import StageInputError
from echoprep.io.outputs import paths_in
from echoprep.kernels.fidelity import image_means
from echoprep.kernels.noiseceiling import zscore_within
from echoprep.simulate import simulate_dataset
from echoprep.stages.glm import DEFAULT_OUTPUTS, run_glm, session_key
from echoprep.stages.glm.heldout import VOLUME_COLUMNS, run_heldout_fits

SES = "sub-01_ses-01_task-images"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny preset (1 subject, 2 runs x 90 volumes, 46 images, one repeat per run)."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "bids", "tiny", seed=0)


def _inputs(root: Path) -> tuple[list[Path], list[Path]]:
    func = root / "sub-01" / "ses-01" / "func"
    bold = [func / f"{SES}_run-0{r}_echo-2_part-mag_bold.nii.gz" for r in (1, 2)]
    events = [func / f"{SES}_run-0{r}_events.tsv" for r in (1, 2)]
    return bold, events


def _mask(bold: Path, path: Path) -> Path:
    """A brain mask both fits share: voxels brighter than the median of run 1's mean."""
    img = nib.load(bold)
    mean = img.get_fdata().mean(-1)
    nib.save(nib.Nifti1Image((mean > np.median(mean)).astype(np.uint8), img.affine), path)
    return path


def _heldout_outputs(tmp_path: Path) -> dict[str, Path]:
    return {
        "means": tmp_path / "heldout_statmap.nii.gz",
        "volumes": tmp_path / "heldout_volumes.tsv",
    }


def test_each_half_equals_a_fit_of_its_runs_alone(tiny, tmp_path: Path) -> None:
    """Known answer: half A's image means are those of the GLM stage run on run 01 alone."""
    bold, events = _inputs(tiny)
    mask = _mask(bold[0], tmp_path / "mask.nii.gz")
    out = _heldout_outputs(tmp_path)
    run_heldout_fits(
        bold, events, out, splits=1, mask=mask, run_labels=["01", "02"], session="01", seed=0
    )
    volumes = pd.read_csv(out["volumes"], sep="\t", dtype=str)
    assert tuple(volumes.columns) == VOLUME_COLUMNS
    assert set(volumes["split"]) == {"1"}
    assert set(volumes.loc[volumes["half"] == "A", "run_labels"]) == {"01"}
    assert set(volumes.loc[volumes["half"] == "B", "run_labels"]) == {"02"}
    means = nib.load(out["means"]).get_fdata()
    assert means.shape[-1] == len(volumes) == 2 * 46
    fit_mask = nib.load(mask).get_fdata() > 0
    summaries = {}
    for half, run in (("A", 0), ("B", 1)):
        rows = (volumes["half"] == half).to_numpy()
        alone = paths_in(
            tmp_path / half, "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
        )
        run_glm([bold[run]], [events[run]], alone, mask=mask, run_labels=[f"0{run + 1}"], seed=0)
        summaries[half] = json.loads(alone["summary"].read_text())
        betas = nib.load(alone["betas"]).get_fdata()[fit_mask]
        trials = read_trials(alone["trials"])
        z = zscore_within(betas, trials["run"].to_numpy())
        expected = image_means(z, trials["label"].to_numpy(), volumes.loc[rows, "label"].to_numpy())
        np.testing.assert_allclose(means[fit_mask][:, rows], expected, atol=1e-4)
    side = json.loads(Path(str(out["means"]).replace(".nii.gz", ".json")).read_text())
    fits = side["Parameters"]["Fits"]
    assert [(f["split"], f["half"], f["runs"]) for f in fits] == [
        (1, "A", ["01"]),
        (1, "B", ["02"]),
    ]
    for fit in fits:  # each half's summary is that of its fit alone
        alone = summaries[fit["half"]]
        assert fit["pcnum"] == alone["pcnum"] and isinstance(fit["pcnum"], int)
        assert fit["trials"] == alone["NumberOfTrials"] == 46
        assert fit["device"] == alone["Device"] == "cpu (NumPy)"
    assert side["Session"] == "01" and side["Parameters"]["Splits"] == 1


def test_fewer_than_two_runs_are_refused(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    with pytest.raises(StageInputError) as err:
        run_heldout_fits(bold[:1], events[:1], _heldout_outputs(tmp_path), splits=1)
    assert str(err.value) == (
        f"{bold[0]}: expected at least 2 runs to fit halves apart; found 1. Fix: leave this "
        "session out of comparison.sessions."
    )
    assert not _heldout_outputs(tmp_path)["means"].exists()


def test_one_events_file_per_run(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    message = (
        f"{bold[0]}: expected one events file per BOLD run; found 2 runs and 1 events files. "
        "Fix: every run needs its events.tsv."
    )
    with pytest.raises(StageInputError) as err:
        run_heldout_fits(bold, events[:1], _heldout_outputs(tmp_path), splits=1)
    assert str(err.value) == message
    glm_outputs = paths_in(
        tmp_path / "glm", "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
    )
    with pytest.raises(StageInputError) as err:
        run_glm(bold, events[:1], glm_outputs)
    assert str(err.value) == message

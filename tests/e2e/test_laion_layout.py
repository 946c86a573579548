"""Issue 17's acceptance for the LAION-fMRI layout: on the tiny demo's outputs, a reader that
knows only the laion_fmri loader's paths (scripts/read_laion_layout.py: numpy, nibabel,
pandas) finds betas as trials x voxels inside the meanR2gt15mask, trials with labels, session
and subject noise ceilings in percent and the ROIs.

The paths below are spelled out on purpose (not taken from echoprep's output registry): they
are the loader's, and a renamed output must fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.bids_uri import resolve_uri
from helpers.snake import ROOT

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "read_laion_layout.py"


def _config(demo):
    desc = demo["results"] / "glmsingle-tedana" / "dataset_description.json"
    return json.loads(desc.read_text())["echoprepConfig"]


@pytest.fixture(scope="module")
def layout(demo, tmp_path_factory):
    """The script's summary of the demo's outputs (it must exit 0)."""
    out = tmp_path_factory.mktemp("laion") / "layout.json"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(demo["results"]), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stdout)
    return json.loads(out.read_text())


def _events_trials(demo, subject, session, blank):
    """Image trials of a session in the raw events (the rows the GLM gives a beta)."""
    func = demo["bids"] / f"sub-{subject}" / f"ses-{session}" / "func"
    files = sorted(func.glob(f"sub-{subject}_ses-{session}_task-images_run-*_events.tsv"))
    assert files
    return sum(int((~pd.read_csv(f, sep="\t")["trial_type"].isin(blank)).sum()) for f in files)


def test_betas_trials_and_voxels_agree(demo, layout):
    blank = _config(demo)["glm"]["blank_trial_types"]
    subjects = sorted(p.name[4:] for p in demo["bids"].glob("sub-*") if p.is_dir())
    assert [s["subject"] for s in layout] == subjects
    for sub in layout:
        glm = demo["results"] / "glmsingle-tedana" / f"sub-{sub['subject']}"
        mask_path = (
            glm / f"sub-{sub['subject']}_task-images_space-T1w_desc-meanR2gt15mask_mask.nii.gz"
        )
        mask = np.asarray(nib.load(mask_path).dataobj)
        assert nib.load(mask_path).get_data_dtype() == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert sub["mask_voxels"] == int(mask.sum()) > 0
        sessions = sorted(
            p.name[4:] for p in (demo["bids"] / f"sub-{sub['subject']}").glob("ses-*")
        )
        assert sorted(sub["sessions"]) == sessions
        for ses, info in sub["sessions"].items():
            n_trials, n_voxels = info["betas_shape"]
            assert n_voxels == sub["mask_voxels"]
            assert n_trials == info["trials"] == info["labelled_trials"]
            assert n_trials == _events_trials(demo, sub["subject"], ses, blank)
            assert 1 < info["labels"] < n_trials  # repeated stimuli


def test_noise_ceilings_are_percent(demo, layout):
    for sub in layout:
        glm = demo["results"] / "glmsingle-tedana" / f"sub-{sub['subject']}"
        assert "Allrep" in sub["noise_ceilings"]
        stats = [
            *sub["noise_ceilings"].values(),
            *(s["noise_ceiling"] for s in sub["sessions"].values()),
        ]
        for s in stats:
            assert 0 <= s["min"] <= s["median"] <= s["max"] <= 100
        assert max(s["max"] for s in stats) > 1  # percent, not a fraction
        sidecars = [*glm.glob("sub-*_desc-Noiseceiling*_statmap.json"),
                    *glm.glob("ses-*/func/*_desc-Noiseceiling_statmap.json")]  # fmt: skip
        # the volumes' (the maps on the surfaces, _hemi-, are published beside them)
        volumes = [p for p in sidecars if "_hemi-" not in p.name]
        assert len(volumes) == len(sub["noise_ceilings"]) + len(sub["sessions"])
        for side in sidecars:
            content = json.loads(side.read_text())
            assert content["Units"] == "%", side
            assert content["Published"]["Variant"] == _config(demo)["publish"]["variant"]
        mask_side = json.loads(next(glm.glob("*_desc-meanR2gt15mask_mask.json")).read_text())
        assert mask_side["Threshold"] == 15 and mask_side["ThresholdUnits"] == "%"


def test_rois_exist_and_originals_are_not_hard_linked(demo, layout):
    for sub in layout:
        assert sub["rois"]["visuallyResponsive"]["voxels"] > 0
        rois = demo["results"] / "atlases" / f"sub-{sub['subject']}" / "rois"
        for name in sub["rois"]:
            side = json.loads((rois / f"{name}.json").read_text())
            original = resolve_uri(side["Sources"][0], rois / f"{name}.json")
            assert original is not None, side["Sources"]
            assert original.is_file() and (rois / f"{name}.nii.gz").resolve() == original.resolve()
    # a hard link would share the original's inode, which Snakemake touches after the publish
    # job (the original then looks newer than its consumers): links are symbolic or copies
    for path in (demo["results"] / "glmsingle-tedana").rglob("*.nii.gz"):
        assert path.is_symlink() or os.stat(path).st_nlink == 1, path


def test_a_missing_path_is_named(tmp_path):
    (tmp_path / "glmsingle-tedana" / "sub-01" / "ses-01").mkdir(parents=True)
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 1
    mask = "sub-01_task-images_space-T1w_desc-meanR2gt15mask_mask.nii.gz"
    assert res.stderr.startswith("read_laion_layout: missing meanR2gt15mask: expected ")
    assert mask in res.stderr

"""The one path builder: BIDS entity order, wildcards, run-level outputs, sidecars."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoprep.io.paths import bids_name, bids_path, run_dir, run_prefix, sidecar_path

RUN = {"sub": "01", "ses": "01", "task": "images", "run": "01"}


def test_entities_are_ordered_as_bids_whatever_the_input_order():
    name = bids_name(
        {"desc": "optcom", "run": "01", "sub": "01", "task": "images"}, "bold", ".nii.gz"
    )
    assert name == "sub-01_task-images_run-01_desc-optcom_bold.nii.gz"


def test_laion_names_are_reproduced():
    name = bids_name(
        {**RUN, "run": None, "space": "T1w", "stat": "effect", "desc": "SingletrialBetas"},
        "statmap",
        "nii.gz",
    )
    assert (
        name
        == "sub-01_ses-01_task-images_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    )


def test_bids_path_places_files_in_subject_session_datatype():
    p = bids_path("/out", {**RUN, "desc": "optcom"}, "bold", ".nii.gz")
    assert p == Path(
        "/out/sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_desc-optcom_bold.nii.gz"
    )
    assert bids_path("/o", {"sub": "02"}, "T1w", ".nii.gz", datatype="anat") == Path(
        "/o/sub-02/anat/sub-02_T1w.nii.gz"
    )


def test_sessionless_runs():
    ents = {"sub": "01", "task": "images", "run": "02"}
    assert run_prefix(ents) == "sub-01_task-images_run-02"
    assert run_dir(ents) == "sub-01/func"


@pytest.mark.parametrize(
    "bad, message",
    [({"sub": "0_1"}, "must be alphanumeric"), ({"subject": "01"}, "unknown BIDS entities")],
)
def test_bad_entities_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        bids_name(bad, "bold", ".nii.gz")


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".tsv"])
def test_sidecar_path(ext):
    assert sidecar_path(f"/a/x_bold{ext}") == Path("/a/x_bold.json")

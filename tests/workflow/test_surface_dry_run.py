"""Dry runs of the surface rules (docs/surface.md): jobs only for subjects with a FreeSurfer
folder, the plan's line, a broken folder refused before anything runs, nothing for a dataset
without FreeSurfer, the series on the surface when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree, write_freesurfer_subject
from helpers.snake import dry_run, job_counts, parse_jobs, shell_commands, snakemake

SURFACE_RULES = ("surface_anatomy", "surface_session", "surface_subject", "surface_bold")


def _config(tmp_path: Path, bids: Path, **extra: object) -> dict[str, object]:
    return {
        "bids_dir": bids,
        "output_dir": tmp_path / "out",
        "work_dir": tmp_path / "work",
        **extra,
    }


@pytest.fixture
def two_subjects(tmp_path):
    """2 subjects x 1 session x 2 runs (headers only); sub-01 has a FreeSurfer folder in
    derivatives/freesurfer, sub-02 none."""
    bids = make_bids_tree(
        tmp_path / "bids", subjects=("01", "02"), sessions=("01",), runs=("01", "02"), data=False
    )
    write_freesurfer_subject(bids / "derivatives" / "freesurfer" / "sub-01")
    return bids


def test_only_the_subject_with_a_freesurfer_folder_gets_surface_jobs(tmp_path, two_subjects):
    out = dry_run(_config(tmp_path, two_subjects))
    counts = job_counts(out)
    assert counts["surface_anatomy"] == 1
    assert counts["surface_session"] == 6  # the comparison session's 6 variants
    assert counts["surface_subject"] == 1  # nordic-optcom, fitted in every session
    assert "surface_bold" not in counts  # surface.bold: false
    for job in parse_jobs(out):
        if job.rule.startswith("surface_"):
            assert "sub-01" in " ".join(job.output) and "sub-02" not in " ".join(job.output)
    assert "sub-01: " in out and "derivatives/freesurfer/sub-01" in out
    assert "sub-02: no FreeSurfer folder: no surface outputs" in out
    session = next(j for j in parse_jobs(out) if j.rule == "surface_session")
    names = " ".join(Path(p).name for p in session.output)
    assert "hemi-L_space-fsnative_stat-effect_desc-SingletrialBetas_statmap.func.gii" in names
    # the template: not in the subjects folder, so nilearn's fsaverage5, and the line says so
    assert "space-fsaverage5" in names and "resampled to nilearn's fsaverage5" in out


def test_a_dataset_without_freesurfer_plans_as_before(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", subjects=("01",), sessions=("01",), data=False)
    out = dry_run(_config(tmp_path, bids))
    counts = job_counts(out)
    assert not set(SURFACE_RULES) & set(counts)
    assert "Surfaces" not in out


def test_the_native_grid_says_why_the_freesurfer_folders_are_not_used(tmp_path, two_subjects):
    out = dry_run(_config(tmp_path, two_subjects, spatial="{output_space: native}"))
    assert not set(SURFACE_RULES) & set(job_counts(out))
    assert "FreeSurfer folders of sub-01 are not used" in out


def test_a_broken_freesurfer_folder_is_refused_naming_the_file(tmp_path, two_subjects):
    (two_subjects / "derivatives" / "freesurfer" / "sub-01" / "surf" / "rh.pial").unlink()
    res = snakemake("-n", config=_config(tmp_path, two_subjects))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "rh.pial: missing" in out and "Fix:" in out


def test_series_on_the_surface_and_a_configured_folder(tmp_path, two_subjects):
    elsewhere = tmp_path / "fs"
    (two_subjects / "derivatives" / "freesurfer" / "sub-01").rename(tmp_path / "moved")
    write_freesurfer_subject(elsewhere / "02")  # <label>/ without sub- is found too
    config = _config(tmp_path, two_subjects, surface=f"{{bold: true, freesurfer_dir: {elsewhere}}}")
    out = dry_run(config)
    counts = job_counts(out)
    assert counts["surface_anatomy"] == 1
    # sub-02's 2 runs x the variants fitted in its comparison session (6)
    assert counts["surface_bold"] == 12
    bold = [j for j in parse_jobs(out) if j.rule == "surface_bold"]
    assert all("sub-02" in " ".join(j.output) for j in bold)
    outputs = [p for j in bold for p in j.output]
    assert any("combine-raw" in p and p.endswith("_desc-optcom_bold.func.gii") for p in outputs)


def test_surface_rois_reach_the_roi_tables_of_the_subject_with_surfaces(tmp_path, two_subjects):
    """A .label in rois.dir for every subject: sub-01's ROI tables read its fsnative noise
    ceiling and R² and the label; sub-02's (no FreeSurfer folder) tables are as before."""
    rois = tmp_path / "rois" / "visual"
    rois.mkdir(parents=True)
    (rois / "lh.V1.label").write_text("#!ascii label\n1\n0 0.0 0.0 0.0 0.0\n")
    out = dry_run(_config(tmp_path, two_subjects, rois=f"{{dir: {tmp_path / 'rois'}}}"))
    commands = shell_commands(out, "rois table")
    with_surface = [c for c in commands if "--surface-rois" in c]
    assert with_surface and all("sub-01_ses-01" in c for c in with_surface)
    assert all("sub-02" not in c for c in with_surface)
    assert any("sub-02_ses-01" in c for c in commands)
    for command in with_surface:
        assert "visual=" in command and "lh.V1.label" in command
        assert "hemi-L_space-fsnative_desc-Noiseceiling_statmap.func.gii" in command


def test_fsaverage_from_the_subjects_folder(tmp_path, two_subjects):
    """An fsaverage folder beside the subjects (as recon-all and fMRIPrep leave it) is the
    template: files named space-fsaverage, its sphere.reg an input, no fallback line."""
    write_freesurfer_subject(two_subjects / "derivatives" / "freesurfer" / "fsaverage")
    out = dry_run(_config(tmp_path, two_subjects))
    session = next(j for j in parse_jobs(out) if j.rule == "surface_session")
    names = " ".join(Path(p).name for p in session.output)
    assert "hemi-R_space-fsaverage_desc-Noiseceiling_statmap.func.gii" in names
    assert "fsaverage5" not in names and "resampled to nilearn's" not in out
    assert any(p.endswith("freesurfer/fsaverage/surf/rh.sphere.reg") for p in session.input)

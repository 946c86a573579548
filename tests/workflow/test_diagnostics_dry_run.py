"""Dry runs: the NORDIC diagnostics table is scheduled once per subject when NORDIC is on, reads
both variants of every echo handling of the comparison session, and feeds the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import dry_run, job_counts, parse_jobs


def _config(tmp_path: Path, bids: Path) -> dict[str, object]:
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}


@pytest.fixture
def tree(tmp_path):
    """2 subjects x 2 sessions x 2 runs x 3 echoes (headers only)."""
    return make_bids_tree(
        tmp_path / "bids",
        subjects=("01", "02"),
        sessions=("01", "02"),
        runs=("01", "02"),
        data=False,
    )


def test_diagnostics_job_per_subject_reads_both_variants(tmp_path, tree):
    # one comparison session (the default compares the first two)
    extra = tmp_path / "first_only.yaml"
    extra.write_text('comparison:\n  sessions: ["01"]\n')
    out = dry_run(_config(tmp_path, tree), "--printshellcmds", "--configfile", str(extra))
    assert job_counts(out)["diagnostics"] == 2
    jobs = {j.wildcards: j for j in parse_jobs(out) if j.rule == "diagnostics"}
    job = jobs["subject=01"]
    assert job.output[0] == str(
        tmp_path / "out/reports/sub-01/sub-01_task-images_desc-nordic_diagnostics.tsv"
    )
    betas = [f for f in job.input if f.endswith("desc-SingletrialBetas_statmap.nii.gz")]
    # the comparison session only (ses-01), every echo handling, NORDIC off and on
    assert len(betas) == 6 and all("_ses-01_" in f for f in betas)
    assert {f.split("/glmsingle-")[1].split("/")[0] for f in betas} == {
        f"{n}-{c}" for n in ("raw", "nordic") for c in ("single", "optcom", "denoised")
    }
    bold = [f for f in job.input if "/combine-" in f]
    assert len(bold) == 2 * 3 * 2  # runs x echo handlings x NORDIC off/on
    # NORDIC's echoes, whose sidecars (written by the same jobs, not declared) it reads
    nordic = [f for f in job.input if "/nordic/" in f]
    assert len(nordic) == 2 * 3  # runs x echoes of ses-01
    assert all(f.endswith("_part-mag_desc-nordic_bold.nii.gz") for f in nordic)
    for image in nordic:
        assert f" --nordic-json 01 {image.removesuffix('.nii.gz')}.json" in out
    assert any("label-visuallyResponsive_mask" in f for f in job.input)
    cmd = [ln for ln in out.splitlines() if "python -m echoprep diagnostics --subject 01" in ln]
    assert len(cmd) == 1
    assert cmd[0].count("--tsnr ") == 2 * 3 and cmd[0].count("--glm ") == 6
    assert cmd[0].count("--nordic-json ") == 6
    # the report shows the table
    (report,) = [
        j for j in parse_jobs(out) if j.rule == "subject_report" and j.wildcards == "subject=01"
    ]
    assert job.output[0] in report.input


def test_no_diagnostics_without_nordic(tmp_path, tree):
    extra = tmp_path / "extra.yaml"
    # the LAION layout's nordic-optcom is not produced
    extra.write_text("nordic:\n  enabled: false\npublish:\n  laion: false\n")
    out = dry_run(_config(tmp_path, tree), "--configfile", str(extra), "--printshellcmds")
    assert "diagnostics" not in job_counts(out)
    assert "--diagnostics" not in out

"""Dry runs: GLMsingle fits and noise ceilings are scheduled per session x variant as configured
(all six variants for the comparison sessions, glm.all_sessions_variants for every session)."""

from __future__ import annotations

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import dry_run, job_counts, parse_jobs

GLM_RULES = ("glm", "glm_description", "noiseceiling_session", "noiseceiling_subject")


def _config(tmp_path, bids):
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}


@pytest.fixture
def two_by_two(tmp_path):
    """2 subjects x 2 sessions x 2 runs (headers only)."""
    return make_bids_tree(
        tmp_path / "bids",
        subjects=("01", "02"),
        sessions=("01", "02"),
        runs=("01", "02"),
        data=False,
    )


def _glm_jobs(out: str) -> list[tuple[str, str]]:
    """(``<nordic>-<combine>``, session stem) of every scheduled glm job."""
    found = []
    for job in parse_jobs(out):
        if job.rule != "glm":
            continue
        wc = dict(item.split("=", 1) for item in job.wildcards.split(", "))
        found.append((f"{wc['nordic']}-{wc['combine']}", wc["ses_prefix"]))
    return found


def test_glm_jobs_per_session_and_variant(tmp_path, two_by_two):
    out = dry_run(_config(tmp_path, two_by_two))
    counts = job_counts(out)
    # first session of each subject: 6 variants; second session: nordic-optcom only
    assert counts["glm"] == 2 * 6 + 2 * 1
    assert counts["noiseceiling_session"] == 14
    assert counts["glm_description"] == 6
    assert counts["noiseceiling_subject"] == 2  # nordic-optcom, per subject
    # the events of make_bids_tree show images 2-4 times: mixed counts give N-repeat maps
    assert counts["noiseceiling_repeats"] >= 2
    jobs = [j for j in parse_jobs(out) if j.rule == "glm"]
    second = [j for j in jobs if "ses_prefix=sub-01_ses-02_task-images" in j.wildcards]
    assert [j.wildcards.split(", ")[:2] for j in second] == [["nordic=nordic", "combine=optcom"]]
    for job in jobs:
        assert job.threads == 2 and int(job.resources["mem_mb"]) >= 1000
        assert "runtime" in job.resources
        bold = [f for f in job.input if f.endswith("_bold.nii.gz")]
        events = [f for f in job.input if f.endswith("_events.tsv")]
        assert len(bold) == len(events) == 2
        assert all("/combine-" in f for f in bold)


def test_comparison_sessions_and_all_sessions_variants_are_configurable(tmp_path, two_by_two):
    extra = tmp_path / "glm.yaml"
    extra.write_text(
        "glm:\n  all_sessions_variants: [raw-single, nordic-denoised]\n"
        "variants:\n  combine: [single, denoised]\n"
    )
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra))
    jobs = _glm_jobs(out)
    first = {v for v, s in jobs if s == "sub-01_ses-01_task-images"}
    second = {v for v, s in jobs if s == "sub-01_ses-02_task-images"}
    # optcom is not produced: its variants are dropped without error
    assert first == {"raw-single", "raw-denoised", "nordic-single", "nordic-denoised"}
    assert second == {"raw-single", "nordic-denoised"}
    assert len(jobs) == 2 * (4 + 2)
    assert job_counts(out)["noiseceiling_subject"] == 4  # 2 variants x 2 subjects


def test_nordic_off_drops_nordic_variants_without_error(tmp_path, two_by_two):
    extra = tmp_path / "nordic_off.yaml"
    extra.write_text("nordic:\n  enabled: false\n")
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra))
    counts = job_counts(out)
    assert counts["glm"] == 2 * 3  # raw-* on the first sessions; nordic-optcom dropped
    assert "noiseceiling_subject" not in counts
    assert all(j.wildcards.startswith("nordic=raw") for j in parse_jobs(out) if j.rule == "glm")


def test_sessionless_dataset_names(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", sessions=(None,), runs=("01", "02"), data=False)
    out = dry_run(_config(tmp_path, bids), "--printshellcmds")
    assert job_counts(out)["glm"] == 6
    assert (
        "glmsingle-nordic-optcom/sub-01/func/sub-01_task-images_space-T1w_stat-effect_desc-"
        "SingletrialBetas_statmap.nii.gz" in out
    )
    assert (
        "glmsingle-nordic-optcom/sub-01/func/sub-01_task-images_space-T1w_desc-NoiseceilingAllrep"
        in out
    )


def test_comparison_sessions_get_all_variants(tmp_path, two_by_two):
    extra = tmp_path / "comparison.yaml"
    extra.write_text("comparison:\n  sessions: [ses-02]\n")
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra))
    jobs = _glm_jobs(out)
    assert {v for v, s in jobs if s == "sub-02_ses-02_task-images"} == {
        f"{n}-{c}" for n in ("raw", "nordic") for c in ("single", "optcom", "denoised")
    }
    assert {v for v, s in jobs if s == "sub-02_ses-01_task-images"} == {"nordic-optcom"}
    assert len(jobs) == 14

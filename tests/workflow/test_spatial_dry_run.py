"""Dry runs of the anatomy and spatial rules: scheduled jobs, what the echo handling reads."""

from __future__ import annotations

import re

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import description_counts, dry_run, job_counts, parse_jobs, shell_commands

SPATIAL_RULES = (
    "anatomy",
    "spatial_reference",
    "spatial_run",
    "spatial_subject",
    "spatial_resample",
)


def _config(tmp_path, bids):
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}


@pytest.fixture
def bids(tmp_path):
    """2 subjects x 2 runs x 3 echoes, each run with a phasediff fieldmap (headers only)."""
    return make_bids_tree(
        tmp_path / "bids",
        subjects=("01", "02"),
        runs=("01", "02"),
        data=False,
        fieldmap=True,
    )


def _extra(tmp_path, text):
    path = tmp_path / "extra.yaml"
    path.write_text(text)
    return ("--configfile", str(path))


def test_spatial_and_anatomy_jobs_are_scheduled(tmp_path, bids):
    out = dry_run(_config(tmp_path, bids), "--printshellcmds")
    counts = job_counts(out)
    assert counts["anatomy"] == 2
    assert counts["spatial_subject"] == counts["spatial_reference"] == 2
    assert "spatial_run" not in counts  # the first step of each run's NORDIC chain
    assert counts["spatial_resample"] == 4  # the raw side's chain per run (every echo)
    # one dataset description each for anat/ and spatial/, one per preproc-<nordic>/
    descriptions = description_counts(out)
    assert descriptions["anatomy"] == descriptions["spatial"] == 1
    assert descriptions["preproc"] == 2
    cmds = shell_commands(out, "spatial")
    assert cmds and all(not re.search(r"\{[A-Za-z_]+\}", c) for c in cmds)
    # the planted runs resample each side's planted series once (test_planted_dry_run.py)
    planted = [c for c in cmds if "/logs/planted/" in c]
    assert len(planted) == 4 * 2
    cmds = [c for c in cmds if c not in planted]
    # the resampling of both NORDIC sides: the raw chain's and the nordic chain's step
    assert sum("spatial resample" in c for c in cmds) == 4 * 2
    run_cmds = [c for c in cmds if "spatial run" in c]
    # geometry on the raw echo 2, with the fieldmap: of each run, and of each subject's first
    # run for its reference boldref, which every run but the first aligns to
    assert len(run_cmds) == 4 + 2
    assert all("_echo-2_part-mag_bold.nii.gz" in c and "phasediff" in c for c in run_cmds)
    references = [c for c in run_cmds if "--reference-boldref" in c]
    assert len(references) == 2
    assert all(
        re.search(r"--reference-boldref \S+_desc-reference_boldref.nii.gz", c) for c in references
    )
    # one resampling step per run and variant: --echo, --te and --out bold= per echo, in order
    for cmd in (c for c in cmds if "spatial resample" in c):
        words = cmd.split()
        echoes = words[words.index("--echo") + 1 : words.index("--geometry")]
        tes = words[words.index("--te") + 1 : words.index("--drop-volumes")]
        outs = words[words.index("--out") + 1 : words.index("2>")]
        assert len(echoes) == len(tes) == len(outs) == 3
        for echo, out_word in zip(echoes, outs, strict=True):
            label = echo.split("_echo-")[1].split("_")[0]
            assert out_word.startswith("bold=") and f"_echo-{label}_space-T1w_" in out_word


def test_echo_handling_reads_the_resampled_echoes(tmp_path, bids):
    out = dry_run(_config(tmp_path, bids), "--printshellcmds")
    jobs = parse_jobs(out)
    chains = ("spatial_resample", "nordic")
    resampled = {o for j in jobs if j.rule in chains for o in j.output if "/preproc-" in o}
    assert len(resampled) == 4 * 2 * 3  # runs x sides x echoes (sidecars written, not declared)
    # the combinations folded into a chain read the echoes its resampling step wrote
    for cmd in shell_commands(out, "combine"):
        words = cmd.split()
        bold = words[words.index("--echo") + 1 : words.index("--te")]
        assert len(bold) == 3 and all(b in resampled for b in bold), cmd
    for job in jobs:
        if job.rule not in ("single_echo", "optcom", "tedana", "tedana_nordic"):
            continue
        bold = [i for i in job.input if i.endswith("_bold.nii.gz")]
        assert len(bold) == 3 and all(b in resampled for b in bold), job.input
        assert all("_space-T1w_desc-preproc_bold" in b for b in bold)
        assert all("_space-T1w_" in o for o in job.output if o.endswith(".nii.gz"))
    # the NORDIC chain resamples the NORDIC echoes it has just written
    nordic = [c for c in shell_commands(out, "spatial resample") if "/preproc-nordic/" in c]
    assert len(nordic) == 4
    for cmd in nordic:
        words = cmd.split()
        echoes = words[words.index("--echo") + 1 : words.index("--geometry")]
        assert len(echoes) == 3 and all("_part-mag_desc-nordic_bold" in e for e in echoes)
    # the GLM fits the session's analysis mask, made from the anatomy brain mask on the
    # functional grid
    glm = [j for j in jobs if j.rule == "glm"]
    masks = [j for j in jobs if j.rule == "analysis_mask"]
    assert glm and masks
    assert all(
        any(i.endswith("_space-T1w_desc-analysis_mask.nii.gz") for i in j.input) for j in glm
    )
    assert all(any(i.endswith("_space-T1w_desc-brain_mask.nii.gz") for i in j.input) for j in masks)


def test_native_output_needs_no_anatomy(tmp_path, bids):
    out = dry_run(_config(tmp_path, bids), *_extra(tmp_path, "spatial:\n  output_space: native\n"))
    counts = job_counts(out)
    assert "anatomy" not in counts and "spatial_subject" not in counts
    assert counts["spatial_resample"] == 4
    jobs = parse_jobs(out)
    combined = [o for j in jobs if j.rule in ("nordic", "spatial_resample") for o in j.output]
    assert any("/combine-" in o for o in combined)
    assert not any("space-" in o for o in combined)


def test_spatial_disabled_reads_the_nordic_and_raw_echoes(tmp_path, bids):
    out = dry_run(_config(tmp_path, bids), *_extra(tmp_path, "spatial:\n  enabled: false\n"))
    counts = job_counts(out)
    assert not set(SPATIAL_RULES) & set(counts)
    for job in parse_jobs(out):
        if job.rule == "single_echo" and "nordic=raw" in job.wildcards:
            assert all("/bids/" in i for i in job.input)
            assert not any("space-T1w" in o for o in job.output)


def test_missing_t1w_is_reported(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", t1w=False, data=False)
    from helpers.snake import snakemake

    res = snakemake("-n", config=_config(tmp_path, bids))
    assert res.returncode != 0
    assert "T1w" in res.stdout + res.stderr

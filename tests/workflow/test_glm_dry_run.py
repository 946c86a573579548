"""Dry runs: GLMsingle fits and noise ceilings are scheduled per session x variant as configured
(all six variants for the comparison sessions, glm.all_sessions_variants for every session)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import (
    description_counts,
    dry_run,
    job_counts,
    parse_jobs,
    shell_commands,
    snakemake,
)


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


def _first_only(tmp_path) -> list[str]:
    """Arguments that compare each subject's first session only (the default compares the
    first two), so that ses-02 is a regular session."""
    extra = tmp_path / "first_only.yaml"
    extra.write_text('comparison:\n  sessions: ["01"]\n')
    return ["--configfile", str(extra)]


def _glm_jobs(out: str) -> list[tuple[str, str]]:
    """(``<nordic>-<combine>``, session stem) of every scheduled glm job."""
    found = []
    for job in parse_jobs(out):
        if job.rule != "glm":
            continue
        wc = dict(item.split("=", 1) for item in job.wildcards.split(", "))
        found.append((f"{wc['nordic']}-{wc['combine']}", wc["ses_prefix"]))
    return found


def test_default_compares_the_first_two_sessions_of_each_subject(tmp_path, two_by_two):
    """comparison.sessions: []: both sessions of each subject fit all six variants, with
    their held-out fits, the reference (type-B) fit and a planted design each (each session's
    planted responses from the other)."""
    out = dry_run(_config(tmp_path, two_by_two))
    counts = job_counts(out)
    assert counts["glm"] == 2 * 2 * 6
    assert counts["glm_heldout"] == 2 * 2 * 6
    assert counts["glm_reference"] == counts["planted_design"] == 2 * 2
    sessions = {s for _, s in _glm_jobs(out)}
    assert sessions == {f"sub-0{s}_ses-0{e}_task-images" for s in "12" for e in "12"}


def test_glm_jobs_per_session_and_variant(tmp_path, two_by_two):
    out = dry_run(_config(tmp_path, two_by_two), *_first_only(tmp_path))
    counts = job_counts(out)
    # first session of each subject: 6 variants; second session: nordic-optcom only
    assert counts["glm"] == 2 * 6 + 2 * 1
    assert counts["noiseceiling_session"] == 14
    # one dataset description per glmsingle-<variant> folder
    assert description_counts(out)["glm"] == 6
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
        "publish:\n  laion: false\n"  # the LAION layout's nordic-optcom is not produced
        'comparison:\n  sessions: ["01"]\n'
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
    # the LAION layout's nordic-optcom is not produced
    extra.write_text("nordic:\n  enabled: false\npublish:\n  laion: false\n")
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra))
    counts = job_counts(out)
    assert counts["glm"] == 2 * 2 * 3  # raw-* on the comparison sessions; nordic-optcom dropped
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


def _wildcards(job) -> dict[str, str]:
    return dict(item.split("=", 1) for item in job.wildcards.split(", "))


def _session_of(job) -> str:
    return _wildcards(job)["ses_prefix"]


def test_one_analysis_mask_per_session_feeds_every_variant(tmp_path, two_by_two):
    """The analysis mask job of a session reads every fitted variant's runs (and the brain
    mask); every glm job, type-B job and held-out fit job of that session fit on it."""
    out = dry_run(_config(tmp_path, two_by_two), "--printshellcmds", *_first_only(tmp_path))
    counts = job_counts(out)
    assert counts["analysis_mask"] == 4  # one per fitted (subject, session)
    assert description_counts(out)["analysis-mask"] == 1  # glmsingle-analysis/
    jobs = parse_jobs(out)
    masks = {_session_of(j): j for j in jobs if j.rule == "analysis_mask"}
    assert set(masks) == {f"sub-0{s}_ses-0{e}_task-images" for s in "12" for e in "12"}
    for ses, job in masks.items():
        bold = [f for f in job.input if f.endswith("_bold.nii.gz")]
        # comparison sessions: 6 variants x 2 runs; the others: nordic-optcom's 2 runs
        variants = {
            f.split("/combine-")[1].split("/")[0] + f.split("_desc-")[1][:-12] for f in bold
        }
        if "_ses-01_" in ses:
            assert len(bold) == 12 and len(variants) == 6
        else:
            assert len(bold) == 2 and variants == {"nordicoptcom"}
        assert sum(f.endswith("_space-T1w_desc-brain_mask.nii.gz") for f in job.input) == 1
        (mask,) = [o for o in job.output if o.endswith(".nii.gz")]
        sub, sesl = ses.split("_")[:2]
        assert mask.endswith(
            f"glmsingle-analysis/{sub}/{sesl}/func/{ses}_space-T1w_desc-analysis_mask.nii.gz"
        )
    fits = [j for j in jobs if j.rule in ("glm", "glm_reference", "glm_heldout")]
    # + type-B fits of raw-single (visual ROI) per subject, + held-out fits of the 6 variants
    # of each subject's comparison session
    assert len(fits) == 14 + 2 + 12
    for job in fits:
        (mask,) = [f for f in job.input if "/glmsingle-analysis/" in f]
        assert mask in masks[_session_of(job)].output
    cmds = [
        line for line in out.splitlines() if re.search(r"python -m echoprep glm(-heldout)? ", line)
    ]
    assert len(cmds) == 28 and all("--mask " in c and "_desc-analysis_mask" in c for c in cmds)
    cmds = [line for line in out.splitlines() if "python -m echoprep analysis-mask " in line]
    assert len(cmds) == 4 and all(c.count("--bold ") in (1, 6) for c in cmds)
    assert all(" --out mask=" in c and "_desc-analysis_mask.nii.gz" in c for c in cmds)


def test_held_out_fits_for_every_variant_of_the_comparison_sessions(tmp_path, two_by_two):
    """One glm_heldout job per variant of each comparison session (each half of the runs
    fitted apart with the variant's own options); the type-B fits are only the visual ROI's."""
    out = dry_run(_config(tmp_path, two_by_two), "--printshellcmds", *_first_only(tmp_path))
    jobs = parse_jobs(out)
    typeb = [j for j in jobs if j.rule == "glm_reference"]
    assert all(j.wildcards.startswith("nordic=raw, combine=single") for j in typeb)
    assert sorted(_session_of(j) for j in typeb) == [
        "sub-01_ses-01_task-images",
        "sub-02_ses-01_task-images",
    ]
    held = [j for j in jobs if j.rule == "glm_heldout"]
    assert len(held) == 12
    assert {_session_of(j) for j in held} == {
        "sub-01_ses-01_task-images",
        "sub-02_ses-01_task-images",
    }
    for job in held:
        wc = _wildcards(job)
        folder = f"/glmsingle-{wc['nordic']}-{wc['combine']}/"
        assert sorted(Path(o).name.split("_desc-")[1] for o in job.output) == [
            "HeldoutImagemeans_statmap.nii.gz",
            "HeldoutImagemeans_volumes.tsv",
        ]  # (and their sidecars, written by the job, not declared)
        assert all(folder in o for o in job.output)
        bold = [f for f in job.input if f.endswith("_bold.nii.gz")]
        assert len(bold) == 2
    cmds = [line for line in out.splitlines() if "python -m echoprep glm-heldout " in line]
    assert len(cmds) == 12 and all(" --splits 2 " in c for c in cmds)
    assert all(" --out means=" in c and " volumes=" in c for c in cmds)
    # the comparison reads them all: every variant is judged against the others
    cmds = shell_commands(out, "comparison subject")
    assert len(cmds) == 2 and all(" --reference" not in c for c in cmds)
    assert all(c.count("heldout=") == 6 and c.count("heldout_volumes=") == 6 for c in cmds)


def test_held_out_fits_follow_the_comparison_sessions_and_splits(tmp_path, two_by_two):
    # a former comparison.reference still plans (with a note), on the comparison session
    # ses-02, with one split
    extra = tmp_path / "ses02.yaml"
    extra.write_text("comparison:\n  reference: raw-denoised\n  sessions: [ses-02]\n  splits: 1\n")
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra), "--printshellcmds")
    assert "comparison.reference: 'raw-denoised' is no longer used" in out
    cmds = shell_commands(out, "comparison subject")
    assert cmds and all(" --reference" not in c for c in cmds)
    held = [j for j in parse_jobs(out) if j.rule == "glm_heldout"]
    assert {_session_of(j) for j in held} == {
        "sub-01_ses-02_task-images",
        "sub-02_ses-02_task-images",
    }
    cmds = [line for line in out.splitlines() if "python -m echoprep glm-heldout " in line]
    assert cmds and all(" --splits 1 " in c for c in cmds)
    # the report (and with it the comparison) off: no held-out fits, only the visual ROI's
    # type-B fits of raw-single (the ROIs are still made)
    extra = tmp_path / "no_report.yaml"
    extra.write_text("report:\n  enabled: false\n")
    out = dry_run(_config(tmp_path, two_by_two), "--configfile", str(extra))
    counts = job_counts(out)
    assert counts["glm_reference"] == 2 and "glm_heldout" not in counts
    assert counts["analysis_mask"] == 4


def test_a_former_reference_not_produced_plans_with_a_note(tmp_path, two_by_two):
    """comparison.reference is no longer used: a value that earlier versions refused (a
    variant this config does not produce) now plans, with the note naming the key."""
    extra = tmp_path / "bad_ref.yaml"
    extra.write_text("variants:\n  combine: [single]\ncomparison:\n  reference: raw-denoised\n")
    res = snakemake("-n", "--configfile", str(extra), config=_config(tmp_path, two_by_two))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (
        "comparison.reference: 'raw-denoised' is no longer used: the held-out measures judge "
        "every variant against every other variant, never against itself"
    ) in res.stdout + res.stderr
    # a low-rank-denoised reference is refused by the schema
    extra.write_text("comparison:\n  reference: nordic-optcom\n")
    res = snakemake("-n", "--configfile", str(extra), config=_config(tmp_path, two_by_two))
    assert res.returncode != 0
    assert "comparison.reference: 'nordic-optcom' is not one of" in res.stdout + res.stderr

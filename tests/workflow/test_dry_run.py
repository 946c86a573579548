"""Snakemake dry runs on generated BIDS trees: the DAG, its job counts, profiles, errors."""

from __future__ import annotations

import re

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import (
    ROOT,
    description_counts,
    dry_run,
    job_counts,
    rule_blocks,
    scheduled_wildcards,
    snakemake,
)


def _config(tmp_path, bids, **more):
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work", **more}


@pytest.fixture
def two_subjects(tmp_path):
    return make_bids_tree(
        tmp_path / "bids", subjects=("01", "02"), sessions=("01",), runs=("01", "02"), data=False
    )


def _per_subject(n_subjects: int, nordic: bool) -> dict[str, int]:
    """Jobs a default run schedules once per subject (anatomy, functional grid, visual ROI,
    report) or once in all (the comparison, ``all``)."""
    return {
        "anatomy": n_subjects,
        # the reference boldref (the first run's geometry) and the functional grid
        "spatial_reference": n_subjects,
        "spatial_subject": n_subjects,
        "rois_visual": n_subjects,
        "subject_report": n_subjects,
        # the subject's comparison table (held-out fidelity, NC, d'), joined by "comparison"
        "comparison_subject": n_subjects,
        # NORDIC on vs off diagnostics (reports/sub-X/..._desc-nordic_diagnostics.tsv)
        **({"diagnostics": n_subjects} if nordic else {}),
        # the responses planted into the subject's comparison session (docs/comparison.md)
        "planted_design": n_subjects,
        "comparison": 1,
        # the validated config as a file, read by the description and report jobs
        "config_snapshot": 1,
        "all": 1,
    }


def _described(nordic: bool, more: dict[str, int]) -> dict[str, int]:
    """Derivative folders (by echoprep.io.outputs.FOLDERS kind) that get a dataset description
    (one ``dataset_description`` job each) in a default run, plus ``more``."""
    return {
        "anatomy": 1,
        "spatial": 1,
        "preproc": 2 if nordic else 1,
        "combine": 2 if nordic else 1,
        "rois": 1,
        "comparison": 1,
        "planted": 1,
        "report": 1,
        **more,
    }


def _check_counts(out: str, jobs: dict[str, int], folders: dict[str, int]) -> None:
    """Jobs per rule (one ``dataset_description`` job per described folder) and described
    folders per kind."""
    assert job_counts(out) == {**jobs, "dataset_description": sum(folders.values())}
    assert description_counts(out) == folders


def test_job_counts_per_rule(tmp_path, two_subjects):
    """2 subjects x 1 session x 2 runs x 3 echoes: one chain job per run and NORDIC side
    (nordic: geometry, NORDIC, resampling and optcom, which every session fits;
    spatial_resample: resampling, single echo and optcom, as the NORDIC-off side runs in the
    comparison sessions only); the NORDIC single echo on its own (other sessions would not fit
    it); tedana per run and side;
    one GLM and session noise ceiling per session and variant (all 6 for the comparison
    session); subject maps for nordic-optcom (glm.all_sessions_variants), with one map per
    repeat count (the tree shows images 2 and 3 times); ROI tables per GLM; one analysis mask
    per fitted session; one held-out fit job (each half of the runs fitted apart) per variant
    of each comparison session; the type-B fit of raw-single that the visual ROI's run-level
    test uses."""
    out = dry_run(_config(tmp_path, two_subjects))
    jobs = {
        "nordic": 4,  # with each run's geometry (spatial_run)
        "spatial_resample": 4,
        "single_echo": 4,  # NORDIC on
        "tedana": 4,  # NORDIC off
        "tedana_nordic": 4,  # NORDIC on: after the NORDIC-off ICA of the same run
        "confounds": 8,  # per run and side: beside its series (combine-, preproc-<side>/)
        "glm": 12,
        "analysis_mask": 2,
        "glm_reference": 2,  # raw-single (visual ROI) per subject
        "glm_heldout": 12,  # every variant of each subject's comparison session
        # each comparison run's chains on its planted echoes; each variant's frozen fit of them
        "planted_run": 4,
        "planted_glm": 12,
        "noiseceiling_session": 12,
        "noiseceiling_subject": 2,
        "noiseceiling_repeats": 4,
        "rois_table": 12,
        # the LAION-fMRI layout of nordic-optcom: per session, per subject (mask, all-repeat
        # NC), per subject and repeat count, per subject and ROI (the visual one)
        "publish_session": 2,
        "publish_subject": 2,
        "publish_repeats": 4,
        "publish_roi": 2,
        **_per_subject(2, nordic=True),
    }
    # nordic/, the six glmsingle-<variant>/, glmsingle-analysis/ and the LAION layout's
    # glmsingle-tedana/ and atlases/ besides the default ones
    folders = {"nordic": 1, "glm": 6, "analysis-mask": 1, "laion": 1, "atlases": 1}
    _check_counts(out, jobs, _described(True, folders))


def test_nordic_off_schedules_no_nordic_jobs(tmp_path, two_subjects):
    # nested keys go in a config file: `--config` parses nested values as text
    extra = tmp_path / "nordic_off.yaml"
    # the LAION layout's variant (nordic-optcom) is not produced: switched off with NORDIC
    extra.write_text("nordic:\n  enabled: false\npublish:\n  laion: false\n")
    out = dry_run(_config(tmp_path, two_subjects), "--configfile", str(extra))
    jobs = {
        # no chain runs in every session (only the comparison sessions fit a variant here):
        # the geometry has jobs of its own
        "spatial_run": 4,
        "spatial_resample": 4,  # with the single echo and optcom
        "tedana": 4,
        "confounds": 4,
        "glm": 6,
        "analysis_mask": 2,
        "glm_reference": 2,  # raw-single (visual ROI) per subject
        "glm_heldout": 6,
        "planted_run": 4,
        "planted_glm": 6,
        "noiseceiling_session": 6,
        "rois_table": 6,
        **_per_subject(2, nordic=False),
    }
    _check_counts(out, jobs, _described(False, {"glm": 3, "analysis-mask": 1}))
    assert "combine-nordic" not in out and "glmsingle-nordic" not in out


def test_nordic_jobs_read_magnitude_and_phase_of_every_echo_of_their_run(tmp_path, two_subjects):
    """One NORDIC job per run: --mag, --phase and --te per echo, and --out bold=, gfactor=,
    removed= per echo in the same order (one file per echo, named as before)."""
    out = dry_run(_config(tmp_path, two_subjects), "--printshellcmds")
    # (the planted runs' NORDIC, with --companions, is another job's: test_planted_dry_run.py)
    cmds = [
        line
        for line in out.splitlines()
        if "-m echoprep nordic" in line and "--companions" not in line
    ]
    assert len(cmds) == 4
    for cmd in cmds:
        words = cmd.split()
        words = words[words.index("--mag") :]  # (the chain's geometry step comes first)
        mags = words[words.index("--mag") + 1 : words.index("--phase")]
        phases = words[words.index("--phase") + 1 : words.index("--te")]
        tes = words[words.index("--te") + 1 : words.index("--tr")]
        assert len(mags) == len(tes) == 3 and len({m.split("_echo-")[0] for m in mags}) == 1
        assert phases == [m.replace("part-mag", "part-phase") for m in mags]
        outs = words[words.index("--out") + 1 : words.index("&&")]  # then the resampling
        assert [o.split("=")[0] for o in outs] == ["bold", "gfactor", "removed"] * 3
        for mag, bold in zip(mags, outs[::3], strict=True):
            echo = mag.split("_echo-")[1].split("_")[0]
            assert bold.endswith(f"_echo-{echo}_part-mag_desc-nordic_bold.nii.gz")


def test_variants_and_participant_selection_change_the_dag(tmp_path, two_subjects):
    out = dry_run(
        _config(
            tmp_path, two_subjects, participant_label="[sub-02]", variants="{combine: [optcom]}"
        )
    )
    jobs = {
        "nordic": 2,
        "spatial_resample": 2,  # raw side, with optcom (so is nordic)
        "confounds": 4,
        "glm": 2,
        "analysis_mask": 1,
        "glm_reference": 1,  # raw-optcom: the visual ROI's source
        "glm_heldout": 2,  # raw-optcom and nordic-optcom
        "planted_run": 2,
        "planted_glm": 2,
        "noiseceiling_session": 2,
        "noiseceiling_subject": 1,
        "noiseceiling_repeats": 2,
        "rois_table": 2,
        "publish_session": 1,
        "publish_subject": 1,
        "publish_repeats": 2,
        "publish_roi": 1,
        **_per_subject(1, nordic=True),
    }
    folders = {"nordic": 1, "glm": 2, "analysis-mask": 1, "laion": 1, "atlases": 1}
    _check_counts(out, jobs, _described(True, folders))
    assert all("sub-02" in w for w in scheduled_wildcards(out) if "run_prefix" in w)


def test_sessionless_dataset(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", sessions=(None,), runs=("01", "02", "03"), data=False)
    out = dry_run(_config(tmp_path, bids))
    assert job_counts(out)["tedana"] == 3 and job_counts(out)["tedana_nordic"] == 3
    assert "run_dir=sub-01/func" in out


def test_slurm_profile_dry_run(tmp_path, two_subjects):
    out = dry_run(
        _config(tmp_path, two_subjects),
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--sdm",
        "env-modules",
    )
    assert job_counts(out)["tedana"] + job_counts(out)["tedana_nordic"] == 8


def test_bids_problems_stop_the_dag_with_every_message(tmp_path, two_subjects):
    removed = []
    for f in sorted(two_subjects.rglob("*echo-2_part-mag_bold.nii.gz")):
        if "sub-02" in f.name or "run-02" in f.name:
            f.unlink()
            removed.append(f.name)
    res = snakemake("-n", config=_config(tmp_path, two_subjects))
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "problem(s) in the BIDS input" in err, err
    for name in removed:  # every broken run is named, not only the first
        assert name.split("_echo-")[0] in err


def test_unknown_participant_lists_the_subjects_that_exist(tmp_path, two_subjects):
    res = snakemake("-n", config=_config(tmp_path, two_subjects, participant_label="[05]"))
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "problem(s) in the BIDS input" in err
    assert "05" in err and "sub-01" in err and "sub-02" in err


def test_unknown_config_key_is_reported(tmp_path, two_subjects):
    res = snakemake("-n", config={**_config(tmp_path, two_subjects), "outptu_dir": "x"})
    assert res.returncode != 0
    assert "'outptu_dir' was unexpected" in res.stdout + res.stderr


def test_input_dataset_is_untouched_by_a_dry_run(tmp_path, two_subjects):
    before = sorted(p.relative_to(two_subjects) for p in two_subjects.rglob("*"))
    dry_run(_config(tmp_path, two_subjects))
    assert sorted(p.relative_to(two_subjects) for p in two_subjects.rglob("*")) == before


def test_snakemake_lint_is_clean(tmp_path, two_subjects):
    res = snakemake("--lint", config=_config(tmp_path, two_subjects))
    assert res.returncode == 0, res.stderr
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


def test_no_command_carries_an_unexpanded_wildcard(tmp_path, two_subjects):
    out = dry_run(_config(tmp_path, two_subjects), "--printshellcmds")
    cmds = [line for line in out.splitlines() if "python -m echoprep" in line]
    # every job runs one echoprep command, but those of rules without a shell command
    # (`all`; config_snapshot, written by Snakemake itself)
    no_command = {n for n, b in rule_blocks().items() if not re.search(r"^\s+shell:", b, re.M)}
    assert len(cmds) == sum(n for rule, n in job_counts(out).items() if rule not in no_command)
    for cmd in cmds:
        assert not re.search(r"\{[A-Za-z_]+\}", cmd), cmd

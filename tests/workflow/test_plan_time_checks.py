"""Every input problem when the DAG is built, heuristics as warnings, config overrides (issue 17).

- A legal small-head dataset (the simulator's tiny dataset with its T1w cropped to 72×80×48 mm)
  plans: the field of view is a warning printed once, not an error.
- A dataset with two different problems (a sidecar without EchoTime, a T1w time series) stops
  at DAG build with one message listing both.
- Nested keys from the command line (`--config 'nordic={enabled: false}'`, typed by the schema)
  and dotted keys in an overrides file work; a section given as a string and a missing
  bids_dir are refused with messages that show the working forms.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from echoprep.simulate import simulate_dataset
from helpers.bidstree import (
    bold_path,
    default_affine,
    edit_sidecar,
    make_bids_tree,
    t1w_path,
    write_nifti,
)
from helpers.small_head import crop_t1w
from helpers.snake import dry_run, job_counts, options_of, shell_commands, snakemake


def _config(tmp_path: Path, bids: Path, **more: object) -> dict[str, object]:
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work", **more}


@pytest.fixture
def small_head(tmp_path: Path) -> Path:
    """The tiny simulated dataset, its T1w cropped to 72×80×48 mm (still legal BIDS)."""
    bids = Path(simulate_dataset(tmp_path / "bids", "tiny"))
    (t1w,) = bids.glob("sub-01/ses-01/anat/*_T1w.nii.gz")
    crop_t1w(t1w, t1w)
    return bids


def test_a_small_head_dataset_plans_with_one_warning(tmp_path, small_head):
    out = dry_run(_config(tmp_path, small_head))
    warning = (
        "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz: field of view [72.0, 80.0, 48.0] mm, "
        "below the 80 mm of an adult whole head"
    )
    assert out.count(warning) == 1, out
    assert job_counts(out)["anatomy"] == 1


def test_two_problems_at_once_are_both_listed_at_dag_build(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", runs=("01", "02"), data=False)
    edit_sidecar(bold_path(bids, run="02", echo=2, part="mag"), EchoTime=None)
    write_nifti(
        t1w_path(bids, "01", "01"), (40, 40, 40, 3), default_affine((40, 40, 40), 2.0), data=False
    )
    res = snakemake("-n", config=_config(tmp_path, bids))
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "2 problem(s) in the BIDS input" in err, err
    assert (
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_echo-2_part-mag_bold.json: expected "
        "EchoTime (echo time of echo-2, in seconds)" in err
    ), err
    assert (
        "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz: expected a 3-D anatomical image; found "
        "shape (40, 40, 40, 3)" in err
    ), err
    # the message alone: no Snakemake error header or frame ("WorkflowError in file
    # .../common.smk, line 39" and 'File ".../common.smk", line 39, in <module>' before)
    assert "Traceback" not in err and "Error in file" not in err and 'File "' not in err, err
    assert res.returncode == 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_nested_overrides_from_the_command_line_and_dotted_keys_in_a_file(tmp_path):
    """--config 'nordic={factor_error: 1.5, magnitude_only: true}' reaches the stage typed
    (Snakemake hands over text); a dotted key in an overrides file sets one nested key."""
    bids = make_bids_tree(tmp_path / "bids", runs=("01",), data=False)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("variants.combine: [single, optcom]\n")
    out = dry_run(
        _config(tmp_path, bids, nordic="{factor_error: 1.5, magnitude_only: true}"),
        "--configfile",
        str(overrides),
        "--printshellcmds",
    )
    commands = shell_commands(out, "nordic")
    assert len(commands) == 1  # one per run (its three echoes)
    assert "--phase" not in commands[0]  # magnitude_only
    options = options_of(commands[0])
    assert options["factor_error"] == 1.5 and options["magnitude_only"] is True
    assert options["enabled"] is True  # the section's other keys keep their values
    jobs = job_counts(out)
    assert "tedana" not in jobs and "tedana_nordic" not in jobs  # variants.combine
    # the chains fold optcom on both sides and the raw single echo; the NORDIC one has a job
    assert "optcom" not in jobs and jobs["single_echo"] == 1
    assert jobs["nordic"] == jobs["spatial_resample"] == 1


def test_config_mistakes_are_refused_with_the_working_forms(tmp_path):
    bids = make_bids_tree(tmp_path / "bids", runs=("01",), data=False)
    res = snakemake("-n", config=_config(tmp_path, bids, nordic="off"))
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "nordic: expected a section (a mapping of keys to values); found 'off'" in err, err
    assert res.returncode == 1 and 'File "' not in err and "Error in file" not in err, err
    assert "--config 'nordic={enabled: false}'" in err and "--configfile overrides.yaml" in err
    # config/config.yaml names no dataset: a plain run says how to give one
    res = snakemake("-n", config={"output_dir": tmp_path / "out", "work_dir": tmp_path / "w"})
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "bids_dir: expected the raw BIDS dataset folder (required, no default)" in err, err
    assert "--config bids_dir=/path/to/bids" in err and "--configfile config/demo.yaml" in err
    # Snakemake itself refuses a dotted name on its command line, before the workflow starts
    # (the README shows the forms above instead); if this ever passes, document the dotted form
    res = snakemake("-n", config={**_config(tmp_path, bids), "nordic.enabled": "false"})
    assert res.returncode != 0
    assert "Config entry must start with a valid identifier" in res.stdout + res.stderr


@pytest.mark.parametrize(
    "more", [{}, {"nordic": "{enabled: false}"}], ids=["default", "nordic-off"]
)
def test_paths_with_spaces_stay_whole_in_every_command(tmp_path: Path, more):
    """bids_dir, output_dir and work_dir with a space: every printed shell command splits (as
    the shell splits it) into words that never cut a path at the space, so every path reaches
    its stage whole (rules quote their files with ``:q``, the plan's arguments with one
    helper, ``echoprep.plan.context.words``)."""
    bids = make_bids_tree(
        tmp_path / "raw ds" / "bids", sessions=("01", "02"), data=False, fieldmap=True
    )
    config = {
        "bids_dir": bids,
        "output_dir": tmp_path / "out ds",
        "work_dir": tmp_path / "work ds",
        **more,
    }
    out = dry_run(config, "-p", "--cores", "2")
    commands = shell_commands(out, "")
    assert len(commands) > 30
    for command in commands:
        words = shlex.split(command)
        cut = [w for w in words if w == "ds" or w.startswith("ds/") or "=ds/" in w]
        assert cut == [], command
        assert any(" ds/" in w for w in words), command  # the test sees the paths at all

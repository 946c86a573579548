"""BIDS input discovery: the data model, filters, the index cache and every pinned problem."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echoprep.io import bids_index
from echoprep.io.bids import BIDSInputError, Dataset, EchoFiles, InputProblem, Run, discover
from echoprep.io.bids_checks import fmt_list
from echoprep.io.bids_events import EventsRules
from echoprep.io.paths import sidecar_path
from helpers.bidstree import (
    bold_path,
    corrupt,
    default_affine,
    edit_sidecar,
    events_path,
    fmap_path,
    make_bids_tree,
    name_phase_as_before_bids_1_5,
    remove,
    set_read_only,
    t1w_path,
    write_json,
    write_nifti,
)
from helpers.plans import make_plan

TES = (0.011, 0.02882, 0.04662)
SHAPE = (6, 7, 5)
NVOL = 12
FUNC = "sub-01/ses-01/func/"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """sub-01, ses-01, runs 01 and 02, three echoes, magnitude and phase."""
    return make_bids_tree(tmp_path / "ds")


@pytest.fixture
def root3(tmp_path: Path) -> Path:
    """Like ``root`` with three runs (so that a majority defines the reference)."""
    return make_bids_tree(tmp_path / "ds", runs=("01", "02", "03"))


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def problems_of(root: Path, n: int | None = 1, **kwargs) -> list[InputProblem]:
    """Run discover, expect a BIDSInputError with ``n`` problems, return them."""
    with pytest.raises(BIDSInputError) as info:
        discover(root, **kwargs)
    found = info.value.problems
    if n is not None:
        assert len(found) == n, "\n".join(str(p) for p in found)
    return found


def discover_cli(root: Path) -> str:
    """What ``echoprep discover`` prints for ``root`` (it must succeed)."""
    res = subprocess.run(
        [sys.executable, "-m", "echoprep", "discover", str(root)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def replace_echo(root: Path, run: str, echo: int, te: float, parts=("mag", "phase")) -> None:
    for part in parts:
        edit_sidecar(bold_path(root, run=run, echo=echo, part=part), EchoTime=te)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            st = os.stat(Path(dirpath) / name)
            out[rel(root, Path(dirpath) / name)] = (st.st_size, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------------------
# valid datasets
# --------------------------------------------------------------------------------------


def test_lists_in_messages_name_the_first_few_and_count_the_rest() -> None:
    assert fmt_list([]) == "none" and fmt_list([], 3) == "none"
    assert fmt_list(["a", "b", "c"]) == fmt_list(["a", "b", "c"], 3) == "a, b, c"
    assert fmt_list(iter("abcde"), 3) == "a, b, c and 2 more"
    assert fmt_list((f"sub-{i}" for i in (1, 2)), 1, "; ") == "sub-1 and 1 more"


def test_valid_dataset(root: Path) -> None:
    ds = discover(root)
    assert isinstance(ds, Dataset)
    assert ds.root == root
    assert ds.subjects() == ["01"]
    assert ds.sessions("01") == ["01"]
    assert [r.run for r in ds.runs] == ["01", "02"]
    run = ds.get_run("01", "01", "02")
    assert isinstance(run, Run)
    assert run.entities == {"sub": "01", "ses": "01", "task": "images", "run": "02"}
    assert run.echo_times == TES
    assert run.has_phase
    assert run.repetition_time == pytest.approx(1.9)
    assert run.n_volumes == NVOL
    assert run.shape == SHAPE
    assert run.slice_timing is not None and len(run.slice_timing) == SHAPE[2]
    assert run.events == events_path(root, run="02")
    e2 = run.echoes[1]
    assert e2 == EchoFiles(
        2,
        0.02882,
        bold_path(root, run="02", echo=2),
        bold_path(root, run="02", echo=2, part="phase"),
    )
    assert ds.t1w == {"01": t1w_path(root, "01", "01")}
    assert ds.runs_of("sub-01", "ses-01") == list(ds.runs)
    with pytest.raises(KeyError, match="runs of sub-01: sub-01 ses-01 task-images run-01"):
        ds.get_run("01", "01", "07")


def test_no_sessions_no_run_entity_magnitude_only(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", sessions=(None,), runs=(None,), phase=False)
    assert bold_path(root, ses=None, run=None, part=None).name == (
        "sub-01_task-images_echo-1_bold.nii.gz"
    )
    ds = discover(root)
    (run,) = ds.runs
    assert (run.session, run.run) == (None, None)
    assert run.entities == {"sub": "01", "task": "images"}
    assert not run.has_phase and all(e.phase is None for e in run.echoes)
    assert run.events == events_path(root, ses=None, run=None)
    assert ds.sessions("01") == [None]
    assert ds.t1w["01"] == t1w_path(root, "01")


def test_runs_sorted_and_filters(tmp_path: Path) -> None:
    root = make_bids_tree(
        tmp_path / "ds",
        subjects=("02", "01", "03"),
        sessions=("02", "01"),
        runs=("02", "01"),
        data=False,
    )
    ds = discover(root)
    keys = [(r.subject, r.session, r.run) for r in ds.runs]
    assert keys == sorted(keys) and len(keys) == 12
    ds = discover(root, participant_label=["sub-02", "01"], exclude=["01"], sessions=["ses-02"])
    assert [(r.subject, r.session) for r in ds.runs] == [("02", "02"), ("02", "02")]
    assert set(ds.t1w) == {"02"}
    assert discover(root, task="task-images").runs[0].task == "images"


def test_labels_without_zero_padding_sort_by_their_numbers(tmp_path: Path) -> None:
    """BIDS run indices need no padding (run-2, run-10) and session labels often have none:
    run-10 is the last run, ses-10 the last session (the comparison's default sessions are a
    subject's first two: 1 and 2, not 1 and 10)."""
    root = make_bids_tree(
        tmp_path / "ds", sessions=("10", "2", "1"), runs=("10", "2", "1"), data=False
    )
    ds = discover(root)
    assert ds.sessions("01") == ["1", "2", "10"]
    assert [r.run for r in ds.runs_of("01", "10")] == ["1", "2", "10"]
    assert [(r.session, r.run) for r in ds.runs][:4] == [
        ("1", "1"),
        ("1", "2"),
        ("1", "10"),
        ("2", "1"),
    ]
    assert make_plan(root, tmp_path).fitted.comparison_sessions("01") == ["1", "2"]


def test_phase_images_with_the_suffix_of_bids_before_1_5_are_read_as_phase(root: Path) -> None:
    """``…_echo-1_phase.nii.gz`` beside ``…_echo-1_bold.nii.gz`` (BIDS < 1.5, still found in
    shared datasets) is the echo's phase: the run is complex, not magnitude-only."""
    name_phase_as_before_bids_1_5(root)
    ds = discover(root)
    assert all(r.has_phase for r in ds.runs)
    assert ds.runs[0].echoes[0].phase.name == "sub-01_ses-01_task-images_run-01_echo-1_phase.nii.gz"
    assert ds.runs[0].echoes[0].mag.name == "sub-01_ses-01_task-images_run-01_echo-1_bold.nii.gz"
    (warning,) = [w for w in ds.warnings if "_phase" in w]
    assert warning == (
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-1_phase.nii.gz: 6 phase "
        "image(s) named with the suffix _phase (BIDS before 1.5; now …_part-phase_bold.nii.gz), "
        "read as their runs' phase (NORDIC uses the complex data)."
    )


def test_sidecar_inheritance(root: Path) -> None:
    for path in root.rglob("*_bold.json"):
        edit_sidecar(path, RepetitionTime=None)
    write_json(root / "task-images_bold.json", {"RepetitionTime": 2.5, "TaskName": "images"})
    assert {r.repetition_time for r in discover(root).runs} == {2.5}


def test_t1w_prefers_no_session_anat(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", sessions=("01", "02"), t1w="PrismaAnat")
    assert discover(root).t1w["01"] == t1w_path(root, "01", "PrismaAnat")
    write_nifti(t1w_path(root, "01"), (8, 9, 7), default_affine((8, 9, 7), 1.0))
    assert discover(root).t1w["01"] == t1w_path(root, "01")


def test_a_subject_with_several_t1w_images_is_told_which_and_can_choose(tmp_path: Path) -> None:
    """A rescan (run-01, run-02) and a denoised MP2RAGE UNI named _T1w (acq-UNIDEN): the
    first is used with a warning naming the others and the setting; ``anatomy.t1w``'s
    entities pick another (``run: 2`` matches run-02); entities no T1w has are a problem."""
    root = make_bids_tree(tmp_path / "ds", runs=("01",))
    t1w = t1w_path(root, "01", "01")
    names = ("sub-01_ses-01_run-01_T1w", "sub-01_ses-01_run-02_T1w", "sub-01_ses-01_acq-UNIDEN_T1w")
    for name in names:
        shutil.copy(t1w, t1w.with_name(name + ".nii.gz"))
    t1w.unlink()
    ds = discover(root)
    assert ds.t1w["01"].name == "sub-01_ses-01_acq-UNIDEN_T1w.nii.gz"
    (warning,) = [w for w in ds.warnings if "T1w images" in w]
    assert warning == (
        "sub-01/ses-01/anat/sub-01_ses-01_acq-UNIDEN_T1w.nii.gz: the T1w of sub-01, the first "
        "of its 3 T1w images (sub-01/anat/ first, then by session and name); not used: "
        "sub-01/ses-01/anat/sub-01_ses-01_run-01_T1w.nii.gz, "
        "sub-01/ses-01/anat/sub-01_ses-01_run-02_T1w.nii.gz. To use another, name its "
        'entities in anatomy.t1w, e.g. --config \'anatomy={t1w: {ses: "01", run: "01"}}\'.'
    )
    chosen = discover(root, t1w_entities={"run": 2})
    assert chosen.t1w["01"].name == "sub-01_ses-01_run-02_T1w.nii.gz"
    assert not [w for w in chosen.warnings if "T1w images" in w]
    (p,) = problems_of(root, t1w_entities={"acq": "UNI"})
    assert p.file == "sub-01/ses-01/anat/sub-01_ses-01_acq-UNIDEN_T1w.nii.gz"
    assert p.expected == "a T1w image of sub-01 with the entities of anatomy.t1w (acq-UNI)"
    assert p.found.startswith("3 T1w image(s), none with them: sub-01/ses-01/anat/")
    assert p.fix == (
        "set anatomy.t1w to the entities of the one to use, e.g. --config "
        '\'anatomy={t1w: {ses: "01", acq: "UNIDEN"}}\', or to {} for the first'
    )


def test_t1w_images_without_zero_padding_are_ordered_by_their_numbers(tmp_path: Path) -> None:
    """run-2 before run-10 (BIDS indices need no padding), as runs and sessions are."""
    root = make_bids_tree(tmp_path / "ds", runs=("01",))
    t1w = t1w_path(root, "01", "01")
    for run in ("10", "2"):
        shutil.copy(t1w, t1w.with_name(f"sub-01_ses-01_run-{run}_T1w.nii.gz"))
    t1w.unlink()
    ds = discover(root)
    assert ds.t1w["01"].name == "sub-01_ses-01_run-2_T1w.nii.gz"


def test_derivatives_and_sourcedata_ignored(root: Path) -> None:
    for folder in ("derivatives/echoprep", "sourcedata"):
        bad = bold_path(root / folder, run="09", echo=1)
        corrupt(bad)
    ds = discover(root)
    assert [r.run for r in ds.runs] == ["01", "02"]


def test_header_only_tree_at_laion_size(tmp_path: Path) -> None:
    root = make_bids_tree(
        tmp_path / "ds", subjects=("01", "02"), shape=(90, 110, 72), n_volumes=160, data=False
    )
    assert bold_path(root).stat().st_size < 1000
    ds = discover(root)
    assert {(r.shape, r.n_volumes) for r in ds.runs} == {((90, 110, 72), 160)}


def test_require_events_false(root: Path) -> None:
    remove(events_path(root, run="02"))
    ds = discover(root, require_events=False)
    assert ds.get_run("01", "01", "02").events is None


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------


def test_problem_and_error_format(tmp_path: Path) -> None:
    p = InputProblem("a.json", "X", "Y", "do Z")
    assert str(p) == "a.json: expected X; found Y. Fix: do Z"
    err = BIDSInputError([p, InputProblem("b", "1", "2", "3")], tmp_path)
    assert isinstance(err, ValueError)
    assert str(err) == (
        f"2 problem(s) in the BIDS input {tmp_path}:\n"
        "  1. a.json: expected X; found Y. Fix: do Z\n"
        "  2. b: expected 1; found 2. Fix: 3"
    )
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems and str(again) == str(err)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", subjects=("01", "02"))
    remove(
        bold_path(root, "01", run="01", echo=2),
        bold_path(root, "01", run="01", echo=2, part="phase"),
    )
    edit_sidecar(bold_path(root, "02", run="02", echo=3), EchoTime=46.62)
    remove(events_path(root, "02", run="01"))
    corrupt(bold_path(root, "02", run="01", echo=1, part="phase"))
    with pytest.raises(BIDSInputError) as info:
        discover(root, participant_label=["01", "02", "09"])
    text = str(info.value)
    assert text.startswith(f"5 problem(s) in the BIDS input {root}:\n  1. sub-09/: expected")
    assert all(f"\n  {i}. " in text for i in range(1, 6))
    files = [p.file for p in info.value.problems]
    assert files == [
        "sub-09/",
        rel(root, bold_path(root, "02", run="01", echo=1, part="phase")),
        rel(root, events_path(root, "02", run="01")),
        rel(root, sidecar_path(bold_path(root, "02", run="02", echo=3))),
        rel(root, bold_path(root, "01", run="01", echo=2)),
    ]


# --------------------------------------------------------------------------------------
# 1. missing echo
# --------------------------------------------------------------------------------------


def test_missing_echo_gap(root: Path) -> None:
    remove(bold_path(root, run="01", echo=2), bold_path(root, run="01", echo=2, part="phase"))
    (p,) = problems_of(root)
    assert p.file == FUNC + "sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz"
    assert "echo-2 of sub-01 ses-01 task-images run-01 (echoes 1 to 3)" in p.expected
    assert p.found == "no such file; the run has echo(es) 1, 3"
    assert "add the missing echo-2 image (part-mag and part-phase) with its JSON sidecar" in p.fix
    assert p.fix.endswith(
        "or leave the run out with --config 'exclude_runs=[sub-01_ses-01_task-images_run-01]'"
    )


def test_run_with_fewer_echoes_than_the_others_is_a_warning(root3: Path) -> None:
    """Legal (an echo lost in conversion, a protocol changed): the run keeps its two echoes,
    and the warning names it, the subject's usual count and the way to leave it out."""
    root = root3
    remove(bold_path(root, run="02", echo=3), bold_path(root, run="02", echo=3, part="phase"))
    ds = discover(root)
    assert [len(r.echoes) for r in ds.runs] == [3, 2, 3]
    (warning,) = [w for w in ds.warnings if "echoes" in w]
    assert warning == (
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_echo-1_part-mag_bold.nii.gz: "
        "the runs of sub-01 differ in their number of echoes: 2 of the 3 have 3; "
        "sub-01 ses-01 task-images run-02 has 2. Each run is processed with all its echoes; "
        "an echo handling that a run has too few echoes for is left out of the comparison (a "
        "note says which). If an echo was lost in conversion, re-convert the run from DICOM, "
        "or leave runs out with --config 'exclude_runs=[sub-01_ses-01_task-images_run-02]'."
    )


# --------------------------------------------------------------------------------------
# 2. echo counts differ between runs
# --------------------------------------------------------------------------------------


def test_run_with_more_echoes_than_the_others_is_a_warning(root3: Path) -> None:
    root = root3
    for part in ("mag", "phase"):
        extra = bold_path(root, run="03", echo=4, part=part)
        write_nifti(extra, (*SHAPE, NVOL), tr=1.9)
        write_json(sidecar_path(extra), {"EchoTime": 0.0644, "RepetitionTime": 1.9})
    ds = discover(root)
    assert [r.echo_times for r in ds.runs][2] == (0.011, 0.02882, 0.04662, 0.0644)
    (warning,) = [w for w in ds.warnings if "echoes" in w]
    assert warning.startswith(
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-03_echo-1_part-mag_bold.nii.gz: "
        "the runs of sub-01 differ in their number of echoes: 2 of the 3 have 3; "
        "sub-01 ses-01 task-images run-03 has 4. Each run is processed with all its echoes"
    )
    # `echoprep discover` says how the session's runs differ, not the first run's echoes only
    assert discover_cli(root) == (
        "sub-01 ses-01: 3 runs, mag+phase; 2 with 3 echoes (TE 11.00, 28.82, 46.62 ms), TR 1.9 "
        "s; 1 with 4 echoes (TE 11.00, 28.82, 46.62, 64.40 ms), TR 1.9 s\n"
    )


def test_a_gap_in_the_echoes_and_another_count_are_told_apart(root3: Path) -> None:
    """Echo-2 missing from a run that has echo-3 is a problem (the echoes' numbers no longer
    follow their echo times); another run's missing last echo is only a warning."""
    root = root3
    remove(bold_path(root, run="01", echo=2), bold_path(root, run="01", echo=2, part="phase"))
    remove(bold_path(root, run="02", echo=3), bold_path(root, run="02", echo=3, part="phase"))
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-mag_bold.nii.gz")


# --------------------------------------------------------------------------------------
# 3. echo times
# --------------------------------------------------------------------------------------


def test_echo_time_missing(root: Path) -> None:
    edit_sidecar(bold_path(root, run="02", echo=2), EchoTime=None)
    (p,) = problems_of(root)
    assert p.file.endswith("run-02_echo-2_part-mag_bold.json")
    assert p.expected.startswith("EchoTime (echo time of echo-2, in seconds) in the JSON sidecar")
    assert p.found == "no EchoTime"
    assert p.fix.startswith('add "EchoTime": 0.02882 (the echo-2 time in the other runs of sub-01')


def test_echo_time_in_milliseconds(root: Path) -> None:
    edit_sidecar(bold_path(root, run="01", echo=2), EchoTime=28.82)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-mag_bold.json")
    assert p.expected == "EchoTime in seconds (BIDS)"
    assert p.found == "EchoTime = 28.82, which looks like milliseconds"
    assert p.fix == 'write it in seconds: "EchoTime": 0.02882 (divide by 1000)'


def test_echo_time_not_a_number(root: Path) -> None:
    edit_sidecar(bold_path(root, run="01", echo=1), EchoTime="11 ms")
    (p,) = problems_of(root)
    assert p.expected == "EchoTime as a positive number of seconds"
    assert p.found == 'EchoTime = "11 ms"'


def test_echo_times_not_increasing(root: Path) -> None:
    replace_echo(root, "01", 1, 0.02882)
    replace_echo(root, "01", 2, 0.011)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-mag_bold.json")
    assert p.expected == (
        "EchoTime increasing with the echo index in sub-01 ses-01 task-images run-01"
    )
    assert p.found == "echo-1 0.02882 s, echo-2 0.011 s, echo-3 0.04662 s"
    assert "labels or the EchoTime values are swapped" in p.fix


def test_echo_times_that_differ_between_runs_are_a_warning(root3: Path) -> None:
    """Legal (a protocol changed between sessions): each run keeps its own echo times, and
    the warning names the first such sidecar, the usual value and the other runs."""
    root = root3
    replace_echo(root, "02", 3, 0.048)
    replace_echo(root, "03", 3, 0.04665)  # within 1e-4 s: the usual value
    ds = discover(root)
    assert [r.echo_times for r in ds.runs] == [
        (0.011, 0.02882, 0.04662),
        (0.011, 0.02882, 0.048),
        (0.011, 0.02882, 0.04665),
    ]
    (warning,) = [w for w in ds.warnings if "EchoTime" in w]  # (the tree's T1w is tiny too)
    assert warning == (
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_echo-3_part-mag_bold.json: "
        "EchoTime 0.048 s for echo-3, where 2 of the 3 runs of sub-01 have 0.04662 s "
        "(tolerance 1e-4 s); runs with other echo times: sub-01 ses-01 task-images run-02. "
        "Each run is "
        "processed with its own echo times (NORDIC, tedana, the planted responses); the "
        "single-echo variant's echo then has another BOLD contrast in these runs. If a sidecar "
        "is a conversion error, correct it."
    )


def test_phase_echo_time_differs_from_magnitude(root: Path) -> None:
    edit_sidecar(bold_path(root, run="01", echo=2, part="phase"), EchoTime=0.03)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-phase_bold.json")
    assert p.expected == "EchoTime 0.02882 s as in the magnitude sidecar of echo-2"
    assert p.found == "EchoTime 0.03"


# --------------------------------------------------------------------------------------
# 4. magnitude / phase geometry
# --------------------------------------------------------------------------------------


def test_magnitude_phase_shape_mismatch(root: Path) -> None:
    write_nifti(bold_path(root, run="01", echo=2, part="phase"), (6, 7, 6, NVOL), tr=1.9)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-phase_bold.nii.gz")
    assert p.expected == (
        "the shape (6, 7, 5, 12) of its magnitude "
        "sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz"
    )
    assert p.found == "shape (6, 7, 6, 12)"
    assert "same series and reconstruction" in p.fix


def test_magnitude_phase_affine_mismatch(root: Path) -> None:
    shifted = default_affine(SHAPE)
    shifted[0, 3] += 0.5
    write_nifti(bold_path(root, run="02", echo=1, part="phase"), (*SHAPE, NVOL), shifted)
    tiny = default_affine(SHAPE)
    tiny[1, 3] += 5e-4  # below the 1e-3 mm tolerance
    write_nifti(bold_path(root, run="02", echo=2, part="phase"), (*SHAPE, NVOL), tiny)
    (p,) = problems_of(root)
    assert p.file.endswith("run-02_echo-1_part-phase_bold.nii.gz")
    assert p.expected.startswith("the affine of its magnitude sub-01_ses-01_task-images_run-02")
    assert "tolerance 1e-3 mm" in p.expected
    assert p.found.startswith("an affine differing by up to 0.5 mm")
    assert "origin (-4, -5.4, -3.6) vs (-4.5, -5.4, -3.6)" in p.found
    assert "share one grid" in p.fix


def test_echo_affine_mismatch(root: Path) -> None:
    for part in ("mag", "phase"):
        write_nifti(
            bold_path(root, run="01", echo=3, part=part), (*SHAPE, NVOL), default_affine(SHAPE, 2.0)
        )
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-3_part-mag_bold.nii.gz")
    assert p.expected.startswith("the affine of sub-01_ses-01_task-images_run-01_echo-1_part-mag")
    assert "voxel size 2×2×2 mm vs 1.8×1.8×1.8 mm" in p.found


# --------------------------------------------------------------------------------------
# 5. events
# --------------------------------------------------------------------------------------


def test_missing_events(root: Path) -> None:
    remove(events_path(root, run="02"))
    (p,) = problems_of(root)
    assert str(p) == (
        "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_events.tsv: expected the events "
        "file of sub-01 ses-01 task-images run-02 (TSV with columns onset, duration, "
        "trial_type, stim_name); found no such file. Fix: add "
        "sub-01_ses-01_task-images_run-02_events.tsv next to the BOLD files, or leave the run "
        "out with --config 'exclude_runs=[sub-01_ses-01_task-images_run-02]'"
    )


def test_events_not_tab_separated(root: Path) -> None:
    events_path(root, run="01").write_text("onset,duration,trial_type\n0,2.5,new\n")
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_events.tsv")
    assert "columns 'onset,duration,trial_type' (missing onset, duration)" in p.found
    assert "tabs" in p.fix


# --------------------------------------------------------------------------------------
# 6. not 4-D, echoes of a run differ
# --------------------------------------------------------------------------------------


def test_three_d_bold(root: Path) -> None:
    write_nifti(bold_path(root, run="01", echo=1), SHAPE)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-1_part-mag_bold.nii.gz")
    assert p.expected == "a 4-D BOLD time series (x, y, z, volumes) with at least 2 volumes"
    assert p.found == "a 3-D image of shape (6, 7, 5)"
    assert "full series" in p.fix


def test_single_volume_bold(root: Path) -> None:
    write_nifti(bold_path(root, run="02", echo=2, part="phase"), (*SHAPE, 1))
    (p,) = problems_of(root)
    assert p.file.endswith("run-02_echo-2_part-phase_bold.nii.gz")
    assert p.found == "a 4-D image with 1 volume, shape (6, 7, 5, 1)"


def test_echo_volume_counts_differ(root: Path) -> None:
    for part in ("mag", "phase"):
        write_nifti(bold_path(root, run="01", echo=3, part=part), (*SHAPE, 10), tr=1.9)
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-3_part-mag_bold.nii.gz")
    assert p.expected.startswith(
        "shape (6, 7, 5, 12) like sub-01_ses-01_task-images_run-01_echo-1_part-mag_bold.nii.gz"
    )
    assert p.found == "shape (6, 7, 5, 10)"
    assert "re-convert the run" in p.fix


# --------------------------------------------------------------------------------------
# 7. unreadable files
# --------------------------------------------------------------------------------------


def test_corrupt_gzip(root: Path) -> None:
    corrupt(bold_path(root, run="01", echo=2))
    (p,) = problems_of(root)
    assert p.file == FUNC + "sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz"
    assert p.expected == "a readable NIfTI image (.nii or .nii.gz)"
    assert p.found.startswith("nibabel could not read it (ImageFileError:")
    assert "is not a gzip file" in p.found
    assert "gzip -t" in p.fix


def test_not_nifti_and_truncated(root: Path) -> None:
    mag = bold_path(root, run="02", echo=1)
    plain = mag.with_name(mag.name.replace(".nii.gz", ".nii"))
    remove(mag, sidecar=False)
    write_nifti(plain, (*SHAPE, NVOL), tr=1.9)
    plain.write_bytes(plain.read_bytes()[:-100])
    phase = bold_path(root, run="02", echo=3, part="phase")
    remove(phase, sidecar=False)
    text = phase.with_name(phase.name.replace(".nii.gz", ".nii"))
    corrupt(text)
    p1, p2 = problems_of(root, n=2)
    assert p1.file.endswith("run-02_echo-1_part-mag_bold.nii")
    assert p1.found.startswith("a truncated file:")
    assert p2.file.endswith("run-02_echo-3_part-phase_bold.nii")
    assert p2.found.startswith("nibabel could not read it (")


def test_broken_json_sidecar(tmp_path: Path, root: Path) -> None:
    side = sidecar_path(bold_path(root, run="01", echo=1))
    side.write_text('{"EchoTime": 0.011,,}')
    (p,) = problems_of(root, cache_dir=tmp_path / "cache")
    assert p.file.endswith("run-01_echo-1_part-mag_bold.json")
    assert p.expected == "valid JSON (UTF-8 text)"
    assert p.found.startswith("a file that does not parse (JSONDecodeError:")
    assert "python -m json.tool" in p.fix
    assert not list((tmp_path / "cache").glob("dataset-*"))  # a failed discovery is not cached
    edit_sidecar(bold_path(root, run="02", echo=1), EchoTime=0.011)
    side.write_text('{"EchoTime": 0.011, "RepetitionTime": 1.9}')
    assert len(discover(root, cache_dir=tmp_path / "cache").runs) == 2


# --------------------------------------------------------------------------------------
# 8. subjects, sessions, tasks
# --------------------------------------------------------------------------------------


def test_participant_label_not_found(root: Path) -> None:
    (p,) = problems_of(root, participant_label=["01", "sub-05"])
    assert p.file == "sub-05/"
    assert p.expected == "the subject sub-05 (requested by participant_label)"
    assert p.found == "no such subject; the dataset has sub-01"
    assert "with or without the 'sub-' prefix" in p.fix


def test_exclude_runs_numbers_match_with_or_without_zero_padding(root: Path) -> None:
    """``run-2`` and ``run-02`` name the same run (as ``anatomy.t1w``'s ``run: 2`` does); a
    label is otherwise matched as written."""
    assert [r.run for r in discover(root, exclude_runs=["sub-01_ses-1_run-2"]).runs] == ["01"]
    assert [r.run for r in discover(root, exclude_runs=["sub-01_run-02"]).runs] == ["01"]
    assert len(discover(root, exclude_runs=["sub-01_ses-01_run-2x"]).runs) == 2


def test_exclude_everything(root: Path) -> None:
    (p,) = problems_of(root, exclude=["sub-01"])
    assert p.expected == "at least one subject to process"
    assert "every subject excluded" in p.found


def test_session_not_found(root: Path) -> None:
    (p,) = problems_of(root, sessions=["03"])
    assert p.file == "ses-03/"
    assert p.found == "no such session; the selected subjects have ses-01"


def test_several_tasks_the_one_with_most_runs_with_events_with_a_warning(root: Path) -> None:
    """Legal BIDS (an experiment beside a resting-state scan or a localizer): the task with the
    most runs that have events is processed, with a warning naming it, the others and the
    setting; the config key task picks another."""
    make_bids_tree(root, task="rest", runs=("01", "02", "03"), t1w=False)
    for events in root.rglob("*task-rest*_events.*"):
        events.unlink()
    ds = discover(root)
    assert {r.task for r in ds.runs} == {"images"} and len(ds.runs) == 2
    (warning,) = [w for w in ds.warnings if "several tasks" in w]
    assert warning == (
        "The dataset has several tasks: task-images (2 runs, 2 with events), task-rest "
        "(3 runs, 0 with events). Processing task-images, the one with the most runs that have "
        "events; to process another, set the config key task (e.g. --config task=rest; "
        "echoprep discover --task rest lists its runs)."
    )
    rest = discover(root, task="rest", require_events=False)
    assert {r.task for r in rest.runs} == {"rest"} and len(rest.runs) == 3
    assert not [w for w in rest.warnings if "several tasks" in w]


def test_several_tasks_with_events_the_one_with_most_runs(root: Path) -> None:
    """A localizer with events beside the experiment: the experiment, which has more runs."""
    make_bids_tree(root, task="floc", runs=("01",), t1w=False)
    ds = discover(root)
    assert {r.task for r in ds.runs} == {"images"}
    assert any("Processing task-images" in w for w in ds.warnings)


def test_task_not_found(root: Path) -> None:
    (p,) = problems_of(root, task="movie")
    assert p.expected == "BOLD runs of task-movie (requested by task)"
    assert p.found == "no such task; the selected data have task-images (2 runs, 2 with events)"


def test_a_subject_without_bold_runs_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """Legal BIDS (a subject with only anatomy): left out, named in a warning; a problem when
    participant_label asks for it by name."""
    root = make_bids_tree(tmp_path / "ds", subjects=("01", "02", "03"))
    shutil.rmtree(root / "sub-02" / "ses-01" / "func")
    ds = discover(root)
    assert ds.subjects() == ["01", "03"] and sorted(ds.t1w) == ["01", "03"]
    (warning,) = [w for w in ds.warnings if "left out" in w]
    assert warning == (
        "1 subject(s) without BOLD runs of task-images left out: sub-02 (no "
        "func/*_bold.nii[.gz] files). Nothing of theirs is processed, their anatomy neither. If "
        "their runs are missing by mistake, add them; --config 'exclude=[<label>]' leaves a "
        "subject out without this warning."
    )
    assert not [w for w in discover(root, exclude=["02"]).warnings if "left out" in w]
    (p,) = problems_of(root, participant_label=["01", "02"])
    assert p.file == "sub-02/"
    assert p.expected.startswith("at least one BOLD run of task-images (sub-02/[ses-<label>/]func/")
    assert p.found == "no func/*_bold.nii[.gz] files"
    assert p.fix == "add the subject's BOLD runs, or leave the subject out with exclude=['02']"


def test_dataset_without_bold_files(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", subjects=("01", "02"))
    for func in root.glob("sub-*/ses-*/func"):
        shutil.rmtree(func)
    p1, p2 = problems_of(root, n=2)
    assert (p1.file, p2.file) == ("sub-01/", "sub-02/")
    assert p1.expected.startswith("at least one BOLD run of task-<label>")
    assert p1.found == "no func/*_bold.nii[.gz] files"


def test_subject_without_runs_in_selected_session(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", subjects=("01",), sessions=("01", "02"))
    make_bids_tree(root, subjects=("02",), sessions=("01",))
    ds = discover(root, sessions=["02"])
    assert ds.subjects() == ["01"]
    assert any(
        "sub-02 (BOLD runs of task-images only in session(s) 01 (selected: 02))" in w
        for w in ds.warnings
    )
    (p,) = problems_of(root, sessions=["02"], participant_label=["01", "02"])
    assert p.file == "sub-02/"
    assert p.found == "BOLD runs of task-images only in session(s) 01 (selected: 02)"


# --------------------------------------------------------------------------------------
# other problems
# --------------------------------------------------------------------------------------


def test_repetition_time_missing(root: Path) -> None:
    edit_sidecar(bold_path(root, run="02", echo=1), RepetitionTime=None)
    (p,) = problems_of(root)
    assert p.file.endswith("run-02_echo-1_part-mag_bold.json")
    assert p.expected.startswith("RepetitionTime (repetition time, in seconds) in the JSON")
    assert p.found == "no RepetitionTime"
    assert p.fix.startswith('add "RepetitionTime": <repetition time in s, e.g. 1.9>')


def test_repetition_time_differs_within_session(root3: Path) -> None:
    root = root3
    for echo in (1, 2, 3):
        edit_sidecar(bold_path(root, run="03", echo=echo), RepetitionTime=2.0)
    (p,) = problems_of(root)
    assert p.file.endswith("run-03_echo-1_part-mag_bold.json")
    assert p.expected.startswith("RepetitionTime 1.9 s, as in 2 of the 3 runs of sub-01 ses-01")
    assert p.found == "RepetitionTime 2 in sub-01 ses-01 task-images run-03"
    assert p.fix == (
        "correct the sidecars, set spatial.tr_out to resample every run to one TR, or leave "
        "runs with another TR out with --config 'exclude_runs=[sub-01_ses-01_task-images_run-03]'"
    )
    # resampled in time to one TR (spatial.tr_out), the runs can share one GLM: no problem
    ds = discover(root, events_rules=EventsRules(series_tr=1.0))
    assert [r.repetition_time for r in ds.runs] == [1.9, 1.9, 2.0]


def test_phase_without_magnitude(root: Path) -> None:
    remove(bold_path(root, run="01", echo=2))
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-2_part-phase_bold.nii.gz")
    assert p.expected.startswith(
        "its magnitude image sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz"
    )
    assert p.found == "no magnitude image for echo-2"
    assert "delete the orphan phase image" in p.fix


def test_a_run_with_phase_only_and_a_fieldmap_is_named_not_a_crash(tmp_path: Path) -> None:
    """Every magnitude of a run gone, fieldmaps present: one problem per orphan phase image
    (it crashed with ``min() arg is an empty sequence`` checking the fieldmap's sidecars)."""
    root = make_bids_tree(tmp_path / "b", runs=("01", "02"), data=False, fieldmap=True)
    for echo in (1, 2, 3):
        remove(bold_path(root, run="02", echo=echo))
    found = problems_of(root, n=3, use_fieldmaps=True)
    assert [p.found for p in found] == [f"no magnitude image for echo-{e}" for e in (1, 2, 3)]


def test_phase_for_some_echoes_only_is_processed_magnitude_only_with_a_warning(
    root: Path,
) -> None:
    """Legal BIDS: that run is processed magnitude-only (NORDIC needs every echo's phase for
    the complex data), the others keep their phase; the warning names the unused images."""
    remove(bold_path(root, run="02", echo=3, part="phase"))
    ds = discover(root)
    assert [r.has_phase for r in ds.runs] == [True, False]
    (warning,) = [w for w in ds.warnings if "magnitude-only" in w]
    assert warning == (
        "sub-01 ses-01 task-images run-02: phase for echo(es) 1, 2 but not for echo(es) 3; "
        "processed magnitude-only (NORDIC denoises complex data only with the phase of every "
        "echo), its phase images unused: sub-01_ses-01_task-images_run-02_echo-1_part-phase_"
        "bold.nii.gz, sub-01_ses-01_task-images_run-02_echo-2_part-phase_bold.nii.gz."
    )
    assert "2 runs, 3 echoes (TE 11.00, 28.82, 46.62 ms), TR 1.9 s, mag+phase in 1 of 2 runs" in (
        discover_cli(root)
    )


def test_duplicate_echo_file(root: Path) -> None:
    mag = bold_path(root, run="01", echo=1)
    shutil.copy(mag, mag.with_name(mag.name.replace(".nii.gz", ".nii")))
    (p,) = problems_of(root)
    assert p.file.endswith("run-01_echo-1_part-mag_bold.nii")
    assert p.expected == "one magnitude image for echo-1 of sub-01 ses-01 task-images run-01"
    assert "delete the duplicate" in p.fix


def test_names_without_echo_or_with_other_parts(root: Path) -> None:
    mag = bold_path(root, run="01", echo=1)
    shutil.copy(mag, bold_path(root, run="01", echo=None, part=None))
    shutil.copy(mag, bold_path(root, run="02", echo=1, part="real"))
    p1, p2 = problems_of(root, n=2)
    assert p1.file.endswith("sub-01_ses-01_task-images_run-01_bold.nii.gz")
    assert p1.found == "no echo-<index> in the name"
    assert p2.file.endswith("run-02_echo-1_part-real_bold.nii.gz")
    assert p2.found == "part-real"


def _copy_run(root: Path, run: str, insert: str) -> None:
    """Copy a run's images and sidecars to names with ``insert`` (e.g. ``_acq-fast``) before
    its run entity."""
    for f in sorted((root / FUNC).glob(f"*_run-{run}_*bold*")):
        shutil.copy(f, f.with_name(f.name.replace(f"_run-{run}", f"{insert}_run-{run}")))


def test_each_acquisition_of_a_run_is_a_run_of_its_own(root: Path) -> None:
    """Files of run-02 with and without acq-fast (legal BIDS: two acquisitions, e.g. two
    multiband factors) are two runs, each named with its entities, each with its events
    file: ``…_acq-fast_run-02_events.tsv`` where there is one, else the run's own
    (inheritance); ``acq`` stays in every derivative name (``run_prefix``) and label."""
    from echoprep.io.paths import run_prefix

    _copy_run(root, "02", "_acq-fast")
    ds = discover(root)
    assert [r.label for r in ds.runs] == ["01", "02", "acq-fast_run-02"]
    fast = ds.get_run("01", "01", "02", acq="fast")
    assert fast.acq == (("acq", "fast"),) and ds.get_run("01", "01", "02").acq == ()
    assert run_prefix(fast.entities) == "sub-01_ses-01_task-images_acq-fast_run-02"
    assert (
        fast.echoes[0].mag.name
        == "sub-01_ses-01_task-images_acq-fast_run-02_echo-1_part-mag_bold.nii.gz"
    )
    assert fast.events == events_path(root, run="02")
    own = events_path(root, run="02").with_name(
        "sub-01_ses-01_task-images_acq-fast_run-02_events.tsv"
    )
    shutil.copy(events_path(root, run="02"), own)
    assert discover(root).get_run("01", "01", "02", acq="fast").events == own
    with pytest.raises(KeyError, match="acq-fast run-02"):
        ds.get_run("01", "01", "03")


def test_files_of_one_run_that_differ_in_another_entity(root: Path) -> None:
    """``chunk`` does not tell runs apart: a run with and without it is one problem naming
    both sets, in config terms for the entities that do."""
    for f in sorted((root / FUNC).glob("*_run-01_*bold*")):
        shutil.copy(f, f.with_name(f.name.replace("_run-01_", "_run-01_chunk-2_")))
    (p,) = problems_of(root)
    assert p.expected == "one image per echo and part of sub-01 ses-01 task-images run-01"
    assert p.found == "files that differ in other entities: (none), chunk-2"
    assert "exclude_runs selects among those" in p.fix


# --------------------------------------------------------------------------------------
# the T1w header, checked when the workflow is built (as the anatomy stage would)
# --------------------------------------------------------------------------------------


def _t1w(root: Path, shape, affine, units: str = "mm") -> Path:
    """Replace sub-01's T1w by an image of this geometry (sform only: any affine, singular
    included) and spatial unit."""
    import nibabel as nib

    path = t1w_path(root, "01", "01")
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.asarray(affine, float), code=1)
    hdr.set_xyzt_units(units, "sec")
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), None, hdr), path)
    return path


def test_a_small_head_t1w_is_a_warning_not_a_problem(root: Path, caplog) -> None:
    """72×80×48 mm (issue 17's small head): legal, processed; one warning, logged once."""
    _t1w(root, (18, 20, 12), default_affine((18, 20, 12), 4.0))
    with caplog.at_level("WARNING", logger="echoprep.io.bids"):
        ds = discover(root, require_t1w=True)
    assert ds.t1w == {"01": t1w_path(root, "01", "01")}
    (warning,) = ds.warnings
    assert warning.startswith(
        "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz: field of view [72.0, 80.0, 48.0] mm, "
        "below the 80 mm of an adult whole head"
    )
    assert caplog.text.count(warning) == 1
    # a whole head (160 × 192 × 160 mm): nothing to say
    _t1w(root, (40, 48, 40), default_affine((40, 48, 40), 4.0))
    assert discover(root, require_t1w=True).warnings == ()


def test_t1w_header_problems_are_found_when_the_workflow_is_built(root: Path) -> None:
    """What the anatomy stage would refuse from the header alone, reported by discovery."""
    name = "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz"
    cases = [
        ((64, 64, 2), default_affine((64, 64, 2), 2.0), "mm", "shape (64, 64, 2)"),
        ((40, 40, 40), np.diag([10.0, 10.0, 10.0, 1.0]), "mm", "[10.0, 10.0, 10.0] mm"),
        ((40, 40, 40), np.diag([2.0, 2.0, 0.0, 1.0]), "mm", "a singular affine"),
        ((40, 40, 40), np.diag([2.0, 2.0, 2.0, 1.0]), "meter", "units 'meter'"),
        ((4, 4, 4, 2), default_affine((4, 4, 4), 2.0), "mm", "shape (4, 4, 4, 2)"),
    ]
    sheared = np.diag([2.0, 2.0, 2.0, 1.0])
    sheared[0, 1] = 0.6
    cases.append(((40, 40, 40), sheared, "mm", "a shear of"))
    for shape, affine, units, found in cases:
        _t1w(root, shape, affine, units)
        (p,) = problems_of(root)
        assert p.file == name, p
        assert p.found.startswith(found), (found, str(p))
        assert p.fix, p


def test_every_problem_is_listed_with_the_t1w_problem(root: Path) -> None:
    """A T1w time series and a sidecar without EchoTime: one error listing both."""
    _t1w(root, (40, 40, 40, 3), default_affine((40, 40, 40), 2.0))
    edit_sidecar(bold_path(root, run="02", echo=2, part="mag"), EchoTime=None)
    found = problems_of(root, n=2)
    assert found[0].expected.startswith("EchoTime (echo time of echo-2, in seconds)")
    assert found[0].file.endswith("run-02_echo-2_part-mag_bold.json")
    assert found[1].file == "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz"
    assert found[1].found == "shape (40, 40, 40, 3)"


def test_the_header_cache_keeps_the_spatial_unit(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units come from the header cache on the second discovery (no header is re-read)."""
    _t1w(root, (40, 40, 40), np.diag([2.0, 2.0, 2.0, 1.0]), "micron")
    cache = tmp_path / "cache"
    first = problems_of(root, cache_dir=cache)
    assert first and not list(cache.glob("dataset-*"))

    def no_reads(path: Path) -> None:
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(bids_index, "read_header", no_reads)
    assert problems_of(root, cache_dir=cache) == first


def test_require_t1w(root: Path) -> None:
    remove(t1w_path(root, "01", "01"))
    assert discover(root).t1w == {}
    (p,) = problems_of(root, require_t1w=True)
    assert p.file == "sub-01/anat/sub-01_T1w.nii.gz"
    assert p.found == "no *_T1w.nii[.gz] for this subject"
    assert p.fix.endswith(
        "or keep the functional grid native, which needs no T1w "
        "(--config 'spatial={output_space: native}')"
    )


def test_slice_timing_length(root: Path) -> None:
    edit_sidecar(bold_path(root, run="01", echo=1), SliceTiming=[0.0, 0.5])
    (p,) = problems_of(root)
    assert p.expected == (
        "SliceTiming with one entry per slice (5 slices along the third image axis, "
        "SliceEncodingDirection k)"
    )
    assert p.found == "2 entries"


def test_slice_encoding_direction_orders_the_slice_times_and_names_their_axis(
    root: Path,
) -> None:
    """BIDS SliceEncodingDirection: ``k-`` lists SliceTiming from the last slice (the run's
    times come out in slice-index order, reversed); ``j`` puts the slices along the second
    axis (7 slices there), which the count is checked against; an unknown value is a problem
    naming the legal ones."""
    times = [0.1 * i for i in range(SHAPE[2])]
    for echo in (1, 2, 3):
        edit_sidecar(
            bold_path(root, run="01", echo=echo), SliceTiming=times, SliceEncodingDirection="k-"
        )
        edit_sidecar(
            bold_path(root, run="02", echo=echo),
            SliceTiming=[0.05 * i for i in range(SHAPE[1])],
            SliceEncodingDirection="j",
        )
    ds = discover(root)
    first, second = ds.get_run("01", "01", "01"), ds.get_run("01", "01", "02")
    assert first.slice_timing == pytest.approx(times[::-1]) and first.slice_axis == 2
    assert second.slice_timing == pytest.approx([0.05 * i for i in range(7)])
    assert second.slice_axis == 1
    edit_sidecar(bold_path(root, run="02", echo=1), SliceTiming=times)  # 5 entries along j
    edit_sidecar(bold_path(root, run="01", echo=1), SliceEncodingDirection="z")
    unknown, wrong_axis = sorted(problems_of(root, 2), key=lambda p: p.expected)
    assert unknown.expected == "SliceEncodingDirection one of i, j, k, i-, j-, k-"
    assert unknown.found == 'SliceEncodingDirection = "z"'
    assert wrong_axis.expected == (
        "SliceTiming with one entry per slice (7 slices along the second image axis, "
        "SliceEncodingDirection j)"
    )


def test_not_a_folder(tmp_path: Path) -> None:
    (p,) = problems_of(tmp_path / "nope")
    assert p.found == "no such folder"


# --------------------------------------------------------------------------------------
# the index cache; the input stays untouched
# --------------------------------------------------------------------------------------


def _no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading any header or sidecar fail: discovery must come from its caches."""

    def fail(path: Path) -> None:
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(bids_index, "read_header", fail)
    monkeypatch.setattr(bids_index, "_read_json", fail)


def test_cache_reused_and_invalidated(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "work" / "bids_index"
    first = discover(root, cache_dir=cache)
    (stored,) = cache.glob("dataset-*.pickle")
    stamp = stored.stat().st_mtime_ns
    with monkeypatch.context() as m:
        _no_reading(m)  # the whole dataset comes from the cache
        assert discover(root, cache_dir=cache) == first
    assert stored.stat().st_mtime_ns == stamp

    make_bids_tree(root, subjects=("02",))  # a new subject is found
    second = discover(root, cache_dir=cache)
    assert second.subjects() == ["01", "02"]

    for run in ("01", "02"):  # a changed file is found (its sidecar: new echo time)
        replace_echo(root, run, 1, 0.0105)
    third = discover(root, cache_dir=cache, participant_label=["01"])
    assert third.runs[0].echo_times[0] == pytest.approx(0.0105)
    # one cached dataset per selection; the facts of unchanged files are not read again
    assert len(list(cache.glob("dataset-*.pickle"))) == 2

    stored.write_bytes(b"damaged")  # a damaged cache is rediscovered, never trusted
    assert discover(root, cache_dir=cache) == discover(root)


def test_prefetch_reads_each_file_once_whatever_the_worker_count(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold cache is filled by threads; what is read, and so the dataset, does not depend
    on how many."""
    found = {}
    for workers in (1, 4):
        monkeypatch.setattr(bids_index, "PREFETCH_WORKERS", workers)
        found[workers] = discover(root, cache_dir=tmp_path / f"cache{workers}")
    assert found[1] == found[4] == discover(root)

    index = bids_index.BidsIndex.open(root, tmp_path / "fresh")
    # sidecars with BIDS names (dataset_description.json and participants.json are not read)
    not_sidecars = ("dataset_description.json", "participants.json")
    jsons = [p for p in root.rglob("*.json") if p.name not in not_sidecars]
    images = [*root.rglob("*_bold.nii.gz"), *root.rglob("*_T1w.nii.gz")]
    assert index.prefetch(3) == len(jsons) + len(images) == index.reads
    assert index.prefetch(3) == 0  # nothing left to read
    with monkeypatch.context() as m:
        _no_reading(m)  # discovery asks for nothing the prefetch did not read
        assert index.header(images[0]).shape is not None
        assert index.metadata(bold_path(root, run="01", echo=1))["EchoTime"] > 0


def test_an_edited_sidecar_is_found(tmp_path: Path, root: Path) -> None:
    cache = tmp_path / "cache"
    assert discover(root, cache_dir=cache).runs[0].repetition_time == pytest.approx(1.9)
    for echo in (1, 2, 3):
        for part in ("mag", "phase"):
            edit_sidecar(bold_path(root, run="01", echo=echo, part=part), RepetitionTime=2.0)
            edit_sidecar(bold_path(root, run="02", echo=echo, part=part), RepetitionTime=2.0)
    assert discover(root, cache_dir=cache).runs[0].repetition_time == pytest.approx(2.0)


def test_trusted_cache_skips_the_walk(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster job reuses the main process's dataset without walking the tree; with no
    cache it discovers as usual."""
    cache = tmp_path / "cache"
    assert len(discover(root, cache_dir=cache, trust_cache=True).runs) == 2  # no cache yet
    first = discover(root, cache_dir=cache)

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked")

    monkeypatch.setattr(bids_index, "walk", no_walk)
    assert discover(root, cache_dir=cache, trust_cache=True) == first


def test_unselected_subjects_and_sessions_are_not_read(tmp_path: Path) -> None:
    """participant_label and sessions: the others are not walked, so nothing of them is
    read (here: broken beyond repair, and no problem reported)."""
    root = make_bids_tree(tmp_path / "ds", subjects=("01", "02"), sessions=("01", "02"))
    for sub, ses in (("02", "01"), ("01", "02")):
        corrupt(bold_path(root, sub=sub, ses=ses, run="01", echo=1))
        sidecar_path(bold_path(root, sub=sub, ses=ses, run="02", echo=2)).write_text("{")
    ds = discover(root, participant_label=["01"], sessions=["01"])
    assert [(r.subject, r.session) for r in ds.runs] == [("01", "01")] * 2
    assert ds.t1w == {"01": t1w_path(root, "01", "01")}


def test_cache_inside_dataset_is_not_indexed(root: Path) -> None:
    cache = root / "derivatives" / "work" / "bids_index"
    first = discover(root, cache_dir=cache)
    assert discover(root, cache_dir=cache) == first
    assert len(list(cache.glob("dataset-*.pickle"))) == 1


def test_read_only_input_is_not_written(tmp_path: Path, root: Path) -> None:
    ro = tmp_path / "readonly"
    shutil.copytree(root, ro)
    set_read_only(ro)
    try:
        before = snapshot(ro)
        assert len(discover(ro).runs) == 2
        assert len(discover(ro, cache_dir=tmp_path / "cache").runs) == 2
        assert len(discover(ro, cache_dir=tmp_path / "cache").runs) == 2
        assert snapshot(ro) == before
        assert not (ro.stat().st_mode & 0o222)
    finally:
        set_read_only(ro, read_only=False)


def test_helper_events_and_sidecars(root: Path) -> None:
    header = events_path(root).read_text().splitlines()[0]
    assert header.split("\t") == ["onset", "duration", "trial_type", "stim_name"]
    import json

    meta = json.loads(sidecar_path(bold_path(root, echo=2)).read_text())
    assert meta["EchoTime"] == 0.02882 and meta["RepetitionTime"] == 1.9
    assert {"SliceTiming", "PhaseEncodingDirection", "TotalReadoutTime"} <= set(meta)
    import nibabel as nib

    img = nib.load(bold_path(root))
    assert img.shape == (*SHAPE, NVOL) and img.get_data_dtype() == np.int16
    assert np.allclose(img.affine, default_affine(SHAPE))


# --------------------------------------------------------------------------------------
# fieldmaps and phase encoding
# --------------------------------------------------------------------------------------


def test_fieldmap_matched_by_intended_for_with_phase_encoding(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", fieldmap=True)
    ds = discover(root)
    for run in ds.runs:
        fm = run.fieldmap
        assert fm is not None and fm.kind == "phasediff"
        assert fm.image == fmap_path(root, "phasediff", run=run.run)
        assert fm.magnitude == fmap_path(root, "magnitude1", run=run.run)
        assert (fm.echo_time1, fm.echo_time2) == (0.00408, 0.0051)
        assert run.pe_direction == "j-" and run.total_readout_time == pytest.approx(0.0383)
    assert discover(root, use_fieldmaps=False).runs[0].fieldmap is None


def test_fieldmap_matched_by_run_entity_without_intended_for(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", fieldmap=True)
    for run in ("01", "02"):
        edit_sidecar(fmap_path(root, "phasediff", run=run), IntendedFor=None)
    ds = discover(root)
    assert [r.fieldmap.image.name for r in ds.runs] == [
        "sub-01_ses-01_run-01_phasediff.nii.gz",
        "sub-01_ses-01_run-02_phasediff.nii.gz",
    ]


def test_b0_field_source_names_the_fieldmap_before_intended_for(tmp_path: Path) -> None:
    """BIDS 1.7's B0FieldIdentifier (fieldmap) and B0FieldSource (BOLD; a string or a list):
    they choose a run's fieldmap before IntendedFor does (here crossed against it), and the
    plan's line counts them by their rule; a run without B0FieldSource keeps IntendedFor."""
    root = make_bids_tree(tmp_path / "ds", runs=("01", "02", "03"), fieldmap=True)
    edit_sidecar(fmap_path(root, "phasediff", run="01"), B0FieldIdentifier="fm_b")
    edit_sidecar(fmap_path(root, "phasediff", run="02"), B0FieldIdentifier=["fm_a", "other"])
    for echo in (1, 2, 3):
        edit_sidecar(bold_path(root, run="01", echo=echo), B0FieldSource="fm_a")
        edit_sidecar(bold_path(root, run="02", echo=echo), B0FieldSource=["fm_b"])
    plan = make_plan(root, tmp_path / "p")
    rules = [r.fieldmap.rule for r in plan.dataset.runs]
    assert rules == ["B0FieldSource", "B0FieldSource", "IntendedFor"]
    assert [r.fieldmap.image for r in plan.dataset.runs] == [
        fmap_path(root, "phasediff", run="02"),
        fmap_path(root, "phasediff", run="01"),
        fmap_path(root, "phasediff", run="03"),
    ]
    assert plan.sdc_summary() == (
        "Distortion correction: 3 of 3 run(s) with their fieldmap (phasediff; 2 by "
        "B0FieldSource, 1 by IntendedFor)."
    )


def test_readout_time_from_effective_echo_spacing(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", runs=("01",))
    for e in (1, 2, 3):
        for part in ("mag", "phase"):
            edit_sidecar(
                bold_path(root, echo=e, part=part),
                TotalReadoutTime=None,
                EffectiveEchoSpacing=0.001,
            )
    (run,) = discover(root).runs
    assert run.total_readout_time == pytest.approx(0.001 * (SHAPE[1] - 1))  # j: 7 lines


def test_phasediff_without_echo_times(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", runs=("01",), fieldmap=True)
    edit_sidecar(fmap_path(root, "phasediff"), EchoTime2=None)
    (p,) = problems_of(root)
    assert p.file.endswith("fmap/sub-01_ses-01_run-01_phasediff.json")
    assert p.expected == "EchoTime1 < EchoTime2 in seconds (e.g. 0.00408 and 0.0051)"
    assert p.found == "EchoTime1 = 0.00408, EchoTime2 = None"
    assert "spatial.fieldmap: false" in p.fix
    discover(root, use_fieldmaps=False)  # fine without distortion correction


def test_fieldmap_needs_phase_encoding_metadata(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", runs=("01",), fieldmap=True)
    for e in (1, 2, 3):
        for part in ("mag", "phase"):
            edit_sidecar(bold_path(root, echo=e, part=part), PhaseEncodingDirection="y")
    found = problems_of(root, n=2)
    assert found[0].expected.startswith("PhaseEncodingDirection one of i, i-, j, j-, k, k-")
    assert found[0].found == "PhaseEncodingDirection = 'y'"
    assert found[1].expected.startswith("PhaseEncodingDirection and TotalReadoutTime")

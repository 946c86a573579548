"""A corpus of legal and broken input datasets, each planned with ``snakemake -n`` (issue 25).

Every case starts from the same header-only 2-session, 2-run dataset (LAION layout) and changes
one thing (or several, to check that they are reported together). Legal cases plan (exit 0;
warnings named where the data are unusual); broken ones are refused at plan time with every
problem in one message, each naming its file, and no Python traceback frame. A broken case that
would have planned before the issue (events content, a truncated .nii.gz, label columns that
disagree between runs, ...) is marked in its name.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from echoprep.io.paths import sidecar_path
from helpers.bidstree import (
    bold_path,
    default_affine,
    edit_sidecar,
    events_path,
    make_bids_tree,
    name_phase_as_before_bids_1_5,
    remove,
    t1w_path,
    write_json,
    write_nifti,
)
from helpers.snake import job_counts, snakemake

SHAPE = (6, 7, 5)
N_VOLUMES = 12
TR = 1.9
HEADER = "onset\tduration\ttrial_type\tstim_name"


@dataclass(frozen=True)
class Case:
    """One dataset variant: ``build(root)`` edits the base tree and returns config overrides;
    ``expect``: texts the output must hold (the problems' or warnings' essentials);
    ``problems``: how many problems the one message lists (None: not a BIDS problem list)."""

    build: Callable[[Path], dict[str, object] | None]
    legal: bool
    expect: tuple[str, ...] = ()
    problems: int | None = None
    tree: dict[str, object] = field(default_factory=dict)
    folder: str = "bids"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _set_events(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join([HEADER, *rows]) + "\n")


def _edit_cell(path: Path, row: int, column: int, value: str) -> None:
    """Set one cell of an events file (``row`` 1 = the first event, ``column`` 0 = onset)."""
    lines = _lines(path)
    fields = lines[row].split("\t")
    fields[column] = value
    lines[row] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _edit_onset(path: Path, row: int, value: str) -> None:
    _edit_cell(path, row, 0, value)


def _run_images(root: Path, ses: str, run: str) -> list[Path]:
    return [
        bold_path(root, ses=ses, run=run, echo=e, part=p)
        for e in (1, 2, 3)
        for p in ("mag", "phase")
    ]


def _rewrite_run(root: Path, ses: str, run: str, shape: tuple[int, ...], **kw: object) -> None:
    for img in _run_images(root, ses, run):
        write_nifti(img, shape, default_affine(SHAPE), data=False, tr=TR, **kw)  # type: ignore[arg-type]


def _nothing(root: Path) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# legal variants


def _magnitude_only(root: Path) -> None:
    shutil.rmtree(root)
    make_bids_tree(root, sessions=("01", "02"), runs=("01", "02"), data=False, phase=False)


def _no_sessions(root: Path) -> None:
    shutil.rmtree(root)
    make_bids_tree(root, sessions=(None,), runs=("01", "02"), data=False)


def _one_run_without_run_entity(root: Path) -> None:
    shutil.rmtree(root)
    make_bids_tree(root, sessions=("01", "02"), runs=(None,), data=False)


def _with_fieldmaps(root: Path) -> None:
    shutil.rmtree(root)
    make_bids_tree(root, sessions=("01", "02"), runs=("01", "02"), data=False, fieldmap=True)


def _unequal_run_lengths(root: Path) -> None:
    _rewrite_run(root, "02", "01", (*SHAPE, 15))


def _extra_folders(root: Path) -> None:
    for folder in ("derivatives/fmriprep", "sourcedata/dicom", "code"):
        (root / folder).mkdir(parents=True)
        (root / folder / "README").write_text("not raw data\n")


def _inherited_repetition_time(root: Path) -> None:
    for img in root.rglob("*_bold.nii.gz"):
        edit_sidecar(img, RepetitionTime=None)
    write_json(root / "task-images_bold.json", {"RepetitionTime": TR})


def _negative_onset(root: Path) -> None:
    lines = _lines(events_path(root, ses="02", run="01"))
    lines.insert(1, "-4.0\t2.5\tnew\timg0009.jpg")
    events_path(root, ses="02", run="01").write_text("\n".join(lines) + "\n")


def _all_blank_run(root: Path) -> None:
    rows = [f"{3.0 * i:.1f}\t2.5\tblank\tn/a" for i in range(5)]
    _set_events(events_path(root, ses="01", run="02"), rows)


def _events_without_rows(root: Path) -> None:
    _set_events(events_path(root, ses="02", run="02"), [])


def _trial_type_only(root: Path) -> None:
    for ev in root.rglob("*_events.tsv"):
        lines = [line.rsplit("\t", 1)[0] for line in _lines(ev)]
        ev.write_text("\n".join(lines) + "\n")


def _excluded_run_without_events(root: Path) -> dict[str, object]:
    remove(events_path(root, ses="02", run="02"))
    return {"exclude_runs": "[sub-01_ses-02_run-02]"}


def _header_tr_differs(root: Path) -> None:
    for img in _run_images(root, "01", "01"):
        write_nifti(img, (*SHAPE, N_VOLUMES), default_affine(SHAPE), data=False, tr=1.0)


def _multi_member_gzip(root: Path) -> None:
    img = bold_path(root, ses="01", run="01", echo=1, part="mag")
    write_nifti(img, (*SHAPE, N_VOLUMES), default_affine(SHAPE), tr=TR)
    raw = gzip.decompress(img.read_bytes())
    img.write_bytes(gzip.compress(raw[:400]) + gzip.compress(raw[400:]))


def _extra_event_columns(root: Path) -> None:
    for ev in root.rglob("*_events.tsv"):
        lines = _lines(ev)
        ev.write_text(
            "\n".join([lines[0] + "\tresponse_time"] + [f"{x}\tn/a" for x in lines[1:]]) + "\n"
        )


def _duration_na(root: Path) -> None:
    _edit_cell(events_path(root, ses="01", run="01"), 1, 1, "n/a")


def _native_space_without_t1w(root: Path) -> dict[str, object]:
    remove(t1w_path(root, "01", "01"))
    return {"spatial": "{output_space: native}"}


def _output_below_derivatives(root: Path) -> dict[str, object]:
    return {"output_dir": root / "derivatives" / "echoprep"}


def _run_acquired_twice(root: Path) -> None:
    """ses-01 run-01 also as acq-fast (its own files, the run's events inherited)."""
    for f in sorted((root / "sub-01/ses-01/func").glob("*_run-01_*bold*")):
        shutil.copy(f, f.with_name(f.name.replace("_run-01", "_acq-fast_run-01")))


def _two_echoes(root: Path) -> None:
    shutil.rmtree(root)
    make_bids_tree(
        root, sessions=("01", "02"), runs=("01", "02"), data=False, echoes=(0.011, 0.028)
    )


def _echo_counts_differ(root: Path) -> None:
    """ses-02 run-02 lost its last echo in conversion; ses-01 run-02 has a fourth."""
    remove(*(bold_path(root, ses="02", run="02", echo=3, part=p) for p in ("mag", "phase")))
    for part in ("mag", "phase"):
        extra = bold_path(root, ses="01", run="02", echo=4, part=part)
        write_nifti(extra, (*SHAPE, N_VOLUMES), default_affine(SHAPE), data=False)
        write_json(sidecar_path(extra), {"EchoTime": 0.0644, "RepetitionTime": 1.9})


def _t1w_rescanned(root: Path) -> dict[str, object]:
    """A rescan of the T1w (run-02 beside the original, renamed run-01), the second chosen."""
    t1w = t1w_path(root, "01", "01")
    for run in ("01", "02"):
        shutil.copy(t1w, t1w.with_name(f"sub-01_ses-01_run-{run}_T1w.nii.gz"))
    remove(t1w)
    return {"anatomy": {"t1w": {"run": 2}}}


def _phase_suffix_before_bids_1_5(root: Path) -> None:
    """Part-less magnitude and ``_phase`` phase images (BIDS < 1.5) in every run."""
    name_phase_as_before_bids_1_5(root)


def _native_grids_differ(root: Path) -> dict[str, object]:
    """ses-02 run-02 on another matrix, with spatial preprocessing off."""
    for img in _run_images(root, "02", "02"):
        write_nifti(img, (6, 7, 4, N_VOLUMES), default_affine(SHAPE), data=False)
    for e in (1, 2, 3):
        for part in ("mag", "phase"):
            side = sidecar_path(bold_path(root, ses="02", run="02", echo=e, part=part))
            meta = json.loads(side.read_text())
            if "SliceTiming" in meta:
                meta["SliceTiming"] = meta["SliceTiming"][:4]
            write_json(side, meta)
    return {"spatial": {"enabled": False}}


def _t1w_entities_matching_none(root: Path) -> dict[str, object]:
    return {"anatomy": {"t1w": {"acq": "UNI"}}}


def _another_tr_resampled(root: Path) -> dict[str, object]:
    for e in (1, 2, 3):
        for part in ("mag", "phase"):
            edit_sidecar(bold_path(root, ses="02", run="02", echo=e, part=part), RepetitionTime=2.1)
    for img in _run_images(root, "02", "02"):
        write_nifti(img, (*SHAPE, N_VOLUMES), default_affine(SHAPE), data=False, tr=2.1)
    return {"spatial": {"tr_out": 1.0}}


def _close_trials_on_an_upsampled_grid(root: Path) -> dict[str, object]:
    """Trials 0.9 s apart share a volume at TR 1.9 s, not on the 1.0-s grid slice timing
    resamples to (``spatial.tr_out``): the plan checks the GLM's grid."""
    lines = _lines(events_path(root, ses="01", run="01"))
    lines.insert(3, "3.9\t0.5\tnew\timg0007.jpg")
    events_path(root, ses="01", run="01").write_text("\n".join(lines) + "\n")
    return {"spatial": "{tr_out: 1.0}"}


def _label_column_configured(root: Path) -> dict[str, object]:
    return {"glm": "{label_column: trial_type}"}


# ---------------------------------------------------------------------------------------------
# broken variants


def _missing_echo(root: Path) -> None:
    remove(bold_path(root, ses="02", run="02", echo=3, part="mag"))


def _phase_for_some_echoes_only(root: Path) -> None:
    remove(bold_path(root, ses="02", run="02", echo=3, part="phase"))


def _na_onset(root: Path) -> None:
    _edit_onset(events_path(root, ses="01", run="01"), 2, "n/a")


def _empty_events_file(root: Path) -> None:
    events_path(root, ses="01", run="02").write_text("")


def _three_problems(root: Path) -> None:
    _missing_echo(root)
    _na_onset(root)
    _empty_events_file(root)


def _onset_past_end(root: Path) -> None:
    lines = _lines(events_path(root, ses="02", run="01"))
    lines.append("30.0\t2.5\told\timg0001.jpg")
    events_path(root, ses="02", run="01").write_text("\n".join(lines) + "\n")


def _comma_separated_events(root: Path) -> None:
    ev = events_path(root, ses="01", run="01")
    ev.write_text(ev.read_text().replace("\t", ","))


def _missing_events(root: Path) -> None:
    remove(events_path(root, ses="02", run="02"))


def _stim_name_missing_in_one_run(root: Path) -> None:
    ev = events_path(root, ses="02", run="01")
    ev.write_text("\n".join(line.rsplit("\t", 1)[0] for line in _lines(ev)) + "\n")


def _configured_label_column_missing(root: Path) -> dict[str, object]:
    return {"glm": "{label_column: image}"}


def _nothing_to_model_in_a_session(root: Path) -> None:
    for run in ("01", "02"):
        _set_events(events_path(root, ses="02", run=run), ["0.0\t2.5\tblank\tn/a"])


def _two_trials_on_one_volume(root: Path) -> None:
    lines = _lines(events_path(root, ses="01", run="01"))
    lines.insert(2, "0.5\t2.5\tnew\timg0007.jpg")
    events_path(root, ses="01", run="01").write_text("\n".join(lines) + "\n")


def _off_grid_with_a_tolerance(root: Path) -> dict[str, object]:
    # the tree's onsets are up to 0.9 s from a volume (3-s trials, TR 1.9 s); 2.85 s is 0.95 s
    _edit_onset(events_path(root, ses="01", run="02"), 2, "2.85")
    return {"glm": "{onset_tolerance: 0.905}"}


def _ragged_events_row(root: Path) -> None:
    ev = events_path(root, ses="01", run="01")
    ev.write_text(ev.read_text() + "9.0\t2.5\tnew\timg0001.jpg\textra\n")


def _duration_not_a_number(root: Path) -> None:
    _edit_cell(events_path(root, ses="02", run="01"), 1, 1, "long")


def _truncated_gzip(root: Path) -> None:
    img = bold_path(root, ses="01", run="02", echo=2, part="mag")
    write_nifti(img, (*SHAPE, N_VOLUMES), default_affine(SHAPE), tr=TR)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])


def _phase_only_run_with_fieldmaps(root: Path) -> None:
    _with_fieldmaps(root)
    for e in (1, 2, 3):
        remove(bold_path(root, ses="01", run="02", echo=e, part="mag"))


def _tr_missing(root: Path) -> None:
    for img in _run_images(root, "01", "01"):
        edit_sidecar(img, RepetitionTime=None)


def _te_in_ms(root: Path) -> None:
    for e, te in zip((1, 2, 3), (11.0, 28.82, 46.62), strict=True):
        for p in ("mag", "phase"):
            edit_sidecar(bold_path(root, ses="01", run="01", echo=e, part=p), EchoTime=te)


def _three_d_bold(root: Path) -> None:
    _rewrite_run(root, "02", "02", SHAPE)


def _echo_grid_mismatch(root: Path) -> None:
    img = bold_path(root, ses="01", run="01", echo=2, part="mag")
    write_nifti(img, (*SHAPE, N_VOLUMES), default_affine(SHAPE, 2.0), data=False, tr=TR)


def _bad_json(root: Path) -> None:
    side = (
        bold_path(root, ses="01", run="01", echo=1, part="mag").with_suffix("").with_suffix(".json")
    )
    side.write_text('{"EchoTime": 0.011, "RepetitionTime": 1.9,,}')


def _volume_count_mismatch(root: Path) -> None:
    img = bold_path(root, ses="02", run="01", echo=3, part="mag")
    write_nifti(img, (*SHAPE, N_VOLUMES - 2), default_affine(SHAPE), data=False, tr=TR)


def _slice_timing_length(root: Path) -> None:
    for img in _run_images(root, "01", "02"):
        edit_sidecar(img, SliceTiming=[0.0, 0.5, 1.0])


def _slice_timing_missing(root: Path) -> None:
    for img in _run_images(root, "01", "02"):
        edit_sidecar(img, SliceTiming=None)


def _echo_times_changed_in_a_session(root: Path) -> None:
    for run in ("01", "02"):
        for e, te in zip((1, 2, 3), (0.0112, 0.0291, 0.0470), strict=True):
            for p in ("mag", "phase"):
                edit_sidecar(bold_path(root, ses="02", run=run, echo=e, part=p), EchoTime=te)


def _subject_with_anatomy_only(root: Path) -> None:
    for func in root.glob("sub-02/ses-*/func"):
        shutil.rmtree(func)


def _output_inside_bids(root: Path) -> dict[str, object]:
    return {"output_dir": root / "results"}


def _work_inside_bids(root: Path) -> dict[str, object]:
    return {"work_dir": root / "work"}


def _unknown_participant(root: Path) -> dict[str, object]:
    return {"participant_label": "[02]"}


def _participant_as_number(root: Path) -> dict[str, object]:
    return {"participant_label": "01"}


def _malformed_exclude_runs(root: Path) -> dict[str, object]:
    return {"exclude_runs": "[run02]"}


def _two_tasks(root: Path) -> None:
    make_bids_tree(root, sessions=("01", "02"), runs=("01",), data=False, task="rest")


def _t1w_missing(root: Path) -> None:
    remove(t1w_path(root, "01", "01"))


def _inf_onset(root: Path) -> None:
    _edit_onset(events_path(root, ses="02", run="02"), 1, "inf")


def _events_and_bold_problems_together(root: Path) -> None:
    _tr_missing(root)
    _inf_onset(root)
    _stim_name_missing_in_one_run(root)


CASES: dict[str, Case] = {
    # legal
    "baseline": Case(_nothing, True),
    "magnitude_only": Case(_magnitude_only, True),
    "no_sessions": Case(_no_sessions, True),
    "runs_without_run_entity": Case(_one_run_without_run_entity, True),
    "fieldmaps": Case(_with_fieldmaps, True, ("Distortion correction: 4 of 4 run(s)",)),
    "slice_timing_missing": Case(
        _slice_timing_missing,
        True,
        ("Slice timing: 3 of 4 run(s) corrected; 1 without SliceTiming", "run-02"),
    ),
    "subject_with_anatomy_only": Case(
        _subject_with_anatomy_only,
        True,
        ("1 subject(s) without BOLD runs of task-images left out: sub-02",),
        tree={"subjects": ("01", "02")},
    ),
    "echo_times_changed_in_a_session": Case(
        _echo_times_changed_in_a_session,
        True,
        ("for echo-1, where 2 of the 4 runs of sub-01 have", "and 1 more run(s)"),
    ),
    "unequal_run_lengths": Case(_unequal_run_lengths, True),
    "extra_folders": Case(_extra_folders, True),
    "inherited_repetition_time": Case(_inherited_repetition_time, True),
    "onset_past_run_end": Case(
        _onset_past_end,
        True,
        (
            "1 trial(s) start after the last volume of sub-01 ses-02 task-images run-01 or "
            "less than 5 s before it (12 volumes x 1.9 s",
            "the GLM leaves them out",
            "'exclude_runs=[sub-01_ses-02_task-images_run-01]'",
        ),
    ),
    "negative_onset_new": Case(
        _negative_onset, True, ("1 trial(s) start before the first volume",)
    ),
    "all_blank_run_new": Case(
        _all_blank_run, True, ("run-02 is preprocessed but left out of its session's GLM",)
    ),
    "events_without_rows_new": Case(_events_without_rows, True, ("no trial to model (no events)",)),
    "trial_type_only_new": Case(
        _trial_type_only, True, ("trial conditions come from trial_type in all 4 runs",)
    ),
    "excluded_run_without_events_new": Case(_excluded_run_without_events, True),
    "header_tr_differs_new": Case(
        _header_tr_differs,
        True,
        ("RepetitionTime differs between sidecar and NIfTI header in sub-01 ses-01",),
    ),
    "multi_member_gzip_new": Case(_multi_member_gzip, True),
    "extra_event_columns": Case(_extra_event_columns, True),
    "duration_na": Case(_duration_na, True),
    "native_space_without_t1w": Case(_native_space_without_t1w, True),
    "output_below_derivatives": Case(_output_below_derivatives, True),
    "label_column_configured": Case(_label_column_configured, True),
    "close_trials_on_an_upsampled_grid_new": Case(_close_trials_on_an_upsampled_grid, True),
    "spaces_in_paths": Case(_nothing, True, folder="my raw bids"),
    "run_acquired_twice_new": Case(_run_acquired_twice, True),
    "two_echoes_new": Case(
        _two_echoes, True, ("Echo handling: denoised left out of every variant",)
    ),
    "another_tr_resampled_new": Case(_another_tr_resampled, True),
    "t1w_rescanned_new": Case(_t1w_rescanned, True),
    "echo_counts_differ_new": Case(
        _echo_counts_differ,
        True,
        ("differ in their number of echoes", "Echo handling: denoised left out"),
    ),
    "two_tasks": Case(_two_tasks, True, ("Processing task-images", "--config task=rest")),
    "phase_for_some_echoes_only_new": Case(
        _phase_for_some_echoes_only, True, ("processed magnitude-only",)
    ),
    # broken
    "missing_echo": Case(_missing_echo, False, ("run-02_echo-3_part-phase_bold.nii.gz",), 1),
    "na_onset_new": Case(_na_onset, False, ("found 'n/a' on line 3",), 1),
    "empty_events_file_new": Case(
        _empty_events_file, False, ("run-02_events.tsv", "found an empty file"), 1
    ),
    "three_problems_in_one_round_new": Case(
        _three_problems,
        False,
        ("found 'n/a' on line 3", "found an empty file", "no magnitude image for echo-3"),
        3,
    ),
    "comma_separated_events": Case(_comma_separated_events, False, ("tabs, not commas",), 1),
    "missing_events": Case(
        _missing_events, False, ("--config 'exclude_runs=[sub-01_ses-02_task-images_run-02]'",), 1
    ),
    "stim_name_missing_in_one_run_new": Case(
        _stim_name_missing_in_one_run,
        False,
        ("stim_name values naming each trial's condition, as in 3 of the 4 runs",),
        1,
    ),
    "configured_label_column_missing_new": Case(
        _configured_label_column_missing,
        False,
        ("the condition column 'image' (config glm.label_column)",),
        4,
    ),
    "nothing_to_model_in_a_session_new": Case(
        _nothing_to_model_in_a_session, False, ("at least one trial to model in the runs of",), 1
    ),
    "two_trials_on_one_volume_new": Case(
        _two_trials_on_one_volume, False, ("at most one trial per volume",), 1
    ),
    "off_grid_with_a_tolerance_new": Case(
        _off_grid_with_a_tolerance,
        False,
        ("onsets within 0.905 s of a volume", "found onset 2.85 s"),
        1,
    ),
    "ragged_events_row_new": Case(_ragged_events_row, False, ("found 5 on line",), 1),
    "duration_not_a_number_new": Case(
        _duration_not_a_number, False, ("numeric duration values in seconds; found 'long'",), 1
    ),
    "truncated_gzip_new": Case(_truncated_gzip, False, ("a truncated or damaged gzip file",), 1),
    "phase_only_run_with_fieldmaps": Case(
        _phase_only_run_with_fieldmaps, False, ("found no magnitude image",), None
    ),
    "tr_missing": Case(_tr_missing, False, ("RepetitionTime",), None),
    "te_in_ms": Case(_te_in_ms, False, ("EchoTime",), None),
    "three_d_bold": Case(_three_d_bold, False, ("run-02",), None),
    "echo_grid_mismatch": Case(_echo_grid_mismatch, False, ("run-01_echo-2_part-mag",), None),
    "bad_json": Case(_bad_json, False, ("valid JSON",), None),
    "volume_count_mismatch": Case(_volume_count_mismatch, False, ("volumes",), None),
    "slice_timing_length": Case(_slice_timing_length, False, ("SliceTiming",), None),
    "output_inside_bids": Case(_output_inside_bids, False, ("output_dir",)),
    "work_inside_bids": Case(_work_inside_bids, False, ("work_dir",)),
    "unknown_participant": Case(_unknown_participant, False, ("sub-02",), 1),
    "participant_as_number": Case(_participant_as_number, False, ("participant_label",)),
    "malformed_exclude_runs_new": Case(_malformed_exclude_runs, False, ("'run02'",), 1),
    "t1w_missing": Case(_t1w_missing, False, ("output_space: native",), 1),
    "phase_suffix_before_bids_1_5_new": Case(
        _phase_suffix_before_bids_1_5, True, ("named with the suffix _phase",)
    ),
    "native_grids_differ_new": Case(
        _native_grids_differ, False, ("1 of the 4 runs of sub-01 on another grid",)
    ),
    "t1w_entities_matching_none_new": Case(
        _t1w_entities_matching_none, False, ("with the entities of anatomy.t1w (acq-UNI)",), 1
    ),
    "inf_onset_new": Case(_inf_onset, False, ("found 'inf' on line 2",), 1),
    "events_and_bold_problems_together_new": Case(
        _events_and_bold_problems_together,
        False,
        ("RepetitionTime", "found 'inf' on line 2", "stim_name values naming each trial's"),
        None,
    ),
}


def _plan(tmp_path: Path, case: Case) -> tuple[int, str]:
    root = tmp_path / case.folder
    make_bids_tree(root, sessions=("01", "02"), runs=("01", "02"), data=False, **case.tree)  # type: ignore[arg-type]
    config: dict[str, object] = {
        "bids_dir": root,
        "output_dir": tmp_path / "out put",
        "work_dir": tmp_path / "work dir",
    }
    config.update(case.build(root) or {})
    res = snakemake("-n", "--quiet", "rules", config=config)
    return res.returncode, res.stdout + res.stderr


def test_the_corpus_has_forty_cases_each_item_of_the_issue_among_them():
    legal = [n for n, c in CASES.items() if c.legal]
    broken = [n for n, c in CASES.items() if not c.legal]
    assert len(CASES) >= 40 and len(legal) >= 15 and len(broken) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_plans_or_is_refused_with_every_problem_at_once(tmp_path, name):
    case = CASES[name]
    code, out = _plan(tmp_path, case)
    assert "Traceback" not in out and not re.search(r'^\s*File ".*", line \d+', out, re.M), out
    for text in case.expect:
        assert text in out, f"{name}: {text!r} not in\n{out}"
    if case.legal:
        assert code == 0, out
        # (runs with different numbers of echoes get one nordic rule per count: nordic_3echoes)
        nordic = sum(
            n for rule, n in job_counts(out).items() if re.fullmatch(r"nordic(_\d+echoes)?", rule)
        )
        assert nordic >= 1, out
        return
    assert code != 0, out
    assert "WorkflowError" not in out and "Exception" not in out, out
    found = re.findall(r"^(\d+) problem\(s\) in the BIDS input", out, re.M)
    if case.problems is not None:
        assert found == [str(case.problems)], out
    else:
        assert len(found) <= 1, out  # never a second round of problems


def test_events_problems_come_with_the_others_in_one_message(tmp_path):
    """The issue's example: a missing echo, an n/a onset and an empty events file were three
    rounds; now one message lists the three, with the files named and no numpy repr."""
    code, out = _plan(tmp_path, CASES["three_problems_in_one_round_new"])
    assert code != 0 and "np.float64" not in out
    listed = re.findall(r"^\s+\d+\. (\S+): expected", out, re.M)
    assert len(listed) == 3 and len({Path(p).name for p in listed}) == 3, out
    json.dumps(listed)  # plain text

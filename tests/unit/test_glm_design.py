"""Designs for GLMsingle from events files: grid, labels, exclusions, and pinned errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoprep.io.events import (
    MIN_RESPONSE_S,
    build_session_design,
    read_events,
    read_events_columns,
    read_trials,
    stimulus_counts,
)
from echoprep.io.images import StageInputError
from echoprep.options import section_defaults

#: Trial types not modelled, as configured by default (glm.blank_trial_types).
BLANKS = section_defaults("glm")["blank_trial_types"]


def _events(path: Path, rows: list[tuple], header=("onset", "duration", "trial_type", "stim_name")):
    path.write_text("\t".join(header) + "\n" + "\n".join("\t".join(map(str, r)) for r in rows))
    return path


def test_design_on_the_grid_with_blanks_left_out(tmp_path: Path) -> None:
    a = _events(
        tmp_path / "run-1_events.tsv",
        [(4, 2.5, "new", "img2"), (2, 2.5, "new", "img1"), (7, 2.5, "blank", "n/a")],
    )
    b = _events(tmp_path / "run-2_events.tsv", [(1, 2.5, "old", "img1"), (3, 2.5, "new", "img3")])
    d = build_session_design(
        [a, b], [12, 10], 1.0, exclude_trial_types=BLANKS, run_labels=["01", "02"]
    )
    assert d.conditions == ["img1", "img2", "img3"]
    assert d.label_column == "stim_name" and d.excluded == 1
    # chronological: run 1 sorted by onset, then run 2
    assert d.trials["label"].tolist() == ["img1", "img2", "img1", "img3"]
    assert d.trials["beta_index"].tolist() == [0, 1, 2, 3]
    assert d.trials["run_label"].tolist() == ["01", "01", "02", "02"]
    assert [x.shape for x in d.designs] == [(12, 3), (10, 3)]
    assert np.argwhere(d.designs[0]).tolist() == [[2, 0], [4, 1]]
    assert np.argwhere(d.designs[1]).tolist() == [[1, 0], [3, 2]]
    assert d.max_rounding_error == 0 and d.stimulus_duration == 2.5


def test_numeric_labels_stay_the_files_text_in_every_run(tmp_path: Path) -> None:
    # "007" and "12" are stimulus names: read as numbers they became 7.0/12.0 in a run with a
    # blank (n/a makes the column float) and 7/12 in a run without, two conditions per image
    a = _events(tmp_path / "a.tsv", [(0, 1, "new", "007"), (2, 1, "blank", "n/a")])
    b = _events(tmp_path / "b.tsv", [(0, 1, "old", "007"), (2, 1, "new", "12")])
    d = build_session_design([a, b], [8, 8], 1.0, exclude_trial_types=BLANKS)
    assert d.conditions == ["007", "12"]
    assert d.trials["condition"].tolist() == [0, 0, 1]
    assert stimulus_counts([a, b], label_column=None, blank_trial_types=BLANKS) == {
        "007": 2,
        "12": 1,
    }


def test_events_columns_as_text(tmp_path: Path) -> None:
    path = tmp_path / "e.tsv"
    path.write_text("onset\tduration\tstim_name\tx\tx\n0\tn/a\t01\ta\n\n3.5\t2\tn/a\n")
    assert read_events_columns(path) == {
        "onset": ["0", "3.5"],
        "duration": [None, "2"],
        "stim_name": ["01", None],
        "x": ["a", None],
        "x.1": [None, None],
    }
    table = read_events(path)
    assert table["onset"].tolist() == [0.0, 3.5]
    assert np.isnan(table["duration"][0]) and table["duration"][1] == 2.0
    assert table["stim_name"].tolist() == ["01", None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("onset\tduration\nn/a\t1\n", r"expected numeric onsets in seconds; found 'n/a' on line 2"),
        (
            "onset\tduration\n0\tlong\n",
            r"numeric duration values in seconds; found 'long' on line 2",
        ),
        (
            "onset\tduration\n0\t1\t2\n",
            r"at most 2 tab-separated fields per row .* found 3 on line 2",
        ),
        ("", r"with a header row; found an empty file"),
    ],
)
def test_unreadable_events_are_refused_naming_the_line(tmp_path: Path, text, message) -> None:
    path = tmp_path / "sub-01_run-01_events.tsv"
    path.write_text(text)
    with pytest.raises(StageInputError, match=message) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: expected")


def test_off_grid_onsets_round_within_half_a_tr_and_record_the_error(tmp_path: Path) -> None:
    a = _events(tmp_path / "a.tsv", [(4, 2.5, "new", "x"), (7, 2.5, "new", "y")])
    d = build_session_design([a], [20], 1.9, exclude_trial_types=BLANKS)
    assert d.trials["onset_volume"].tolist() == [2, 4]  # 4/1.9 = 2.1, 7/1.9 = 3.7
    assert d.max_rounding_error == pytest.approx(abs(7 - 4 * 1.9))
    with pytest.raises(StageInputError, match=r"expected onsets within 0.1 s of a volume"):
        build_session_design([a], [20], 1.9, exclude_trial_types=BLANKS, onset_tolerance=0.1)


def test_trials_without_their_response_in_the_run_are_left_out(tmp_path: Path) -> None:
    # run 2 stopped after 12 volumes (0-11 s at TR 1 s) of the 20 its events were written for:
    # a trial needs MIN_RESPONSE_S (5 s) of data from its volume to the last; the trials at 6.6
    # s (4 s of data) and 13 s (none), and the blank at 15 s, are left out, nothing else changes
    assert MIN_RESPONSE_S == 5.0
    a = _events(tmp_path / "a.tsv", [(1, 1, "new", "img1"), (3, 1, "new", "img2")])
    b = _events(
        tmp_path / "b.tsv",
        [
            (0, 1, "old", "img1"),
            (5.6, 1, "new", "img3"),  # volume 6: 5 s of data after it, kept
            (6.6, 1, "old", "img2"),  # volume 7: 4 s
            (13, 1, "new", "img4"),  # after the last volume
            (15, 1, "blank", "n/a"),
        ],
    )
    d = build_session_design([a, b], [20, 12], 1.0, exclude_trial_types=BLANKS)
    assert d.late == 2 and d.early == 0 and d.excluded == 3  # 2 late + 1 blank
    assert d.trials["label"].tolist() == ["img1", "img2", "img1", "img3"]
    assert d.trials["onset_volume"].tolist() == [1, 3, 0, 6]
    assert d.conditions == ["img1", "img2", "img3"]  # img4 was shown only after the end
    assert np.argwhere(d.designs[1]).tolist() == [[0, 0], [6, 2]]
    assert d.max_rounding_error == pytest.approx(0.4)  # of the modelled trials only


def test_label_column_falls_back_to_trial_type_and_can_be_chosen(tmp_path: Path) -> None:
    a = _events(
        tmp_path / "a.tsv",
        [(0, 1, "face"), (2, 1, "house")],
        header=("onset", "duration", "trial_type"),
    )
    d = build_session_design([a], [8], 1.0, exclude_trial_types=())
    assert d.label_column == "trial_type" and d.conditions == ["face", "house"]
    with pytest.raises(StageInputError, match=r"expected the condition column 'stim'"):
        build_session_design([a], [5], 1.0, label_column="stim", exclude_trial_types=BLANKS)


@pytest.mark.parametrize(
    ("rows", "nvol", "message"),
    [
        (
            [(0, 1, "new", "a"), (0.4, 1, "new", "b")],
            8,
            r"at most one trial per volume; found onsets 0, 0.4 s",
        ),
        (
            [(9, 1, "new", "a")],
            5,
            r"expected at least one trial to model; found none after .* trials before the first "
            r"volume or less than 5 s before the last \(5 volumes x 1 s\)",
        ),
        ([(1, 1, "blank", "n/a")], 5, r"expected at least one trial to model"),
        ([("x", 1, "new", "a")], 5, r"expected numeric onsets in seconds; found 'x' on line 2"),
    ],
)
def test_bad_events_are_refused_naming_the_file(tmp_path: Path, rows, nvol, message) -> None:
    path = _events(tmp_path / "sub-01_run-01_events.tsv", rows)
    with pytest.raises(StageInputError, match=message) as err:
        build_session_design([path], [nvol], 1.0, exclude_trial_types=BLANKS)
    assert str(path) in str(err.value)


def test_missing_onset_column(tmp_path: Path) -> None:
    path = tmp_path / "e.tsv"
    path.write_text("time\tstim_name\n1\ta\n")
    with pytest.raises(StageInputError, match="expected an 'onset' column"):
        build_session_design([path], [5], 1.0, exclude_trial_types=BLANKS)


def test_trials_table_is_read_as_text_checked_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "trials.tsv"
    path.write_text("session\trun\tbeta_index\tlabel\n01\t02\t1\t007\n01\t01\t0\tn/a\n")
    table = read_trials(path, required=("beta_index", "label", "run"), sort=True)
    assert table["beta_index"].tolist() == [0, 1]
    assert table["run"].tolist() == ["01", "02"] and table["label"].tolist() == ["n/a", "007"]
    assert read_trials(path)["beta_index"].tolist() == [1, 0]
    with pytest.raises(
        StageInputError,
        match=r"trials.tsv: expected a GLMsingle trials table with columns "
        r"beta_index, label, onset; found \['session', 'run', 'beta_index', 'label'\]\. Fix: rerun",
    ):
        read_trials(path, required=("beta_index", "label", "onset"), fix="Fix: rerun")

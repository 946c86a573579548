"""Subjects of a dataset without BOLD runs of the task: left out with a warning, or a problem.

A BIDS dataset may hold subjects with only anatomy, only another task, or runs only in
sessions the ``sessions`` filter leaves out: legal, and nothing of theirs can be processed.
Such a subject is left out with a warning that names it and why, unless the user asked for it
by name (``participant_label``) or no subject has runs at all: then it is a problem, as is a
subject whose BOLD files are there but unusable (their own problems say why).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from echoprep.io.bids_checks import ProblemLog, fmt_list
from echoprep.io.bids_index import BidsFile


def subjects_with_runs(
    log: ProblemLog,
    subjects: Sequence[str],
    with_runs: Collection[str],
    subject_bolds: Callable[[str], list[BidsFile]],
    in_sessions: Callable[[BidsFile], bool],
    task_label: str | None,
    wanted_sessions: Sequence[str] | None,
    requested: bool,
    warnings: list[str],
) -> list[str]:
    """The selected subjects that stay in the dataset.

    Parameters
    ----------
    log
        Problems are added here.
    subjects
        The selected subjects (``participant_label`` minus ``exclude``).
    with_runs
        The subjects with at least one usable run of the task.
    subject_bolds
        Every BOLD file of a subject, in every session (also those the filter leaves out).
    in_sessions
        Whether a file lies in a selected session.
    task_label, wanted_sessions
        The task processed and the ``sessions`` filter (None: all).
    requested
        The subjects were named by ``participant_label``: a subject without runs is then a
        problem.
    warnings
        The warning for the subjects left out is appended here.

    Returns
    -------
    list of str
        ``subjects`` without those left out (all of them when any is a problem).
    """
    shown = task_label or "<label>"
    of_task = f" of task-{task_label}" if task_label else ""
    missing: list[tuple[str, str, bool]] = []  # subject, what was found, may be left out
    for sub in subjects:
        if sub in with_runs:
            continue
        sub_bolds = subject_bolds(sub)
        relevant = [f for f in sub_bolds if task_label is None or f.ent("task") == task_label]
        other_tasks = sorted({f.ent("task") or "?" for f in sub_bolds} - {task_label or ""})
        if relevant and wanted_sessions is not None and not any(map(in_sessions, relevant)):
            task_sessions = sorted({f.ent("ses") or "(none)" for f in relevant})
            found = (
                f"BOLD runs{of_task} only in session(s) {fmt_list(task_sessions)} "
                f"(selected: {fmt_list(wanted_sessions)})"
            )
            legal = True
        elif task_label is not None and other_tasks and not relevant:
            found, legal = f"BOLD files only of task(s) {fmt_list(other_tasks)}", True
        elif sub_bolds:
            found, legal = "BOLD files without usable echo files (see the problems above)", False
        else:
            found, legal = "no func/*_bold.nii[.gz] files", True
        missing.append((sub, found, legal))
    leave_out = not requested and len(missing) < len(subjects)
    for sub, found, legal in missing:
        if legal and leave_out:
            continue
        log.add(
            f"sub-{sub}/",
            f"at least one BOLD run of task-{shown} (sub-{sub}/[ses-<label>/]func/"
            f"sub-{sub}_[ses-<label>_]task-{shown}_run-<label>_echo-<index>_part-mag"
            "_bold.nii.gz)",
            found,
            f"add the subject's BOLD runs, or leave the subject out with exclude=['{sub}']",
        )
    out = [(sub, found) for sub, found, legal in missing if legal and leave_out]
    if not out:
        return list(subjects)
    named = fmt_list((f"sub-{sub} ({found})" for sub, found in out), 3, "; ")
    warnings.append(
        f"{len(out)} subject(s) without BOLD runs{of_task} left out: {named}. Nothing of "
        "theirs is processed, their anatomy neither. If their runs are missing by mistake, "
        "add them; --config 'exclude=[<label>]' leaves a subject out without this warning."
    )
    dropped = {sub for sub, _ in out}
    return [sub for sub in subjects if sub not in dropped]


__all__ = ["subjects_with_runs"]

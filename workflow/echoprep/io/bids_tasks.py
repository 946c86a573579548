"""Which task of a dataset is processed.

A BIDS dataset often holds more than one task: the experiment beside a resting-state scan or a
functional localizer. echoprep processes one task per configuration (its GLM models one
task's events; the config key ``task`` names it). Left unset, a dataset with one task needs
no choice; with several, the task with the most runs that have an ``events.tsv`` is processed
(then the one with the most runs, then the first label): the experiment with repeated
stimuli usually has many more runs than a localizer, and a resting-state scan has no events.
The dry run warns, naming the task chosen, the others and the setting that picks another. A
task that ``task`` names and the data lack is a problem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from echoprep.io.bids_checks import ProblemLog, fmt_list, strip_label
from echoprep.io.bids_index import BidsFile
from echoprep.io.bids_model import label_order
from echoprep.io.bids_run_checks import acquisition_of


def choose_task(
    log: ProblemLog,
    bolds: Sequence[BidsFile],
    has_events: Callable[[BidsFile], bool],
    task: str | None,
    warnings: list[str],
) -> tuple[str | None, bool]:
    """The task to process.

    Parameters
    ----------
    log
        A ``task`` the selected data lack is added here.
    bolds
        The selected BOLD files (every task).
    has_events
        Whether a BOLD file's run has an events file (inheritance applied).
    task
        The config key ``task`` (with or without the ``task-`` prefix); None: choose.
    warnings
        The choice among several tasks is appended here.

    Returns
    -------
    tuple of (str or None, bool)
        The task label (None when no selected file has one) and whether the requested task
        exists.
    """
    # one BOLD file per run and task: has_events is asked once a run, and only for a listing
    runs: dict[str, dict[tuple[object, ...], BidsFile]] = defaultdict(dict)
    for f in bolds:
        label = f.ent("task")
        if label is not None:
            key = (f.entities["sub"], f.ent("ses"), f.ent("run"), acquisition_of(f))
            runs[label].setdefault(key, f)
    tasks = sorted(runs, key=label_order)

    def listing(events: dict[str, int]) -> str:
        return fmt_list(
            f"task-{t} ({len(runs[t])} run{'' if len(runs[t]) == 1 else 's'}, "
            f"{events[t]} with events)"
            for t in tasks
        )

    def runs_with_events() -> dict[str, int]:
        return {t: sum(has_events(f) for f in runs[t].values()) for t in tasks}

    wanted = strip_label(task, "task")
    if wanted is not None:
        if wanted in runs:
            return wanted, True
        have = listing(runs_with_events()) if tasks else "no BOLD runs"
        log.add(
            f"sub-*/[ses-*/]func/*_task-{wanted}_*_bold.nii.gz",
            f"BOLD runs of task-{wanted} (requested by task)",
            f"no such task; the selected data have {have}",
            "set task to a label that exists (with or without the 'task-' prefix)"
            if tasks
            else "add the BOLD runs",
        )
        return None, False
    if len(tasks) <= 1:
        return (tasks[0] if tasks else None), True
    events = runs_with_events()
    chosen = min(tasks, key=lambda t: (-events[t], -len(runs[t]), label_order(t)))
    others = [t for t in tasks if t != chosen]
    warnings.append(
        f"The dataset has several tasks: {listing(events)}. Processing task-{chosen}, the one "
        "with the most runs that have events; to process another, set the config key task (e.g. "
        f"--config task={others[0]}; echoprep discover --task {others[0]} lists its runs)."
    )
    return chosen, True


__all__ = ["choose_task"]

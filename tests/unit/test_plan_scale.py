"""Planning grows linearly with the dataset: discovery and the plan's targets do work in
proportion to the number of runs, not runs × fieldmaps or runs × sessions.

The work is counted, not timed: the number of Python function calls (``sys.setprofile``) is
the same on every machine and load. ``benchmarks/plan_scale.py`` measures the times.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from echoprep.config import validate_config
from echoprep.io.bids import discover
from echoprep.plan import Plan
from helpers.bidstree import make_bids_tree

RUNS = [f"{i:02d}" for i in range(1, 5)]


def _calls(work: Callable[[], Any]) -> tuple[int, Any]:
    """Python function calls made by ``work()``, and its result."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profile)
    try:
        result = work()
    finally:
        sys.setprofile(None)
    return count, result


def _planning_calls(tmp: Path, n_sessions: int) -> tuple[int, int, int]:
    """Calls of a cold discovery (fieldmaps on) and of the plan's targets, and the runs."""
    sessions = [f"{i:02d}" for i in range(1, n_sessions + 1)]
    root = make_bids_tree(
        tmp / f"ds{n_sessions}", sessions=sessions, runs=RUNS, data=False, fieldmap=True
    )
    cfg = validate_config(
        {"bids_dir": str(root), "output_dir": str(tmp / "out"), "work_dir": str(tmp / "w")}
    )
    found, dataset = _calls(
        lambda: discover(root, cache_dir=tmp / f"w{n_sessions}", require_t1w=True)
    )
    planned, _ = _calls(lambda: Plan(cfg, dataset).targets())
    return found, planned, len(dataset.runs)


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[int, int, int]]:
    tmp = tmp_path_factory.mktemp("scale")
    _planning_calls(tmp, 1)  # first-use imports and caches are not work that grows
    return {n: _planning_calls(tmp, n) for n in (2, 16)}


def test_discovery_grows_linearly(counts: dict[int, tuple[int, int, int]]) -> None:
    (small, _, runs_small), (large, _, runs_large) = counts[2], counts[16]
    assert runs_large == 8 * runs_small
    # ×8 the runs (and ×8 the fieldmaps): at most ×8.8 the work. Matching every run against
    # every fieldmap of its subject is ×64 for that part (pybids did, and measured ×9.8 here)
    assert large / small <= 8.8, (small, large)


def test_plan_targets_grow_linearly(counts: dict[int, tuple[int, int, int]]) -> None:
    (_, small, _), (_, large, _) = counts[2], counts[16]
    assert large / small <= 8.8, (small, large)

"""The tests' Snakemake helper forks its runs from a process that has already imported
Snakemake and echoprep's planning modules (``helpers.snake._forked``): what a test reads from
such a run is what a fresh interpreter (``python -m snakemake``, as users run it) gives."""

from __future__ import annotations

import os
import re
from collections import Counter

import pytest

import helpers.snake as snake
from helpers.bidstree import make_bids_tree
from helpers.snake import job_counts, parse_jobs

pytestmark = pytest.mark.skipif(
    bool(os.environ.get(snake.NO_FORK)),
    reason=f"{snake.NO_FORK} is set: every run starts a fresh interpreter, no fork to compare",
)


def _both(monkeypatch, *args, **kwargs):
    """The same run forked (no fresh interpreter may start) and in a fresh interpreter."""
    with monkeypatch.context() as m:
        m.setattr(snake.subprocess, "run", _no_fresh_interpreter)
        forked = snake.snakemake(*args, **kwargs)
    with monkeypatch.context() as m:
        m.setenv(snake.NO_FORK, "1")
        fresh = snake.snakemake(*args, **kwargs)
    return forked, fresh


def _no_fresh_interpreter(*args, **kwargs):
    raise AssertionError(f"a fresh interpreter was started for {args}")


def _steady(text: str) -> str:
    """Output without what differs between any two runs (log file names, times)."""
    text = re.sub(r"\S*\.snakemake/log/\S+", "LOG", text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d{6}\.\d+|\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]", "TIME", text)


def test_a_forked_dry_run_plans_and_prints_what_a_fresh_interpreter_does(tmp_path, monkeypatch):
    bids = make_bids_tree(tmp_path / "bids", subjects=("01",), sessions=("01",), data=False)
    config = {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}
    forked, fresh = _both(monkeypatch, "-n", config=config)
    assert forked.returncode == fresh.returncode == 0, forked.stderr[-2000:]
    assert forked.args == fresh.args
    # the same jobs (Snakemake numbers and prints them in an order that differs between any
    # two interpreters: string hashing is salted per process)
    jobs = _jobs(forked.stdout + forked.stderr)
    assert sum(jobs.values()) > 20
    assert jobs == _jobs(fresh.stdout + fresh.stderr)
    assert job_counts(forked.stdout) == job_counts(fresh.stdout)
    assert _lines(forked.stderr) == _lines(fresh.stderr)


def _jobs(output: str) -> Counter:
    return Counter(
        (j.rule, j.wildcards, tuple(sorted(j.input)), tuple(sorted(j.output)))
        for j in parse_jobs(output)
    )


def _lines(text: str) -> Counter:
    return Counter(_steady(text).splitlines())


def test_a_refused_config_exits_and_explains_as_in_a_fresh_interpreter(tmp_path, monkeypatch):
    config = {"bids_dir": tmp_path / "missing", "output_dir": tmp_path / "out"}
    forked, fresh = _both(monkeypatch, "-n", config=config)
    assert forked.returncode == fresh.returncode != 0
    assert str(tmp_path / "missing") in forked.stdout + forked.stderr
    assert _lines(forked.stderr) == _lines(fresh.stderr)
    assert _lines(forked.stdout) == _lines(fresh.stdout)


def test_a_changed_environment_starts_the_forking_process_anew(monkeypatch):
    """Modules the forking process imported may have read its environment: once a test has
    changed the environment, the next run forks from a process started in the new one."""
    forkserver = snake.forkserver
    assert snake.snakemake("--version").returncode == 0
    server = forkserver._forkserver._forkserver_pid
    assert snake.snakemake("--version").returncode == 0
    assert forkserver._forkserver._forkserver_pid == server  # the same, while nothing changed
    monkeypatch.setenv("ECHOPREP_SOME_SETTING", "1")
    assert snake.snakemake("--version").returncode == 0
    assert forkserver._forkserver._forkserver_pid not in (None, server)
    assert snake._forks["environ"]["ECHOPREP_SOME_SETTING"] == "1"


def test_a_run_past_its_time_is_stopped(tmp_path):
    """The helper's timeout holds for a forked run as for ``subprocess.run``."""
    bids = make_bids_tree(tmp_path / "bids", subjects=("01",), sessions=("01",), data=False)
    config = {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}
    with pytest.raises(snake.subprocess.TimeoutExpired):
        snake.snakemake("-n", config=config, timeout=0.2)

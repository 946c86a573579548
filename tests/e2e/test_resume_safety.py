"""Interrupted runs resume to the same result; runs touch nothing but their own folders.

One module-scoped run of the tiny demo dataset (the ``demo`` fixture's raw data, read-only)
with the demo's configuration and command, from an empty working folder, with a private copy of
the workflow (Snakefile, rules, package, config: other people edit the shared checkout at the
same time) and with HOME and TMPDIR pointed at empty folders that are watched:

1. started, stopped with SIGTERM (to its whole process group, as Ctrl-C or a scheduler's
   time limit) once the first NORDIC output exists;
2. the same command again, killed with SIGKILL (node failure, OOM killer) once the first
   NORDIC-on echo-combination output exists;
3. the same command again: refused, Snakemake's lock is still there;
4. ``--unlock``, then the same command: finishes.

The run targets the workflow up to echo combination of the session's first run (the outputs
of :data:`UNTIL`'s rules for :data:`RUN`: the anatomy, the subject's functional grid, NORDIC,
spatial preprocessing and the three echo-handling variants, i.e. everything the two
interruption points lie in, without the other run's chain and the later per-session stages,
which are the same kinds of job and would only make it longer). Every output of that part is
compared with the uninterrupted ``demo`` run (image arrays, TSV contents, JSON sidecars without
timing fields and with the run folders replaced).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import pytest

from echoprep.io.paths import sidecar_path
from helpers.demo import (
    RUN_TIMEOUT,
    DemoRun,
    all_paths,
    compare_derivatives,
    copy_workflow,
    kill_group,
    new_paths,
    run_in_group,
    run_roots,
    state_changes,
    tree_state,
    workflow_command,
)
from helpers.snake import parse_jobs

pytestmark = pytest.mark.slow

#: Exceptions, and why:
#: - ``__pycache__`` anywhere in the workflow copy: Python's bytecode cache of the echoprep
#:   package (every import writes it; PYTHONDONTWRITEBYTECODE=1 or PYTHONPYCACHEPREFIX moves it);
#: - ``.cache/snakemake`` in HOME: Snakemake's own source cache (empty folders made at start;
#:   a killed Snakemake leaves a ``tmp*/file`` in it);
#: - ``snakemake*`` folders in TMPDIR: Snakemake's own scratch folder, removed when it exits,
#:   left (empty) by the SIGKILL.
ALLOWED_IN_HOME = (".cache", ".cache/snakemake")
#: The part of the workflow the interrupted runs make (``--until``): up to echo combination.
# tedana_nordic runs after tedana, which reads optcom's output (Snakemake's --until must not
# name a rule upstream of another named one: its jobs' consumers would be left out)
UNTIL = ("single_echo", "tedana_nordic")
#: The run whose chain is made: the demo's first (its chain also makes the subject's reference).
RUN = "run-01"
#: Seconds to wait for an interruption point.
POLL_TIMEOUT = 600


class Resumed(TypedDict):
    base: Path
    results: Path
    work: Path
    cwd: Path
    code: Path
    home: Path
    tmp: Path
    logs: dict[str, str]
    rc: dict[str, int]
    outputs_at_kill: dict[str, int]
    expected: set[str]
    lock_after_kill: list[str]
    new_in_code: list[str]
    seconds: float


def _isolated_env(home: Path, tmp: Path) -> dict[str, str]:
    """The test's environment with HOME and TMPDIR redirected (and nothing overriding where
    per-user caches and configs go, so that they land in the watched HOME)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("XDG_") and k not in {"MPLCONFIGDIR", "PYTHONDONTWRITEBYTECODE"}
    }
    return env | {"HOME": str(home), "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp)}


def _empty(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def _outputs(results: Path) -> set[str]:
    return {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()}


def _start_and_kill(
    cmd: list[str],
    log: Path,
    cwd: Path,
    env: dict[str, str],
    ready: Callable[[], bool],
    sig: int,
) -> tuple[int, str]:
    """Start ``cmd`` in its own process group; once ``ready()``, send ``sig`` to the group and
    wait until every process of it is gone. Fails if the run ends (or hangs) before that."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + POLL_TIMEOUT
        try:
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(
                        f"the run ended (exit {proc.returncode}) before it could be interrupted;"
                        f" end of {log}:\n{log.read_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no interruption point within {POLL_TIMEOUT} s; see {log}")
                time.sleep(0.05)
        finally:
            kill_group(proc, sig)
    return proc.returncode, log.read_text()


@pytest.fixture(scope="module")
def resumed(demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    base = tmp_path_factory.mktemp("resume")
    cwd, home, tmp = base / "cwd", base / "home", base / "tmp"
    for d in (cwd, home, tmp):
        d.mkdir()
    results, work = base / "results", base / "work"
    env = _isolated_env(home, tmp)
    code = copy_workflow(base / "code")
    code_before = all_paths(code)
    until = workflow_command(
        demo["bids"], results, work, "--cores", "2", "--until", *UNTIL, root=code
    )
    both_runs = run_in_group(
        [*until, "-n", "-p", "--forceall"], base / "0-until.log", timeout=300, cwd=cwd, env=env
    )
    assert both_runs[0] == 0, both_runs[1][-3000:]
    both_jobs = parse_jobs(both_runs[1])
    targets = sorted(
        f
        for job in both_jobs
        if job.rule in UNTIL and f"_{RUN}_" in Path(job.output[0]).name
        for f in job.output
    )
    assert targets, f"no {UNTIL} job of {RUN} in the plan"
    cmd = workflow_command(demo["bids"], results, work, "--cores", "2", *targets, root=code)
    planned = run_in_group(
        [*cmd, "-n", "-p", "--forceall"], base / "0-dry-run.log", timeout=300, cwd=cwd, env=env
    )
    assert planned[0] == 0, planned[1][-3000:]
    # the other run's chain is left out, the subject-level jobs are not
    planned_jobs = parse_jobs(planned[1])
    assert {j.rule for j in planned_jobs} == {j.rule for j in both_jobs}
    assert len(planned_jobs) < len(both_jobs)
    planned_outputs = {
        str(Path(f).relative_to(results))
        for job in planned_jobs
        for f in job.output
        if Path(f).is_relative_to(results)
    }
    # each job also writes its files' JSON sidecars, which it does not declare: a resumed run
    # must leave them as an uninterrupted one does (not stale ones of a killed job)
    written = planned_outputs | {str(sidecar_path(f)) for f in planned_outputs}
    # what stays once the run is over: temp() intermediates (the resampled echoes) are gone
    # in the uninterrupted run too
    expected = written & _outputs(demo["results"])
    assert len(expected) > len(planned_outputs) / 2, sorted(planned_outputs - expected)
    logs: dict[str, str] = {}
    rc: dict[str, int] = {}
    at_kill: dict[str, int] = {}
    t0 = time.monotonic()

    def first(pattern: str) -> Callable[[], bool]:
        return lambda: next(results.glob(pattern), None) is not None

    rc["sigterm"], logs["sigterm"] = _start_and_kill(
        cmd,
        base / "1-sigterm.log",
        cwd,
        env,
        first("nordic/sub-*/**/*_desc-nordic_bold.nii.gz"),
        signal.SIGTERM,
    )
    at_kill["sigterm"] = len(_outputs(results) & expected)
    rc["sigkill"], logs["sigkill"] = _start_and_kill(
        cmd,
        base / "2-sigkill.log",
        cwd,
        env,
        first("combine-nordic/sub-*/**/*.nii.gz"),
        signal.SIGKILL,
    )
    at_kill["sigkill"] = len(_outputs(results) & expected)
    locks = cwd / ".snakemake" / "locks"
    lock_after_kill = sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []
    rc["locked"], logs["locked"] = run_in_group(
        cmd, base / "3-same-command.log", timeout=300, cwd=cwd, env=env
    )
    rc["unlock"], logs["unlock"] = run_in_group(
        [*cmd, "--unlock"], base / "4-unlock.log", timeout=300, cwd=cwd, env=env
    )
    rc["resume"], logs["resume"] = run_in_group(
        cmd, base / "5-resume.log", timeout=RUN_TIMEOUT, cwd=cwd, env=env
    )
    return Resumed(
        base=base,
        results=results,
        work=work,
        cwd=cwd,
        code=code,
        home=home,
        tmp=tmp,
        logs=logs,
        rc=rc,
        outputs_at_kill=at_kill,
        expected=expected,
        lock_after_kill=lock_after_kill,
        new_in_code=new_paths(code, code_before),
        seconds=time.monotonic() - t0,
    )


def test_runs_were_interrupted_in_the_middle(resumed):
    """Outputs (of the uninterrupted run's list) present right after each kill: some, not all."""
    n, at_kill = len(resumed["expected"]), resumed["outputs_at_kill"]
    assert at_kill["sigterm"] <= at_kill["sigkill"] and 0 < at_kill["sigkill"] < n, (at_kill, n)
    assert resumed["rc"]["sigterm"] != 0 and resumed["rc"]["sigkill"] == -signal.SIGKILL


def test_after_sigterm_the_same_command_goes_on(resumed):
    """Snakemake stops its jobs, removes their partial outputs and releases its lock: the
    second run started without complaint and made progress (it was killed later on)."""
    assert "Directory cannot be locked" not in resumed["logs"]["sigkill"]
    assert "Building DAG of jobs" in resumed["logs"]["sigkill"]


def test_after_sigkill_the_same_command_asks_for_unlock(resumed):
    """A killed Snakemake leaves its lock: the same command is refused with the instruction
    to run --unlock (docs/cluster.md: after a hard kill, `snakemake --unlock` first)."""
    assert resumed["lock_after_kill"], "the SIGKILL left no lock"
    assert resumed["rc"]["locked"] != 0
    assert "Directory cannot be locked" in resumed["logs"]["locked"]
    assert "--unlock" in resumed["logs"]["locked"]
    assert resumed["rc"]["unlock"] == 0, resumed["logs"]["unlock"][-3000:]


def test_resumed_run_is_complete_and_identical_to_an_uninterrupted_run(resumed, demo):
    assert resumed["rc"]["resume"] == 0, resumed["logs"]["resume"][-5000:]
    assert "Directory cannot be locked" not in resumed["logs"]["resume"]
    diffs, kinds = compare_derivatives(
        demo["results"],
        resumed["results"],
        run_roots(demo["bids"], demo["results"], demo["work"]),
        run_roots(demo["bids"], resumed["results"], resumed["work"]),
        only=resumed["expected"],
    )
    assert diffs == []
    assert _outputs(resumed["results"]) == resumed["expected"]  # and nothing else
    assert kinds["image"] > 0 and kinds["tsv"] > 0 and kinds["json"] > 0, kinds
    incomplete = resumed["cwd"] / ".snakemake" / "incomplete"
    assert not incomplete.is_dir() or not any(incomplete.iterdir())


def test_interrupted_runs_left_the_input_dataset_untouched(resumed, demo):
    assert state_changes(demo["bids_before"], tree_state(demo["bids"])) == []


def test_nothing_is_written_outside_output_work_and_snakemake_folders(resumed):
    """Run from an empty folder with HOME and TMPDIR redirected: new files appear only in
    output_dir, work_dir, <cwd>/.snakemake and the exceptions named at the top."""
    assert (resumed["cwd"] / ".snakemake" / "metadata").is_dir()
    leaks = {
        "cwd": new_paths(resumed["cwd"], set(), skip=(".snakemake",)),
        "TMPDIR": [
            p
            for p in new_paths(resumed["tmp"], set())
            if not (p.startswith("snakemake") and "/" not in p and _empty(resumed["tmp"] / p))
        ],
        "HOME": [
            p
            for p in new_paths(resumed["home"], set(), skip=(".cache/snakemake",))
            if p not in ALLOWED_IN_HOME
        ],
        "workflow": [p for p in resumed["new_in_code"] if "__pycache__" not in Path(p).parts],
    }
    assert leaks == {"cwd": [], "TMPDIR": [], "HOME": [], "workflow": []}


def test_matplotlib_cache_stays_out_of_home(resumed):
    """tedana imports matplotlib, which caches its font list in ~/.cache/matplotlib unless
    MPLCONFIGDIR says otherwise (the rules' shell prefix points it into work_dir)."""
    assert [p for p in new_paths(resumed["home"], set()) if "matplotlib" in p] == []
    assert list((resumed["work"] / "tmp" / "matplotlib").glob("fontlist-*.json"))

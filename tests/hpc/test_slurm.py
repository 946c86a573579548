"""The tiny demo dataset through a real one-node SLURM cluster with ``profiles/slurm-ci``.

``tests/hpc/slurm_ci.sh start`` (session fixture ``slurm_cluster``) installs slurmctld, slurmd
and munge with apt-get where they are missing, writes the cluster's slurm.conf and munge key
into a temporary folder and starts the daemons from there; ``stop`` (fixture teardown, also
after failures) ends them by their PID files. Nothing under /etc is written (checked). The
clients (Snakemake's sbatch/squeue, scontrol here) find the cluster through ``SLURM_CONF`` and
the folder's ``bin/srun`` (:data:`Cluster` ``env``). The workflow then runs with
``snakemake --profile profiles/slurm-ci`` from an empty folder, with the job groups of the real
cluster profile (``profiles/slurm``; :func:`group_args`) and the ``demo`` fixture's
configuration, on its own copy of the demo's raw dataset (fixture ``slurm_dataset``: simulated
alike, byte for byte; the demo's own is changed for a while by another test, and the SLURM run
goes on in the other xdist worker at the same time as the demo run), and its derivatives are
compared with the local ``make demo`` run's. Needs root (packages, daemons); skipped otherwise,
saying why.

The SLURM run makes one variant's session fit (:data:`TARGETS`: NORDIC on, single echo; its
betas, noise ceiling, held-out fits and derivative folder), not the whole demo: 19 of its 92
jobs in 6 submissions, among them every per-run chain, tedana on both sides, the anatomy, jobs
submitted alone and local ones, and three of the real profile's four kinds of group job
(``subject``, ``run``, ``glm_fit``). The whole demo through the cluster cost about 850 CPU-s of
the default test pass's 3,400-3,700 (31 submissions, each a Snakemake start-up of its own;
docs/developing.md); what the rest of it would add is the same commands, which the local run
checks, and the ``planted`` group, which the dry run of the real profile forms
(``tests/workflow/test_resources.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest
import yaml

from helpers.demo import (
    compare_derivatives,
    run_in_group,
    run_roots,
    simulate_demo_dataset,
    state_changes,
    tree_state,
    workflow_command,
)
from helpers.locks import run_lock
from helpers.snake import (
    ROOT,
    Job,
    cluster_submissions,
    group_jobs,
    job_counts,
    local_rules,
    parse_jobs,
)

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("slurm_ci.sh")
PROFILE = ROOT / "profiles" / "slurm-ci"
#: A misconfigured executor shows up as a hang: stop the run after this long. The demo's run
#: took 8.6 min alone on the 2-core VM (with the planted pass, each job submitted alone;
#: 2026-11-27), and 12.6 min with the profile's groups beside the local demo run and the
#: other xdist worker's tests (2026-12-01).
SLURM_RUN_TIMEOUT = 1500
#: What the SLURM run makes (relative to its output_dir): NORDIC-on single-echo betas and noise
#: ceiling of the demo's session (a ``glm_fit`` group; before it the ``subject`` group and a
#: ``run`` group per run: NORDIC, the resampling, the echo handling and tedana), its held-out
#: fits and the analysis mask (2- and 1-thread jobs submitted alone) and that variant's
#: derivative folder's description (a local job).
_FIT = "glmsingle-nordic-single/sub-01/ses-01/func/sub-01_ses-01_task-images_space-T1w"
TARGETS = (
    f"{_FIT}_stat-effect_desc-SingletrialBetas_statmap.nii.gz",
    f"{_FIT}_stat-effect_desc-HeldoutImagemeans_statmap.nii.gz",
    f"{_FIT}_desc-Noiseceiling_statmap.nii.gz",
    "glmsingle-nordic-single/dataset_description.json",
)
#: The profile's groups the targets need (the ``planted`` pass is not among them).
TARGET_GROUPS = {"subject", "run", "glm_fit"}
#: "Job <id> has been submitted with SLURM jobid <n>": <id> is a number, or a UUID for a group job.
SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+) ", re.M)


class Cluster(TypedDict):
    state: Path  # SLURM_CI_STATE: slurm.conf, munge key and socket, PID files, logs, spool
    env: dict[str, str]  # os.environ + SLURM_CONF and bin/srun first on PATH (clients)
    start_seconds: float
    start_output: str


#: Files under /etc the cluster must leave as they were (absent stays absent).
ETC_FILES = (Path("/etc/slurm/slurm.conf"), Path("/etc/munge/munge.key"))


def _etc_state() -> dict[Path, str | None]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in ETC_FILES
    }


class SlurmDataset(TypedDict):
    bids: Path  # the demo's raw dataset, simulated anew for the SLURM tests
    before: dict[str, tuple]  # its tree_state before any run


class SlurmRun(TypedDict):
    cwd: Path
    results: Path
    work: Path
    rc: int
    log: str
    dry_log: str  # the dry run of the same command (-n -p): its job blocks and group jobs
    dry_run: list[Job]  # its jobs outside groups (helpers.snake.parse_jobs)
    seconds: float


def _script(action: str, state: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action],
        env={**os.environ, "SLURM_CI_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip(
            "the SLURM test needs root: it installs slurmctld/slurmd/munge with apt-get and"
            f" runs their daemons (running as uid {os.geteuid()})"
        )
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()) and not (
        shutil.which("apt-get")
    ):
        pytest.skip("the SLURM test needs slurmctld installed, or apt-get to install it")
    state = tmp_path_factory.mktemp("slurm-ci")
    t0 = time.monotonic()
    try:
        # `install` may apt-get install SLURM: one apt-get at a time across the xdist workers.
        # The packages' own post-install scripts may write /etc (munge creates its key): the
        # cluster's promise is about what it writes once they are there
        with run_lock(tmp_path_factory, "apt-get"):
            installed = _script("install", state, timeout=900)
        if installed.returncode == 3:
            pytest.skip(
                "SLURM could not be installed with apt-get:\n"
                f"{(installed.stdout + installed.stderr)[-2000:]}"
            )
        etc_before = _etc_state()
        started = _script("start", state, timeout=900)
    except subprocess.TimeoutExpired:
        _script("stop", state, timeout=120)
        pytest.fail("tests/hpc/slurm_ci.sh start did not finish within 900 s")
    seconds = time.monotonic() - t0
    output = installed.stdout + installed.stderr + started.stdout + started.stderr
    try:
        if started.returncode == 3:
            pytest.skip(f"SLURM could not be installed with apt-get:\n{output[-2000:]}")
        assert started.returncode == 0, (
            f"tests/hpc/slurm_ci.sh start failed (exit {started.returncode}):\n{output[-4000:]}"
        )
        env = {
            **os.environ,
            "SLURM_CONF": str(state / "slurm.conf"),
            "PATH": f"{state / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        yield Cluster(state=state, env=env, start_seconds=seconds, start_output=output)
    finally:
        stopped = _script("stop", state, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for daemon in ("slurmd", "slurmctld", "munged"):
            assert not (state / f"{daemon}.pid").exists(), f"{daemon} was not stopped"
        assert _etc_state() == etc_before, "the SLURM cluster changed files under /etc"


def _profile_groups() -> tuple[dict[str, str], dict[str, int]]:
    """``groups`` and ``group-components`` of the real cluster profile (profiles/slurm)."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    return profile.get("groups", {}), profile.get("group-components", {})


#: The CPUs of the CI runner, whose one SLURM node has as many (tests/hpc/slurm_ci.sh gives
#: the node the machine's count): ``--cores`` caps a group job's threads (its members then run
#: one after another), so that every submission fits the smallest node the tests run on.
NODE_CPUS = 2


def group_args() -> list[str]:
    """``--groups`` and ``--group-components`` of profiles/slurm, and ``--cores``
    :data:`NODE_CPUS`: the SLURM run groups its jobs as a user's run on a cluster does."""
    groups, components = _profile_groups()
    args = ["--cores", str(NODE_CPUS), "--groups", *[f"{r}={g}" for r, g in groups.items()]]
    if components:
        args += ["--group-components", *[f"{g}={n}" for g, n in components.items()]]
    return args


@pytest.fixture(scope="module")
def slurm_dataset(tmp_path_factory: pytest.TempPathFactory) -> SlurmDataset:
    """The demo's raw dataset, simulated anew (the same bytes as the ``demo`` fixture's)."""
    bids = tmp_path_factory.mktemp("slurm-data") / "bids"
    return SlurmDataset(bids=bids, before=simulate_demo_dataset(bids))


@pytest.fixture(scope="module")
def slurm_run(
    slurm_cluster: Cluster, slurm_dataset: SlurmDataset, tmp_path_factory: pytest.TempPathFactory
) -> SlurmRun:
    base = tmp_path_factory.mktemp("slurm-run")
    cwd, results, work = base / "cwd", base / "results", base / "work"
    cwd.mkdir()
    bids = slurm_dataset["bids"]
    targets = [str(results / t) for t in TARGETS]
    cmd = workflow_command(bids, results, work, *targets, "--profile", str(PROFILE), *group_args())
    dry = subprocess.run(
        # -p: every job's block (a dry run prints them only with it)
        [*cmd, "-n", "-p"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=slurm_cluster["env"],
    )
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    dry_log = dry.stdout + dry.stderr
    t0 = time.monotonic()
    rc, log = run_in_group(
        cmd, base / "snakemake.log", timeout=SLURM_RUN_TIMEOUT, cwd=cwd, env=slurm_cluster["env"]
    )
    return SlurmRun(
        cwd=cwd,
        results=results,
        work=work,
        rc=rc,
        log=log,
        dry_log=dry_log,
        dry_run=parse_jobs(dry_log),
        seconds=time.monotonic() - t0,
    )


def _ctld_log(cluster: Cluster) -> str:
    path = cluster["state"] / "log" / "slurmctld.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _scontrol_job(slurm_id: str, env: dict[str, str]) -> dict[str, str]:
    res = subprocess.run(
        ["scontrol", "show", "job", "-o", slurm_id],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert res.returncode == 0, f"scontrol show job {slurm_id}: {res.stderr}"
    return dict(re.findall(r"(\S+?)=(\S*)", res.stdout))


def _minutes(limit: str) -> int:
    """SLURM time limit ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def _megabytes(mem: str) -> int:
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[mem[-1]]
    return round(float(mem[:-1]) * factor)


def test_workflow_finishes_on_slurm(slurm_run, slurm_cluster):
    assert slurm_run["rc"] == 0, (
        f"snakemake --profile profiles/slurm-ci failed (exit {slurm_run['rc']});"
        f" end of its output:\n{slurm_run['log'][-5000:]}\n"
        f"end of slurmctld.log:\n{_ctld_log(slurm_cluster)[-2000:]}"
    )
    # statuses came from squeue; with the sacct fallback the run would hang (no slurmdbd)
    assert "Falling back to 'sacct'" not in slurm_run["log"]


def _alone(job_id: str) -> bool:
    """Whether a submission (:data:`SUBMITTED`'s first field) is one job (not a group job)."""
    return job_id.isdigit()


def test_every_job_ran_in_a_slurm_job(slurm_run, slurm_cluster):
    """One submission per group job and per job neither local nor grouped, as the dry run of
    the same command plans them (Snakemake's log: a SLURM job id each, a group job's under a
    UUID); each submission slurmctld received, started and saw exit 0 (its log), and scontrol
    reports it COMPLETED in partition debug, from the run's folder, under the run's job name."""
    log = slurm_run["log"]
    submitted = SUBMITTED.findall(log)
    n_jobs = sum(job_counts(log).values())
    # local jobs from the declarations: the console (logger plugin) prints no job blocks
    local = local_rules()
    groups = group_jobs(slurm_run["dry_log"])
    n_members = sum(len(members) for _, members in groups)
    alone = [job for job in slurm_run["dry_run"] if job.rule not in local]
    assert n_jobs == len(slurm_run["dry_run"]) + n_members  # every job: alone, local, in a group
    assert len(slurm_run["dry_run"]) > len(alone) > 0 and 0 < len(groups) < n_members
    assert len(submitted) == cluster_submissions(slurm_run["dry_log"]) == len(groups) + len(alone)
    assert sum(1 for job_id, _ in submitted if _alone(job_id)) == len(alone)
    assert len({s for _, s in submitted}) == len({j for j, _ in submitted}) == len(submitted)
    ctld = _ctld_log(slurm_cluster)
    names = set()
    for _, slurm_id in submitted:
        info = _scontrol_job(slurm_id, slurm_cluster["env"])
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), info
        assert info["Partition"] == "debug" and info["WorkDir"] == str(slurm_run["cwd"]), info
        names.add(info["JobName"])
        assert f"_slurm_rpc_submit_batch_job: JobId={slurm_id} " in ctld
        # started by the main scheduler or by backfill
        assert re.search(rf"(Allocate|_start_job: Started) JobId={slurm_id} ", ctld), slurm_id
        assert f"_job_complete: JobId={slurm_id} WEXITSTATUS 0" in ctld
    assert len(names) == 1, names  # the executor names every job of a run by the run's id


def test_slurm_jobs_got_each_rules_threads_memory_and_runtime(slurm_run, slurm_cluster):
    """threads -> --cpus-per-task, mem_mb -> --mem, runtime -> --time, per rule of the jobs
    submitted alone, as the dry run of the same command computes them (the CI profile adds
    nothing that overrides them)."""
    expected: dict[str, set[tuple[int, int, int]]] = {}
    for job in slurm_run["dry_run"]:
        res = job.resources
        expected.setdefault(job.rule, set()).add(
            (job.threads, int(res["mem_mb"]), int(res["runtime"]))
        )
    seen: dict[str, set[tuple[int, int, int]]] = {}
    for job_id, slurm_id in SUBMITTED.findall(slurm_run["log"]):
        if not _alone(job_id):
            continue  # test_grouped_jobs_share_slurm_submissions
        info = _scontrol_job(slurm_id, slurm_cluster["env"])
        rule = re.match(r"^rule_(.+?)(?:_wildcards_.*)?$", info["Comment"])
        assert rule, info["Comment"]
        got = (
            int(info["NumCPUs"]),
            _megabytes(info["MinMemoryNode"]),
            _minutes(info["TimeLimit"]),
        )
        seen.setdefault(rule.group(1), set()).add(got)
    assert seen and all(seen[rule] <= expected[rule] for rule in seen), (seen, expected)
    assert any(cpus > 1 for rule in seen for cpus, _, _ in seen[rule])  # multi-threaded rules


def test_slurm_outputs_match_the_local_run(slurm_run, slurm_dataset, demo):
    """Every file the SLURM run wrote into output_dir (the targets among them) is the local
    `make demo` run's of the same dataset and configuration: same images (arrays, affine,
    dtype), TSVs and sidecars (minus timings and run folders)."""
    assert slurm_run["rc"] == 0
    results = slurm_run["results"]
    written = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert set(TARGETS) <= set(written), sorted(set(TARGETS) - set(written))
    diffs, kinds = compare_derivatives(
        demo["results"],
        results,
        run_roots(demo["bids"], demo["results"], demo["work"]),
        run_roots(slurm_dataset["bids"], results, slurm_run["work"]),
        only=written,
    )
    assert diffs == []
    assert kinds["image"] > 0 and kinds["tsv"] > 0 and kinds["json"] > 0, kinds


def test_slurm_run_left_the_input_dataset_untouched(slurm_run, slurm_dataset):
    assert state_changes(slurm_dataset["before"], tree_state(slurm_dataset["bids"])) == []


def test_grouped_jobs_share_slurm_submissions(slurm_run, slurm_cluster):
    """profiles/slurm's grouping on the real cluster: every group job the dry run plans was
    submitted (the executor names a group job's log folder ``group_<group>_<rules>``: the
    ``subject`` group, the anatomy, the reference boldref and the grid; a run's ``run`` group,
    its NORDIC chain; the fit's ``glm_fit``, its betas and noise ceiling), and each fits the node
    (``--cores`` caps a group's threads: its members run one after another). Their outputs
    are the run's, compared with the local run's in test_slurm_outputs_match_the_local_run."""
    profile_groups, _ = _profile_groups()
    planned = Counter(group for group, _ in group_jobs(slurm_run["dry_log"]))
    assert set(planned) == TARGET_GROUPS <= set(profile_groups.values()), (planned, profile_groups)
    log = slurm_run["log"]
    grouped = [slurm_id for job_id, slurm_id in SUBMITTED.findall(log) if not _alone(job_id)]
    group_logs = re.findall(r"submitted with SLURM jobid \d+ \(log: .*/group_(\w+)/", log)
    assert len(group_logs) == len(grouped) == planned.total(), (planned, group_logs)
    # a log folder of no planned group counts under its own name (and fails the comparison)
    made = Counter(
        next((g for g in planned if name.startswith(f"{g}_")), name) for name in group_logs
    )
    assert made == planned, (made, planned)
    for slurm_id in grouped:
        info = _scontrol_job(slurm_id, slurm_cluster["env"])
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), info
        assert int(info["NumCPUs"]) <= NODE_CPUS, info  # fits the runner's node

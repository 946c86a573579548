"""Cluster resources of every rule: declared in the rules, growing with retries, local where cheap.

Generic over the rules: every rule Snakemake lists (``--list-rules``) is checked, so stages
added later are covered without editing this file. Two views of each rule:

- its definition (``echoprep.plan.families``: a ``RuleDef`` with its family's method), which
  ``workflow/rules/jobs.smk`` turns into a rule block (what is *declared*), and
- the jobs of ``--forceall`` dry runs at ``--attempt 1`` and ``--attempt 3`` on a generated
  BIDS tree (what Snakemake *computes*; no default resources are set, so a value that shows up
  comes from the rule). A dry run prints local jobs as ``rule``, like the others, so which
  rules are local is read from the declarations (a definition's ``local``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from helpers.bidstree import make_bids_tree
from helpers.snake import (
    ROOT,
    Job,
    cluster_submissions,
    group_jobs,
    job_counts,
    local_rules,
    parse_jobs,
    rule_blocks,
    rule_definitions,
    snakemake,
)

SLURM_PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
#: Files a cheap local job may read and write: text tables and descriptions, no images.
SMALL_FILE = re.compile(r"\.(json|tsv|txt|html|bidsignore)$|/\.bidsignore$")


def _is_local(name: str, block: str) -> bool:
    return name in local_rules()


_rule_blocks = rule_blocks


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two subjects, two sessions (ses-02 of sub-01 without its own T1w), two runs each."""
    root = tmp_path_factory.mktemp("resources")
    bids = make_bids_tree(
        root / "bids", subjects=("01", "02"), sessions=("01",), runs=("01", "02"), data=False
    )
    make_bids_tree(bids, subjects=("01",), sessions=("02",), runs=("01",), t1w=False, data=False)
    return {"bids_dir": bids, "output_dir": root / "out", "work_dir": root / "work"}


@pytest.fixture(scope="module")
def jobs(tree) -> dict[int, list[Job]]:
    """Every job of the DAG, at attempt 1 and 3 (in the same order: same command otherwise)."""
    found = {}
    for attempt in (1, 3):
        res = snakemake("-n", "--forceall", "--attempt", str(attempt), config=tree)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        found[attempt] = parse_jobs(res.stdout + res.stderr)
    return found


@pytest.fixture(scope="module")
def listed(tree) -> dict[str, str]:
    """``snakemake --list-rules``: each rule's name and what Snakemake prints after it (its
    docstring in parentheses)."""
    res = snakemake("--list-rules", config=tree)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line.strip() for line in res.stdout.splitlines() if line.strip()]
    return {line.split(" ", 1)[0]: line.partition(" ")[2] for line in lines}


@pytest.fixture(scope="module")
def listed_rules(listed) -> set[str]:
    return set(listed)


def test_list_rules_says_what_each_rule_makes_and_where_it_is_defined(listed):
    """``--list-rules`` prints every rule's one-line description and the file and line of its
    definition: for a family's rule, the line that assigns its ``RuleDef`` (``NAME = ...``,
    the rule's name on it or within the next lines); ``all``, the Snakefile."""
    place = re.compile(r"^\((.+) \[([\w/.]+)(?::(\d+))?\]\)$")
    for name, text in listed.items():
        m = place.match(text)
        assert m, (name, text)
        description, path, line = m.groups()
        assert len(description) > 20, (name, description)
        assert (ROOT / path).is_file(), (name, path)
        if name == "all":
            assert path == "Snakefile"
            continue
        source = (ROOT / path).read_text().splitlines()
        first = source[int(line) - 1]
        assert re.match(r"^[A-Z_]+ = ", first), (name, path, line, first)
        base = re.sub(r"_\d+echoes$", "", name)
        assert f'"{base}"' in "\n".join(source[int(line) - 1 : int(line) + 3]), (name, first)


def test_every_listed_rule_has_a_source_block(listed_rules):
    """The checks below read the rules' definitions: they must see every rule Snakemake knows.
    Every rule exists under every config (a rule with no work under it, such as spatial_run
    when a per-run chain hosts the geometry, has no jobs), so both are the same rules."""
    blocks = _rule_blocks()
    assert listed_rules and listed_rules <= set(blocks), (listed_rules, sorted(blocks))
    assert set(blocks) == listed_rules


def _job_block() -> str:
    """The rule block of ``workflow/rules/jobs.smk`` that defines every rule whose jobs are
    submitted (the one block that is not ``localrule: True``)."""
    text = (ROOT / "workflow" / "rules" / "jobs.smk").read_text()
    blocks = [b for b in re.split(r"^ +rule:\n", text, flags=re.M)[1:] if "localrule" not in b]
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_non_local_rules_declare_threads_memory_and_runtime(listed_rules):
    """Declared in the rule itself (not left to a profile's default-resources, which a later
    profile replaces wholesale): threads, and mem_mb and runtime from the rule's spec
    (test_specs checks every spec has both), which the plan computes from the rule's
    definition (its memory model, minutes); how they grow with ``attempt`` is checked on
    computed values below."""
    block = _job_block()
    assert re.search(r"^\s+threads:\s*_spec\.threads$", block, re.M), block
    assert re.search(r"^\s+resources:\s*\n\s+\*\*_spec\.resources,", block, re.M), block
    blocks = _rule_blocks()
    definitions = rule_definitions()
    problems = []
    for name in sorted(listed_rules):
        if _is_local(name, blocks[name]):
            continue
        defn = definitions[name]
        if not (isinstance(defn.threads, int) and defn.threads >= 1):
            problems.append(f"{name}: threads {defn.threads!r}")
        if defn.memory is None:
            problems.append(f"{name}: no memory model (no resources: from its spec)")
        if not defn.minutes > 0:
            problems.append(f"{name}: no runtime (minutes {defn.minutes!r})")
    assert problems == []


def test_every_cluster_job_gets_memory_and_runtime_that_grow_with_each_retry(jobs):
    """Computed values, job by job: present without any default resources, and larger at
    attempt 3 than at attempt 1 (a job killed for memory or time asks for more next time)."""
    first = {(j.rule, j.output): j for j in jobs[1]}
    third = {(j.rule, j.output): j for j in jobs[3]}
    assert first.keys() == third.keys()  # the same jobs (dry runs print them in any order)
    blocks = _rule_blocks()
    remote = [
        (job, third[key]) for key, job in first.items() if not _is_local(job.rule, blocks[job.rule])
    ]
    assert remote
    problems = []
    for a, b in remote:
        for key in ("mem_mb", "runtime"):
            if key not in a.resources:
                problems.append(f"{a.rule} {a.wildcards}: no {key}")
            elif not int(b.resources[key]) > int(a.resources[key]) > 0:
                problems.append(f"{a.rule}: {key} {a.resources[key]} -> {b.resources[key]}")
    assert problems == []


def test_local_jobs_are_the_cheap_ones(jobs, listed_rules):
    """``all`` and ``dataset_description`` run on the submit host, as does every rule
    whose jobs only read and write small text files (descriptions, tables, JSON summaries:
    an aggregation of other jobs' tables); a local rule asks for one thread at most (it runs
    next to Snakemake on the login node)."""
    blocks = _rule_blocks()
    by_rule: dict[str, list[Job]] = {}
    for job in jobs[1]:
        by_rule.setdefault(job.rule, []).append(job)
    problems = []
    for name in sorted(listed_rules):
        local = _is_local(name, blocks[name])
        rule_jobs = by_rule.get(name, [])
        files = [f for j in rule_jobs for f in (*j.input, *j.output)]
        text_only = bool(rule_jobs) and all(SMALL_FILE.search(f) for f in files)
        if (name in ("all", "dataset_description") or text_only) and not local:
            problems.append(f"{name} should be local (cheap aggregation / description)")
        if local and any(j.threads > 1 for j in rule_jobs):
            problems.append(f"{name} is local but asks for {rule_jobs[0].threads} threads")
    assert problems == []


#: LAION-fMRI functional geometry (matrix, volumes per run).
LAION_SHAPE, LAION_VOLUMES = (90, 110, 72), 163


def test_memory_follows_the_size_of_the_data(tree, tmp_path):
    """The same runs at LAION geometry (header-only files) ask for more memory than the
    generated small ones, for every cluster rule that reads BOLD images: rules size memory
    from the image headers, not a constant."""
    blocks = _rule_blocks()
    small = {(j.rule, j.wildcards): j for j in parse_jobs(_dry(tree))}
    big_bids = tmp_path / "bids"
    for subjects, sessions, runs, t1w in (
        (("01", "02"), ("01",), ("01", "02"), True),
        (("01",), ("02",), ("01",), False),
    ):
        make_bids_tree(
            big_bids,
            subjects=subjects,
            sessions=sessions,
            runs=runs,
            t1w=t1w,
            data=False,
            shape=LAION_SHAPE,
            n_volumes=LAION_VOLUMES,
        )
    cfg = {"bids_dir": big_bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "w"}
    big = {(j.rule, j.wildcards): j for j in parse_jobs(_dry(cfg))}
    readers = sorted(
        key
        for key, job in small.items()
        if not _is_local(job.rule, blocks[job.rule])
        and any(re.search(r"_bold\.nii(\.gz)?$", f) for f in job.input)
    )
    grown = [
        k for k in readers if int(big[k].resources["mem_mb"]) > int(small[k].resources["mem_mb"])
    ]
    assert readers and grown == readers


def _dry(config) -> str:
    res = snakemake("-n", "--forceall", config=config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def slurm_dry(tree) -> str:
    """Dry run of the real cluster profile (conda switched off: no conda needed)."""
    res = snakemake(
        "--profile", str(SLURM_PROFILE.parent), "--sdm", "env-modules", "-n", config=tree
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    return out


def test_slurm_profile_groups_small_jobs_and_leaves_threads_to_the_rules(listed_rules, slurm_dry):
    """profiles/slurm: no cpus_per_task in default-resources (it would override every rule's
    threads); every grouped rule exists and is a cluster rule; the dry run of the real profile
    forms those group jobs, each group packs several jobs into one submission; a run's
    geometry is the first step of its NORDIC chain (no spatial_run jobs), the subject's
    reference boldref is in the subject's group."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    assert "cpus_per_task" not in profile.get("default-resources", {})
    assert "set-resources" not in profile  # per-rule needs live in the rules
    groups = profile.get("groups", {})
    blocks = _rule_blocks()
    assert groups, "no small jobs are grouped"
    for rule in groups:
        assert rule in listed_rules, rule
        assert not _is_local(rule, blocks[rule]), rule
    assert "spatial_run" not in groups
    formed = group_jobs(slurm_dry)
    assert {g for g, _ in formed} == set(groups.values())
    for group in set(groups.values()):
        assert max(len(m) for g, m in formed if g == group) > 1, group
    assert not any("spatial_run" in members for _, members in formed)
    assert "spatial_run" not in {j.rule for j in parse_jobs(slurm_dry)}
    reference = {g for g, members in formed if "spatial_reference" in members}
    assert reference == {groups["spatial_subject"]} == {groups["spatial_reference"]}


def test_a_12_run_session_is_at_most_40_cluster_submissions(tmp_path):
    """Issue 24's target: with profiles/slurm's groups, one 12-run session (one subject, the
    default 2 x 3, fieldmaps) is at most 40 cluster submissions (group jobs and jobs outside
    groups; local jobs run next to Snakemake)."""
    bids = make_bids_tree(
        tmp_path / "bids",
        sessions=("01",),
        runs=[f"{i:02d}" for i in range(1, 13)],
        data=False,
        fieldmap=True,
    )
    cfg = {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}
    res = snakemake(
        "--profile", str(SLURM_PROFILE.parent), "--sdm", "env-modules", "-n", config=cfg
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    cluster_jobs = sum(job_counts(out).values()) - sum(
        n for rule, n in job_counts(out).items() if rule in local_rules()
    )
    # per run: spatial_run, the two chains (nordic, spatial_resample), the NORDIC single echo,
    # tedana on both sides; then the session's fits
    assert cluster_jobs > 6 * 12
    assert cluster_submissions(out) <= 40


#: Most a light local job (descriptions, tables, rule all) may ask for, in MB.
LIGHT_MB = 1000


def test_light_jobs_ask_for_little_memory_and_disk_on_the_cluster(slurm_dry):
    """With the cluster profile's default resources, no local job (descriptions, tables, the
    config snapshot, rule all) asks for more than 1 GB of memory or disk: Snakemake's own
    default disk_mb, twice the size of a job's inputs, made rule all ask for tens of GB."""
    jobs = parse_jobs(slurm_dry)
    local = local_rules()
    light = [j for j in jobs if j.rule in local]
    assert {"all", "dataset_description"} <= {j.rule for j in light}
    heavy = [
        (j.rule, key, j.resources.get(key))
        for j in light
        for key in ("mem_mb", "disk_mb")
        if not j.resources.get(key, "").isdigit() or int(j.resources[key]) > LIGHT_MB
    ]
    assert heavy == []
    # every job gets a definite disk request (not <TBD>, i.e. not from its inputs' size)
    assert all(j.resources.get("disk_mb", "").isdigit() for j in jobs)


def test_dry_run_with_the_placeholder_partition_warns_naming_file_and_key(slurm_dry):
    line = next(
        ln for ln in slurm_dry.splitlines() if "CHANGE_ME_partition" in ln and "preflight" in ln
    )
    assert "warning" in line and str(SLURM_PROFILE) in line and "slurm_partition" in line


def test_submitting_with_the_placeholder_partition_is_refused(tree, tmp_path):
    """A real run with profiles/slurm as shipped stops before any job is submitted (no sbatch
    is called, nothing is written), naming the profile file, the key and the fix."""
    cfg = {**tree, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}
    res = snakemake("--profile", str(SLURM_PROFILE.parent), "--sdm", "env-modules", config=cfg)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "nothing was run or submitted" in out and str(SLURM_PROFILE) in out
    assert "--default-resources " in out and "slurm_partition=<yours>" in out
    assert "submitted with SLURM jobid" not in out
    assert not (tmp_path / "out").exists()


def _path_without_conda() -> str:
    """This PATH minus every folder that holds conda or mamba (the venv's python stays)."""
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / exe).exists() for exe in ("conda", "mamba"))
    ]
    return os.pathsep.join([str(Path(sys.executable).parent), *keep])


def test_conda_profile_without_conda_stops_with_both_ways_out(tree):
    """profiles/slurm deploys with conda: on a machine without conda even the dry run stops
    (Snakemake calls `conda info`), now with a message that names the two ways out instead of
    "conda: command not found"; the way without conda it names works as written."""
    env = {"PATH": _path_without_conda()}
    res = snakemake("--profile", str(SLURM_PROFILE.parent), "-n", config=tree, env=env)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "neither `conda` nor `mamba` is on PATH" in out
    assert "Miniforge" in out and "--sdm env-modules" in out
    ok = snakemake(
        "--profile",
        str(SLURM_PROFILE.parent),
        "--sdm",
        "env-modules",
        "-n",
        "-q",
        "rules",
        config=tree,
        env=env,
    )
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]

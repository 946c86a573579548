"""Run the echoprep Snakefile in a subprocess and read what it scheduled."""

from __future__ import annotations

import atexit
import inspect
import json
import locale
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What the process that forks every test's Snakemake imports once: Snakemake's command line
#: and API, and the echoprep modules the Snakefile imports while it plans. A dry run in a fresh
#: interpreter spends about half its CPU importing them (the demo's dry run: 3.4-3.6 CPU-s in a
#: fresh interpreter, 1.1-1.8 forked; this project's 2-core machine). Not nibabel, nilearn or
#: scipy: preloaded too, they made each fork slower (2.5-3.0 CPU-s), and not matplotlib, whose
#: config folder the Snakefile sets before anything imports it.
FORK_PRELOAD = (
    "snakemake.cli",
    "snakemake.api",
    "echoprep.config",
    "echoprep.refusal",
    "echoprep.io.bids",
    "echoprep.plan",
    "echoprep.preflight",
)
#: Set (to anything) to run every test's Snakemake in a fresh interpreter, as users do.
NO_FORK = "ECHOPREP_TEST_NO_FORK"
_forks: dict[str, object] = {}


def snakemake(
    *args: str,
    config: dict[str, object] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python -m snakemake -s ROOT/Snakefile ARGS --config K=V ...`` (text output captured).
    A dry run gets ``-p``: every job's block and command, which the tests read (a dry run
    without it prints the job table only). Without ``env``, the run is forked from a process
    that has already imported Snakemake (:func:`_forked`; ``ECHOPREP_TEST_NO_FORK=1``: a fresh
    interpreter always); tests/workflow/test_snake_helper.py checks that both give the same
    output."""
    if "-n" in args and not {"-p", "--printshellcmds"} & set(args):
        args = (*args, "-p")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
    if config:
        cmd += ["--config", *[f"{k}={v}" for k, v in config.items()]]
    full_env = {**os.environ, **(env or {})}
    if env is None and _forkable():
        return _forked(cmd, cwd or ROOT, full_env, timeout)
    return subprocess.run(
        cmd, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def _forkable() -> bool:
    """Whether :func:`snakemake` may fork its run from the preloaded process: unless asked not
    to (:data:`NO_FORK`) or this Python lacks the way to restart that process when the test
    process's environment has changed (:func:`_fork_context`)."""
    return not os.environ.get(NO_FORK) and hasattr(forkserver._forkserver, "_stop")


def _environ() -> dict[str, str]:
    """The environment but the name of the running test, which pytest keeps in it."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _fork_context() -> multiprocessing.context.BaseContext:
    """multiprocessing's forkserver context with :data:`FORK_PRELOAD`, its server started anew
    (at the next fork) whenever the environment differs from the one it started with: modules
    it imported may have read it (a test's ``monkeypatch.setenv``, a stage run in-process that
    sets its libraries' thread counts)."""
    environ = _environ()
    context = _forks.get("context")
    if context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(FORK_PRELOAD))
        _forks["context"] = context
    elif _forks.get("environ") != environ:
        forkserver._forkserver._stop()  # type: ignore[attr-defined]
    _forks["environ"] = environ
    return context  # type: ignore[return-value]


def _forked(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """``cmd`` (``python -m snakemake ARGS``) run as :func:`subprocess.run` would, in a process
    forked from one that has imported :data:`FORK_PRELOAD` (multiprocessing's forkserver,
    started at the first call of this test process): the same working folder, environment,
    arguments (``sys.argv``), exit status and captured text, without paying the imports again.
    """
    context = _fork_context()
    with tempfile.TemporaryDirectory(prefix="echoprep-snakemake-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        child = context.Process(  # type: ignore[attr-defined]
            target=_snakemake_main, args=(cmd[3:], str(cwd), env, str(out), str(err))
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(cmd, timeout, _text(out), _text(err))
        return subprocess.CompletedProcess(cmd, child.exitcode, _text(out), _text(err))


def _text(path: Path) -> str:
    """A captured stream as ``subprocess.run(text=True)`` decodes it."""
    if not path.exists():
        return ""
    return path.read_text(encoding=locale.getpreferredencoding(False))


def _snakemake_main(args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: ``python -m snakemake ARGS`` from ``cwd`` with environment
    ``env``, stdout and stderr written to the files ``out`` and ``err``, stdin empty; the
    interpreter's exit handlers (logging's flush among them) run before it ends, as they do at
    the end of a fresh interpreter."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import snakemake
    from snakemake.cli import main

    sys.argv = [str(Path(snakemake.__file__).with_name("__main__.py")), *args]
    try:
        main(args)
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()


def dry_run(config: dict[str, object], *extra: str, cwd: Path | None = None) -> str:
    """Dry run; returns stdout+stderr and fails with that text if Snakemake failed."""
    res = snakemake("-n", *extra, config=config, cwd=cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def job_counts(output: str) -> Counter:
    """Jobs per rule from a dry run's 'Job stats' table."""
    counts: Counter = Counter()
    table = output.split("Job stats:", 1)
    if len(table) < 2:
        return counts
    for line in table[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m:
            if line.strip() == "":
                break
            continue
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def scheduled_wildcards(output: str) -> list[str]:
    """The ``wildcards:`` line of every scheduled job of a dry run."""
    return [m.group(1) for m in re.finditer(r"^\s*wildcards: (.*)$", output, flags=re.M)]


@dataclass(frozen=True)
class Job:
    """One job block of a (dry-)run's output."""

    rule: str
    local: bool
    jobid: int
    wildcards: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    threads: int
    resources: dict[str, str]
    reason: str


_JOB_HEAD = re.compile(r"^(local)?(?:rule|checkpoint) (\w+):$")
_JOB_FIELD = re.compile(r"^    (\w+): (.*)$")


def parse_jobs(output: str) -> list[Job]:
    """Every job block (``rule X:`` / ``localrule X:`` and its indented fields) of Snakemake's
    output (a dry run, or a run's log for the jobs it printed); the members of group jobs
    (indented below ``Group job ...``, :func:`group_jobs`) are left out."""
    jobs: list[Job] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        head = _JOB_HEAD.match(line)
        if not head:
            continue
        fields: dict[str, str] = {}
        for field_line in lines[i + 1 :]:
            m = _JOB_FIELD.match(field_line)
            if not m:
                break
            fields[m.group(1)] = m.group(2)
        if "jobid" not in fields:
            continue
        resources: dict[str, str] = {}
        for item in fields.get("resources", "").split(", "):
            if "=" in item:
                key, value = item.split("=", 1)
                resources[key] = value
        jobs.append(
            Job(
                rule=head.group(2),
                local=head.group(1) is not None,
                jobid=int(fields["jobid"]),
                wildcards=fields.get("wildcards", ""),
                input=tuple(fields["input"].split(", ")) if "input" in fields else (),
                output=tuple(fields["output"].split(", ")) if "output" in fields else (),
                threads=int(fields.get("threads", "1")),
                resources=resources,
                reason=fields.get("reason", ""),
            )
        )
    return jobs


def group_jobs(output: str) -> list[tuple[str, list[str]]]:
    """The group jobs of a dry run with job groups (a cluster profile): per group job, its
    group and the rules of its member jobs (``Group job NAME (jobs ...):`` and the indented
    job blocks below it)."""
    found: list[tuple[str, list[str]]] = []
    members: list[str] | None = None
    for line in output.splitlines():
        head = re.search(r"Group job (\S+) \(jobs", line)
        if head:
            members = []
            found.append((head.group(1), members))
        elif members is not None:
            rule = re.match(r"^\s+(?:local)?rule (\w+):", line)
            if rule:
                members.append(rule.group(1))
            elif line.strip() and not line[0].isspace() and not line.startswith("Shell command:"):
                members = None  # (a member's command, with -p, is printed unindented)
    return found


def cluster_submissions(output: str) -> int:
    """How many submissions a dry run with a cluster profile makes: one per group job, one per
    job outside a group that is not local (:func:`parse_jobs` reads the jobs outside groups;
    a dry run prints local jobs as ``rule``, so which are local is read from the
    declarations)."""
    local = local_rules()
    alone = sum(1 for j in parse_jobs(output) if j.rule not in local)
    return len(group_jobs(output)) + alone


def description_counts(output: str) -> Counter:
    """Jobs of the ``dataset_description`` rule per derivative folder kind (the
    ``echoprep.io.outputs.FOLDERS`` name: ``glm`` counts every ``glmsingle-<variant>`` folder),
    from the folder of each job's output."""
    from echoprep.io.outputs import folder_kind

    counts: Counter = Counter()
    for job in parse_jobs(output):
        if job.rule == "dataset_description":
            (path,) = job.output
            assert path.endswith("/dataset_description.json"), path
            counts[folder_kind(Path(path).parent.name)] += 1
    return counts


#: A job running several steps (``( CMD && CMD ) 2> LOG``, workflow/rules/common.smk).
_STEPS = re.compile(r"^(?:Shell command: )?\( (.*) \) (2> \S+)$")


def shell_commands(output: str, command: str) -> list[str]:
    """The printed shell commands (``--printshellcmds``) that run ``python -m echoprep
    <command>`` (``command``: the sub-command and its first words, e.g. ``"combine denoised"``).
    A step of a job that runs several (a per-run chain) is given as its own command with the
    job's ``2> LOG``, as a rule of its own would print it."""
    lines = []
    for line in output.splitlines():
        steps = _STEPS.match(line)
        if steps:
            lines += [f"{cmd} {steps.group(2)}" for cmd in steps.group(1).split(" && ")]
        else:
            lines.append(line)
    pattern = rf"^(?:Shell command: )?(python -m echoprep {re.escape(command)}\b.*)$"
    return [m.group(1) for line in lines if (m := re.match(pattern, line))]


def options_of(command: str) -> dict[str, object]:
    """The config section a printed shell command passes as ``--options-json`` (decoded)."""
    words = shlex.split(command)
    assert words.count("--options-json") == 1, command
    return json.loads(words[words.index("--options-json") + 1])


#: Files that define rules: the Snakefile and every included rules file.
#: The rule files: the Snakefile (rule all) and workflow/rules/*.smk (the glue and the one
#: block that defines every rule from the plan).
RULE_FILES = (ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk")))


def rule_definitions() -> dict:
    """Rule name -> its :class:`echoprep.plan.rule.RuleDef` (every rule of the families; a
    per-run chain under its family name, as for a dataset whose runs all have the same number
    of echoes)."""
    from echoprep.plan.front import rule_definitions as definitions

    return definitions()


def rule_blocks() -> dict[str, str]:
    """Rule name -> the text that defines it: its definition's directives written as a rule
    block would (``localrule: True``, ``threads:``, ``conda:``, ``message:``, ``shell:`` with
    its command, or ``run:``), followed by the source of its family's method of the rule's
    name (its inputs, outputs and params) and of the family class's helpers that method
    names. Rule ``all`` (the Snakefile's) is listed too."""
    from echoprep.plan.front import FAMILIES

    blocks: dict[str, str] = {"all": "    localrule: True\n    input:\n        all_targets"}
    for family in FAMILIES:
        for d in family.RULES:
            lines = []
            if d.local:
                lines.append("    localrule: True")
            lines.append(f"    threads: {d.threads}")
            if d.command:
                lines.append(f"    conda: {d.env}")
            lines.append(f"    message: {d.message!r}")
            lines.append(f"    shell: {d.command!r}" if d.command else "    run: in process")
            method = getattr(family, d.name)
            source = inspect.getsource(method)
            # the helpers the method names (self._x / self.x of the same class), one level deep
            for name in sorted(set(re.findall(r"self\.(\w+)", source))):
                helper = getattr(family, name, None)
                if callable(helper) and name != d.name:
                    try:
                        source += "\n" + inspect.getsource(helper)
                    except (TypeError, OSError):
                        pass
            blocks[d.name] = "\n".join(lines) + "\n" + source
    return blocks


def wildcard_constraints() -> dict[str, str]:
    """The workflow's wildcard constraints (``wildcard_constraints:`` of common.smk) that are
    literal regexes (``name=r"..."``), by wildcard."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    block = text.split("\nwildcard_constraints:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r'^    (\w+)=r"(.*)",$', block, flags=re.M))


def planned_outputs(*args: str, cwd: Path | None = None) -> dict[str, set[str]]:
    """The output files of every job Snakemake plans (``--summary``: one line per output file
    and the rule of its job), by rule. Unlike a dry run it formats no job's shell command, so
    a command that names a file its rule lacks does not stop it."""
    res = snakemake("--summary", *args, cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    files: dict[str, set[str]] = {}
    for line in res.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] != "output_file":
            files.setdefault(fields[2], set()).add(fields[0])
    return files


def local_rules() -> set[str]:
    """Rules declared local (``localrule: True``: their definition's ``local``, and rule
    ``all``). A dry run prints local jobs as ``rule``, like the others, so the declarations are
    what tells."""
    return {"all"} | {n for n, d in rule_definitions().items() if d.local}

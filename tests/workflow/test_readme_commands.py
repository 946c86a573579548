"""Every command in the fenced ``bash`` blocks of the README and of the documentation's pages
(``docs/*.md``: install, running, cluster, developing, ...) is run by a test, as written.

- ``.venv/bin/snakemake ...``: run as a dry run (``-n`` added) on a small generated BIDS tree;
  the README's example paths (``bids_dir=``, ``output_dir=``, ``work_dir=``) are replaced by
  temporary ones, and ``output_dir``/``work_dir`` are added where the command leaves them to
  the defaults, so nothing is written into the checkout. A command with the conda profile on a
  machine without conda must stop with the message that names both ways out (what the README
  promises); with conda it must succeed (``--conda-create-envs-only`` is then left to the
  preflight tests, as it would build the envs). ``--report`` runs on the shared tiny demo run
  (session fixture ``demo``), with the ``--configfile`` the README gives.
- ``.venv/bin/echoprep install-profile``: run as written with ``HOME`` a temporary folder
  (:data:`WITH_HOME`), which the Snakemake commands then get too, so ``--profile slurm`` finds the
  link it made (tests/workflow/test_install_profile.py covers the command itself).
- ``make TARGET [VAR=...]``: ``make -n`` of it succeeds (the recipe resolves).
- anything else: listed in :data:`COVERED` with the test or script that runs it, or run here
  when it is quick (:data:`RUN_HERE`).

A command that fits none of these fails the test: a new command in those pages needs a way to be
run. The README itself keeps the two first commands and the cluster's three.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import ROOT

README = ROOT / "README.md"
#: The pages whose commands are run: the README and every page of the documentation.
PAGES = (README, *sorted(p for p in (ROOT / "docs").glob("*.md")))
SNAKEMAKE = ".venv/bin/snakemake"
#: Commands run elsewhere, as written up to their example paths: command -> who runs it.
COVERED = {
    ".venv/bin/echoprep simulate /tmp/sim --preset tiny": (
        "tests/helpers/demo.py (run_demo: `echoprep simulate <dir> --preset tiny`)"
    ),
    ".venv/bin/python -m pytest tests/unit -q": ".ci/run (make test runs every tier)",
    ".venv/bin/python -m pytest tests/workflow -q": ".ci/run (make test runs every tier)",
    ".venv/bin/python -m pytest tests/e2e -q": ".ci/run (make test runs every tier)",
    '.venv/bin/python -m pytest -m "not slow"': ".ci/run (make test runs every tier)",
    ".venv/bin/snakefmt --check Snakefile workflow/rules": "Makefile (lint, run by make test)",
    ".venv/bin/ruff check .": "Makefile (lint, run by make test)",
}
#: Quick commands this module runs as written (from the checkout).
RUN_HERE = {
    ".venv/bin/ruff format --check .",
    ".venv/bin/python envs/lock.py --check",
}
#: Commands run as written with HOME (and XDG_CONFIG_HOME) pointing to a temporary folder.
WITH_HOME = {".venv/bin/echoprep install-profile"}
PATH_KEYS = ("bids_dir", "output_dir", "work_dir")


def slurm_profile(words: list[str]) -> bool:
    """Whether a command uses echoprep's SLURM profile: by name (``--profile slurm``, after
    ``echoprep install-profile``) or by path (``--profile profiles/slurm``)."""
    pairs = itertools.pairwise(words)
    return any(a == "--profile" and b in ("slurm", "profiles/slurm") for a, b in pairs)


def readme_commands(text: str) -> list[str]:
    """Commands of the fenced ``bash`` blocks, each as ``shlex.join`` of its words: comments
    dropped, ``&&`` chains split."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.splitlines():
            part: list[str] = []
            for word in [*shlex.split(line, comments=True), "&&"]:
                if word == "&&":
                    if part:
                        commands.append(shlex.join(part))
                    part = []
                else:
                    part.append(word)
    return commands


def all_commands() -> list[str]:
    """The commands of every page of :data:`PAGES`, in order."""
    return [c for page in PAGES for c in readme_commands(page.read_text())]


def _norm(cmd: str) -> str:
    return shlex.join(shlex.split(cmd))


def _conda() -> bool:
    return any(shutil.which(exe) for exe in ("conda", "mamba"))


def dry_run_args(words: list[str], paths: dict[str, Path]) -> list[str]:
    """A README snakemake command as a dry run: ``python -m snakemake -n ...`` with the data
    and output paths replaced by ``paths`` (added where the command does not set them)."""
    assert words[0] == SNAKEMAKE, words
    args = [sys.executable, "-m", "snakemake", "-n"]
    rest = [w for w in words[1:] if w not in ("-n", "--dry-run")]
    given: set[str] = set()
    out: list[str] = []
    in_config = False
    for w in rest:
        if w.startswith("-"):
            in_config = w == "--config"
            out.append(w)
            continue
        key = w.split("=", 1)[0]
        if in_config and key in PATH_KEYS:
            given.add(key)
            out.append(f"{key}={paths[key]}")
        else:
            out.append(w)
    missing = [f"{k}={paths[k]}" for k in PATH_KEYS if k not in given]
    if missing:
        if "--config" in out:
            i = out.index("--config") + 1
            out[i:i] = missing
        else:
            out += ["--config", *missing]
    return args + out


def test_readme_commands_are_found():
    """The README starts with ``make demo`` and ``make test`` (.ci/run runs the second) and
    gives the cluster in three commands: the profile's link, a dry run and the run."""
    text = README.read_text()
    assert text.splitlines()[1].startswith("make demo") and text.splitlines()[2].startswith(
        "make test"
    )
    commands = readme_commands(text)
    cluster = [c for c in commands if slurm_profile(shlex.split(c))]
    assert ".venv/bin/echoprep install-profile" in commands
    assert [("-n" in shlex.split(c)) for c in cluster] == [True, False], cluster
    assert all(c.startswith(SNAKEMAKE) for c in cluster)
    # one way to call Snakemake: never a bare `snakemake` command, on any page
    assert not [c for c in all_commands() if c.split()[0] == "snakemake"]


def test_every_readme_command_has_a_way_to_run():
    unknown = [
        c
        for c in all_commands()
        if not (
            c.startswith((SNAKEMAKE + " ", "make "))
            or c in {_norm(k) for k in (*COVERED, *RUN_HERE, *WITH_HOME)}
        )
    ]
    assert unknown == [], "add a way to run these commands (test_readme_commands.py)"
    for who in COVERED.values():
        assert (ROOT / who.split()[0]).exists(), who


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("readme")
    bids = make_bids_tree(
        root / "bids", subjects=("01",), sessions=("01",), runs=("01",), data=False
    )
    return {"bids_dir": bids, "output_dir": root / "out", "work_dir": root / "work"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the README's commands: HOME an empty temporary folder in which the
    README's ``echoprep install-profile`` commands have run (as written, from the checkout)."""
    folder = tmp_path_factory.mktemp("home")
    drop = ("XDG_CONFIG_HOME", "SNAKEMAKE_PROFILE")
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"HOME": str(folder)}
    commands = [c for c in all_commands() if c in WITH_HOME]
    assert commands, "the README no longer runs echoprep install-profile"
    for cmd in commands:
        words = shlex.split(cmd)
        res = _run([str(ROOT / words[0]), *words[1:]], env)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    return env


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_readme_snakemake_commands_dry_run(tree, home):
    commands = [
        c
        for c in dict.fromkeys(all_commands())
        if c.startswith(SNAKEMAKE + " ") and "--report" not in c
    ]
    assert len(commands) >= 3
    jobs = []
    for cmd in commands:
        words = shlex.split(cmd)
        conda_profile = slurm_profile(words) and "--sdm" not in words
        if conda_profile and "--conda-create-envs-only" in words and _conda():
            continue  # would build the envs; test_preflight/test_resources cover the checks
        jobs.append((cmd, conda_profile, dry_run_args(words, tree)))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda job: _run(job[2], home), jobs))
    problems = []
    for (cmd, conda_profile, _), res in zip(jobs, results, strict=True):
        out = res.stdout + res.stderr
        if conda_profile and not _conda():
            # the README's promise on a machine without conda: a message with both ways out
            if res.returncode == 0 or "--sdm env-modules" not in out or "Miniforge" not in out:
                problems.append(f"{cmd}: expected the no-conda message\n{out[-1500:]}")
        elif res.returncode != 0:
            problems.append(f"{cmd}: exit {res.returncode}\n{out[-1500:]}")
        elif slurm_profile(words_of(cmd)) and "CHANGE_ME_partition" not in out:
            problems.append(f"{cmd}: no placeholder warning in the dry run")
    assert problems == [], "\n\n".join(problems)


def words_of(cmd: str) -> list[str]:
    return shlex.split(cmd)


def test_readme_make_targets_resolve():
    commands = list(dict.fromkeys(c for c in all_commands() if c.split()[0] == "make"))
    assert {"make demo", "make test"} <= set(commands)
    for cmd in commands:
        res = _run(["make", "-n", *shlex.split(cmd)[1:]])
        assert res.returncode == 0, f"{cmd}: {res.stdout[-1000:]}{res.stderr[-1000:]}"


@pytest.mark.parametrize("cmd", sorted(RUN_HERE))
def test_readme_quick_commands_run_as_written(cmd):
    assert _norm(cmd) in all_commands(), f"{cmd!r} is on no page"
    words = shlex.split(cmd)
    res = _run([str(ROOT / words[0]), *words[1:]])
    assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}{res.stderr[-2000:]}"


@pytest.mark.slow
def test_readme_report_command_on_the_demo_run(demo, tmp_path):
    """``--report report.html --configfile config/demo.yaml`` on the tiny demo run (its folders
    given with --config, as make demo does; the report written to a temporary folder)."""
    (cmd,) = [c for c in all_commands() if "--report" in c]
    words = shlex.split(cmd)
    assert words[0] == SNAKEMAKE and "--configfile" in words
    html = tmp_path / "report.html"
    args = [w if w != "report.html" else str(html) for w in words[1:]]
    res = _run(
        [
            sys.executable,
            "-m",
            "snakemake",
            *args,
            "--config",
            f"bids_dir={demo['bids']}",
            f"output_dir={demo['results']}",
            f"work_dir={demo['work']}",
        ]
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert html.stat().st_size > 10_000

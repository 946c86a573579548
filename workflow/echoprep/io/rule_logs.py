"""Where each rule's log and Snakemake benchmark go, beside the output registry.

Every rule writes its standard error to ``<work_dir>/logs/<name>.log`` and Snakemake's
benchmark record to ``<work_dir>/benchmarks/<name>.tsv``, with one ``<name>`` per job built
from the rule's ``log`` (:class:`echoprep.plan.rule.RuleDef`): the derivative folder of the
rule's outputs (its name read from the folder table, :func:`echoprep.io.outputs.folder_name`),
the key of the job (the same wildcards as its outputs: run, session, subject, ...) and a tag
that tells the rules writing to one folder at one key apart. The names stay unique across
rules (``tests/unit/test_outputs_registry.py``).
"""

from __future__ import annotations

from pathlib import Path

from echoprep.io.outputs import run_key

#: Job keys of the log names: (key folder, key stem) of a run, session, subject's GLM folder,
#: subject and of the whole dataset.
RUN_KEY = run_key()
SESSION_KEY = ("{ses_dir}", "{ses_prefix}")
SUBJECT_DIR_KEY = ("{sub_dir}", "{sub_prefix}")
SUBJECT_KEY = ("", "sub-{subject}")
TOP_KEY = ("", "")

#: ``(folder, (key folder, key stem), tag)`` of a rule's log: the job's name is
#: ``<folder>/<key folder>/<key stem>_<tag>`` (empty parts left out).
LogName = tuple[str, tuple[str, str], str]


def log_name(log: LogName) -> str:
    """The job name pattern of a rule's log (``nordic/{run_dir}/{run_prefix}``)."""
    folder, (key_folder, stem), tag = log
    name = "_".join(p for p in (stem, tag) if p)
    return "/".join(p for p in (folder, key_folder, name) if p)


def log_path(work_dir: str | Path, log: LogName) -> Path:
    """``<work_dir>/logs/<name>.log`` of a rule (a wildcard pattern)."""
    return Path(work_dir) / "logs" / f"{log_name(log)}.log"


def benchmark_path(work_dir: str | Path, log: LogName) -> Path:
    """``<work_dir>/benchmarks/<name>.tsv`` of a rule (a wildcard pattern)."""
    return Path(work_dir) / "benchmarks" / f"{log_name(log)}.tsv"


__all__ = [
    "RUN_KEY",
    "SESSION_KEY",
    "SUBJECT_DIR_KEY",
    "SUBJECT_KEY",
    "TOP_KEY",
    "LogName",
    "benchmark_path",
    "log_name",
    "log_path",
]

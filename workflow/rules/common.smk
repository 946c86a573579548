# Input discovery, derivative path helpers and the command prefix shared by every rule.

import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from echoprep.io.bids import BIDSInputError, discover
from echoprep.io.paths import run_dir, run_output, run_prefix

OUT = Path(config["output_dir"])
WORK = Path(config["work_dir"])
LOGS = WORK / "logs"
BENCH = WORK / "benchmarks"
PKG_DIR = Path(workflow.basedir) / "workflow"

try:
    DATASET = discover(
        config["bids_dir"],
        participant_label=config["participant_label"] or None,
        exclude=config["exclude"],
        sessions=config["sessions"] or None,
        task=config["task"],
        cache_dir=WORK / "bids_index",
    )
except BIDSInputError as exc:
    raise WorkflowError(str(exc)) from None

#: Runs by their file-name stem ("sub-01_ses-01_task-images_run-01").
RUNS = {run_prefix(r.entities): r for r in DATASET.runs}
#: NORDIC variants: "raw" = no NORDIC (the NORDIC stage adds "nordic").
NORDIC_VARIANTS = ["raw"]


wildcard_constraints:
    run_prefix=r"sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*",
    run_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    nordic=r"raw|nordic",


# Inside a conda env or module, "python" is the env's; without a deployment method, the
# environment running Snakemake (its venv holds echoprep's dependencies). sys.prefix, not
# sys.executable: `snakemake` and `python -m snakemake` must give the same command, or
# Snakemake would see changed code and rerun finished jobs.
_deploy = workflow.deployment_settings.deployment_method
PYTHON = "python" if _deploy else str(Path(sys.prefix) / "bin" / "python")
#: Prefix of every echoprep command: the package from this checkout, BLAS threads = rule threads.
ECHOPREP = (
    f"OMP_NUM_THREADS={{threads}} OPENBLAS_NUM_THREADS={{threads}} MKL_NUM_THREADS={{threads}} "
    f"PYTHONPATH={PKG_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}} {PYTHON} -m echoprep"
)


def run_of(wildcards):
    """The discovered Run a job's wildcards refer to."""
    return RUNS[wildcards.run_prefix]


def run_key(run):
    """(run_dir, run_prefix) of a discovered Run."""
    return run_dir(run.entities), run_prefix(run.entities)


def run_mb(run, copies):
    """Memory (MB) for `copies` float32 copies of all echoes of a run, plus 500 MB."""
    nvox = run.shape[0] * run.shape[1] * run.shape[2]
    return int(500 + copies * len(run.echoes) * nvox * run.n_volumes * 4 / 1e6)

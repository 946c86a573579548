# Input discovery, derivative path helpers and the command prefix shared by every rule.

import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from echoprep.io.bids import BIDSInputError, discover
from echoprep.io.paths import run_dir, run_output, run_prefix
from echoprep.stages.combine import OUTPUTS as COMBINE_OUTPUTS
from echoprep.stages.nordic import KERNEL_OPTIONS as NORDIC_OPTIONS
from echoprep.stages.nordic import OUTPUTS as NORDIC_OUTPUTS

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
#: NORDIC variants: "raw" = NORDIC off, "nordic" = on (config nordic.enabled).
NORDIC_VARIANTS = ["raw", "nordic"] if config["nordic"]["enabled"] else ["raw"]


wildcard_constraints:
    run_prefix=r"sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*",
    run_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    nordic=r"raw|nordic",
    echo=r"[0-9]+",


# Every shell command runs `python -m echoprep` with the package from this checkout. Inside a
# conda env (or module) "python" is the env's; without a deployment method it is the one of the
# environment running Snakemake (its venv holds echoprep's dependencies). Snakemake itself sets
# OMP/OPENBLAS/MKL_NUM_THREADS to each job's threads.
_path = (
    ""
    if workflow.deployment_settings.deployment_method
    else f"export PATH={Path(sys.prefix) / 'bin'}:$PATH; "
)
shell.prefix(
    # the prefix is formatted like a shell command: braces for the shell are doubled twice
    f"set -euo pipefail; {_path}export PYTHONPATH={PKG_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
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


def config_json():
    """The validated config as sorted JSON (the same config in another key order is no change)."""
    return json.dumps(config, sort_keys=True)


# --- NORDIC (nordic.smk) ----------------------------------------------------------------


def nordic_outputs(run=None, echo="{echo}"):
    """NORDIC output files (and sidecars) of one echo, as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    files = {}
    for name, (suffix, entities, ext) in NORDIC_OUTPUTS.items():
        ents = {"echo": echo, **entities}
        for label, extension in ((name, ext), (f"{name}_json", ".json")):
            files[label] = str(
                run_output(OUT / "nordic", key, suffix, extension, **ents)
            )
    return files


def echo_of(wildcards):
    """The EchoFiles of a job's run and echo."""
    for e in run_of(wildcards).echoes:
        if str(e.echo) == wildcards.echo:
            return e
    raise WorkflowError(f"{wildcards.run_prefix} has no echo {wildcards.echo}")


def nordic_inputs(wildcards):
    """Magnitude (+ phase when the run has it and magnitude_only is off) of one echo."""
    e = echo_of(wildcards)
    files = {"mag": str(e.mag)}
    if e.phase is not None and not config["nordic"]["magnitude_only"]:
        files["phase"] = str(e.phase)
    return files


def nordic_options():
    """The kernel options of the config, as sorted JSON."""
    return json.dumps({k: config["nordic"][k] for k in NORDIC_OPTIONS}, sort_keys=True)


def noise_volumes_to_drop(wildcards):
    """Trailing noise volumes the combine stage drops (NORDIC removes its own by default)."""
    n = config["nordic"]["noise_volumes"]
    return (
        n if wildcards.nordic == "raw" or config["nordic"]["keep_noise_volumes"] else 0
    )


# --- echo handling (combine.smk) -------------------------------------------------------


def combine_root(nordic):
    return OUT / f"combine-{nordic}"


def combine_outputs(variant, run=None, nordic="{nordic}"):
    """Output files (and their JSON sidecars) of a combine variant, as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    files = {}
    for name, (suffix, entities, ext, _tool) in COMBINE_OUTPUTS[variant].items():
        for label, extension in ((name, ext), (f"{name}_json", ".json")):
            path = run_output(combine_root(nordic), key, suffix, extension, **entities)
            files[label] = str(path)
    return files


def echo_inputs(wildcards):
    """Magnitude image per echo of the run (echo-time order) for the NORDIC variant."""
    run = run_of(wildcards)
    if wildcards.nordic == "raw":
        return [str(e.mag) for e in run.echoes]
    return [nordic_outputs(run, str(e.echo))["bold"] for e in run.echoes]


def echo_times(wildcards):
    """Echo times (s) of the run, space-separated."""
    return " ".join(f"{t:.6g}" for t in run_of(wildcards).echo_times)


def repetition_time(wildcards):
    return run_of(wildcards).repetition_time


def combine_targets():
    """Every combine output requested by the config, plus the dataset descriptions."""
    targets = []
    if "nordic" in NORDIC_VARIANTS:
        targets.append(str(OUT / "nordic" / "dataset_description.json"))
    for nordic in NORDIC_VARIANTS:
        targets.append(str(combine_root(nordic) / "dataset_description.json"))
        for run in DATASET.runs:
            for variant in config["variants"]["combine"]:
                targets.extend(combine_outputs(variant, run, nordic).values())
    return targets

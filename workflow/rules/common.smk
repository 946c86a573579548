# Glue between Snakemake and the package: input discovery, the plan, the shell prefix. Which jobs run and which files they read is decided by echoprep.plan
# (unit-tested without Snakemake); every output name comes from echoprep.io.outputs.

import gc
import os
import sys
from shlex import quote as _quote
from pathlib import Path

from snakemake.io import report as _report

from echoprep.io.bids import BIDSInputError, discover
from echoprep.plan import Plan, PlanError, RuleHooks, discovery_options
from echoprep.preflight import PreflightError, check_workflow

# Planning makes millions of objects that live until the end (jobs, files, wildcards), and
# Python's default collector scans every one of them again in each full collection; those
# scans took about 15 % of a LAION-size dry run. Full collections 100 times rarer: young
# objects are collected as before (docs/architecture.md §2, "Planning").
_young, _middle, _ = gc.get_threshold()
gc.set_threshold(_young, _middle, 1000)

OUT = Path(config["output_dir"])
WORK = Path(config["work_dir"])
PKG_DIR = Path(workflow.basedir) / "workflow"
REPORT_CAPTIONS = Path(workflow.basedir) / "workflow" / "report"
# matplotlib (imported by tedana, nilearn and the report) caches fonts under $HOME unless told
# otherwise: keep every write inside work_dir; a value the user set is kept
MPLCONFIGDIR = os.environ.setdefault("MPLCONFIGDIR", str(WORK / "tmp" / "matplotlib"))

try:
    DATASET = discover(
        config["bids_dir"],
        **discovery_options(config),
        cache_dir=WORK / "bids_index",
        # a cluster job (or a group job's sub-process) reuses the dataset the main process
        # has just discovered and cached, without walking the input tree again
        trust_cache=not workflow.is_main_process,
    )
except BIDSInputError as exc:
    refuse(str(exc))

# the specs mark temporary outputs with Snakemake's temp, outputs of `snakemake --report` with
# its report, and read the cluster profile's groups (known once the executor is, after the
# rules are parsed)
try:  # (a config the runs cannot have: echo handlings, native grids)
    PLAN = Plan(
        config,
        DATASET,
        RuleHooks(
            temp=temp,
            groups=lambda: workflow.group_settings.overwrite_groups,
            in_report=_report,
            captions=str(REPORT_CAPTIONS),
        ),
    )
except PlanError as exc:
    refuse(str(exc))
# plan warnings: once, by the main process (not again in every cluster job's log)
if workflow.is_main_process:
    try:  # (a configured coefficient file that does not exist, a broken FreeSurfer folder,
        # or spatial.tr_out with runs without slice times stops the workflow here)
        _slice_line = PLAN.slice_timing_summary()
        _gradient_line = PLAN.gradient_summary()
        _surface_line = PLAN.surface_summary()
    except PlanError as exc:
        refuse(str(exc))
    for _warning in (
        PLAN.publish_warning(),
        PLAN.sessions_warning(),
        PLAN.sdc_summary(),
        _slice_line,
        _gradient_line,
        _surface_line,
        PLAN.reference_note(),
        PLAN.echo_note(),
    ):
        if _warning:
            print(_warning, file=sys.stderr)


def all_targets(wildcards):
    """Every output the config asks for (rule all); a plan problem is a workflow error.
    An input function, so a cluster job (which never runs rule all) does not list them.
    """
    try:
        return PLAN.targets()
    except PlanError as exc:
        refuse(str(exc))


def shell_of(scope):
    """The shell command of the spec in ``scope``: the loop variable of jobs.smk while the
    rules are read, the spec named by the job's ``rule`` when a job runs."""
    return (
        PLAN.spec_of(scope["rule"]).shell if "rule" in scope else scope["_spec"].shell
    )


def print_warning(message):
    print(message, file=sys.stderr)


def preflight(wildcards):
    """Placeholder partition/account, missing conda, missing optional packages: stop (or warn
    for a dry run) before any env is built or job submitted. An input of rule all, so that it
    runs once the executor is known (echoprep.preflight)."""
    try:
        check_workflow(workflow, config, sys.argv, warn=print_warning)
    except PreflightError as exc:
        refuse(str(exc))
    return []


wildcard_constraints:
    run_prefix=r"sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*",
    run_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    nordic=r"raw|nordic",
    combine=r"single|optcom|denoised",
    echo=r"[0-9]+",
    subject=r"[A-Za-z0-9]+",
    ses_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    ses_prefix=r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+",
    sub_dir=r"sub-[A-Za-z0-9]+/func",
    sub_prefix=r"sub-[A-Za-z0-9]+_task-[A-Za-z0-9]+",
    nrep=r"[0-9]+",
    roi_category=r"[A-Za-z0-9]+",
    roi_label=r"[A-Za-z0-9]+",
    roi_res=r"[0-9]+(pt[0-9]+)?",
    folder=PLAN.folder_pattern(),


# Every shell command runs `python -m echoprep` with the package from this checkout. Inside a
# conda env (or module) "python" is the env's; without a deployment method it is the one of the
# environment running Snakemake (its venv holds echoprep's dependencies). Snakemake itself sets
# OMP/OPENBLAS/MKL_NUM_THREADS to each job's threads, scaled down to --cores; `python -m
# echoprep ... --threads {params.threads}` sets them to the rule's fixed count again before
# numpy starts (echoprep/__main__.py), so results do not depend on --cores.
# (`--sdm env-modules` without any rule's envmodules is the no-conda way to run a profile that
# sets conda: it deploys nothing, so the venv's python is used as without a method)
_deployed = {m.name for m in workflow.deployment_settings.deployment_method}
_path = (
    ""
    if _deployed & {"CONDA", "APPTAINER"}
    else f"export PATH={_quote(str(Path(sys.prefix) / 'bin'))}:$PATH; "
)
shell.prefix(
    # the prefix is formatted like a shell command: braces for the shell are doubled twice;
    # paths quoted (a checkout or work_dir with a space)
    f"set -euo pipefail; {_path}"
    f"export PYTHONPATH={_quote(str(PKG_DIR))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export MPLCONFIGDIR={_quote(MPLCONFIGDIR)}; "
)

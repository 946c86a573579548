"""Checks before the first job: cluster placeholders, conda, optional packages.

A run with ``--profile profiles/slurm`` used to fail late and obscurely: every SLURM job asked
for the partition ``CHANGE_ME_partition`` (sbatch refuses it, job after job), a machine without
conda died with ``conda: command not found`` and nothing else, and ``glm.engine: glmsingle`` or
``glm.hdf5: true`` failed inside the glm job because the package was missing. These checks find
all of that once, when the DAG is built, before anything is created or submitted, and say how
to fix it.

When the checks run. Snakemake tells a workflow which executor it runs under only once the DAG
is being built (``workflow.executor_plugin`` is ``None`` while the Snakefile is parsed), so
``workflow/rules/common.smk`` calls :func:`check_workflow` from an input function of
``rule all`` (evaluated once, after the executor is set and before conda envs are created or a
job is submitted). A run that names its own target files instead of ``all`` skips the checks.

What is an error and what a warning (:func:`check`):

- a resource value containing ``CHANGE_ME`` (the profile's placeholders): an **error** when jobs
  are submitted to a cluster (non-local executor), a **warning** for a dry run (``-n``) and for
  a local run (the local executor ignores ``slurm_partition``/``slurm_account``);
- ``conda`` among the deployment methods but neither ``conda`` nor ``mamba`` on ``PATH``: an
  **error** for a run, a dry run (Snakemake itself calls ``conda info`` then, and would stop with
  only "conda: command not found") and ``--conda-create-envs-only``;
- ``glm.engine: glmsingle`` / ``glm.hdf5: true`` whose package the glm job's environment lacks
  (not importable here without conda; not in the fitting rules' env with conda:
  ``envs/echoprep.yaml``, or ``envs/glmsingle.yaml`` for ``glm.engine: glmsingle``, which has
  upstream GLMsingle and h5py): an **error** for a run, a **warning** for a dry run.

Everything else (``--unlock``, ``--report``, ``--list-rules``) is never refused.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml

from echoprep.adapters.sources import GLMSINGLE_REQUIREMENT
from echoprep.install_profile import user_profile_dir
from echoprep.plan.families.glm import fit_env

#: Marker of a value the user must replace (profiles/slurm/config.yaml).
PLACEHOLDER = "CHANGE_ME"

#: Options that need a package outside the core dependencies: (section, key, value that needs
#: it) -> (import name, pip requirement).
OPTIONAL_PACKAGES: dict[tuple[str, str, object], tuple[str, str]] = {
    ("glm", "engine", "glmsingle"): ("glmsingle", GLMSINGLE_REQUIREMENT),
    ("glm", "hdf5", True): ("h5py", "h5py"),
}

_ENVS = Path(__file__).resolve().parents[2] / "envs"
#: The conda env of the rules that fit (glm, glm_reference, glm_heldout) per ``glm.engine``
#: (:func:`echoprep.plan.families.glm.fit_env` picks it):
#: upstream's is ours plus the pinned upstream package.
GLM_ENVS: dict[str, Path] = {
    "echoprep": _ENVS / "echoprep.yaml",
    "glmsingle": _ENVS / "glmsingle.yaml",
}
#: The glm env of the default engine.
GLM_ENV = GLM_ENVS["echoprep"]
#: The env of the fitting rules with ``glm.device: cuda`` (our engine's heavy steps on a GPU:
#: the tedana env plus torch, as NORDIC's with ``nordic.device: cuda``).
GLM_GPU_ENV = _ENVS / "gpu.yaml"


def glm_env(config: Mapping[str, Any]) -> Path:
    """The conda env file of the fitting rules for ``config``'s ``glm.engine`` and
    ``glm.device`` (:data:`GLM_GPU_ENV` for our engine on a GPU; the plan's choice,
    :func:`echoprep.plan.families.glm.fit_env`)."""
    return _ENVS / f"{fit_env(config)}.yaml"


NO_CONDA_FIX = (
    "Two ways out:\n"
    "  1. install conda on this machine (the cluster's login node), e.g. Miniforge "
    "(https://github.com/conda-forge/miniforge), then build the envs once:\n"
    "       .venv/bin/snakemake --profile profiles/slurm --conda-create-envs-only"
    " --config bids_dir=...\n"
    "  2. run without conda, every job from this checkout's .venv (on a filesystem the compute"
    " nodes see), by replacing the profile's deployment method:\n"
    "       .venv/bin/snakemake --profile profiles/slurm --sdm env-modules --config bids_dir=...\n"
    "     (no rule declares env modules, so `--sdm env-modules` only switches conda off)"
)


class Mode(Enum):
    """What Snakemake is about to do with the DAG."""

    RUN = "run"  # execute jobs (local or submitted)
    DRY_RUN = "dry-run"  # -n
    CREATE_ENVS = "create-envs"  # --conda-create-envs-only
    OTHER = "other"  # --report, --unlock, --list-rules, ...


@dataclass(frozen=True)
class Finding:
    """One problem found before the run: ``level`` ``error`` stops it, ``warning`` is printed."""

    level: Literal["error", "warning"]
    message: str


class PreflightError(RuntimeError):
    """At least one preflight check failed; the message lists every problem and its fix."""


def placeholder_resources(resources: Iterable[str]) -> dict[str, str]:
    """Resources whose value contains :data:`PLACEHOLDER`.

    Parameters
    ----------
    resources
        ``KEY=VALUE`` strings, as Snakemake keeps ``--default-resources`` (profile or command
        line; ``workflow.resource_settings.default_resources.args``).

    Returns
    -------
    dict
        Key -> value (quotes removed) of every placeholder, in the given order.
    """
    found: dict[str, str] = {}
    for item in resources:
        key, sep, value = str(item).partition("=")
        value = value.strip().strip("'\"")
        if sep and PLACEHOLDER in value:
            found[key.strip()] = value
    return found


def profile_configs(
    argv: Sequence[str], environ: Mapping[str, str], cwd: Path, home: Path
) -> list[Path]:
    """The ``config.yaml`` of every profile this invocation reads (``--profile``,
    ``--workflow-profile``, ``$SNAKEMAKE_PROFILE``), resolved as Snakemake does: a path, else a
    name under ``$XDG_CONFIG_HOME/snakemake`` (default ``~/.config/snakemake``, where ``echoprep
    install-profile`` links ``profiles/slurm``) or ``/etc/xdg/snakemake``. Missing ones are
    left out."""
    names: list[str] = []
    for i, arg in enumerate(argv):
        for flag in ("--profile", "--workflow-profile"):
            if arg == flag and i + 1 < len(argv):
                names.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                names.append(arg.split("=", 1)[1])
    if not any(a == "--profile" or a.startswith("--profile=") for a in argv):
        if environ.get("SNAKEMAKE_PROFILE"):
            names.append(environ["SNAKEMAKE_PROFILE"])
    found = []
    for name in names:
        candidates = [cwd / name, user_profile_dir(environ, home) / name]
        candidates.append(Path("/etc/xdg/snakemake") / name)
        for folder in candidates:
            if (folder / "config.yaml").is_file():
                found.append((folder / "config.yaml").resolve())
                break
    return found


def placeholder_source(key: str, configs: Iterable[Path]) -> Path | None:
    """The profile ``config.yaml`` whose ``default-resources`` sets ``key`` to a placeholder."""
    for path in configs:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        res = data.get("default-resources") or {}
        items = res.items() if isinstance(res, dict) else (str(r).partition("=")[::2] for r in res)
        for k, v in items:
            if str(k).strip() == key and PLACEHOLDER in str(v):
                return path
    return None


def conda_available(which: Callable[[str], str | None] = shutil.which) -> bool:
    """Whether ``conda`` or ``mamba`` is on ``PATH`` (what Snakemake's conda support calls)."""
    return any(which(exe) for exe in ("conda", "mamba"))


def env_packages(env_file: Path) -> set[str]:
    """Normalised names of the pip and conda packages an env file lists (``envs/*.yaml``), and
    of the lock file its pip section includes with ``-r``."""
    data = yaml.safe_load(env_file.read_text()) or {}
    names: set[str] = set()
    for dep in data.get("dependencies", []):
        reqs = dep.get("pip", []) if isinstance(dep, dict) else [dep]
        for req in reqs:
            req = str(req).strip()
            if req.startswith("-r "):
                lock = env_file.parent / req[3:].strip()
                if lock.is_file():
                    reqs_lock = [ln for ln in lock.read_text().splitlines() if ln.strip()]
                    names |= {_name(r) for r in reqs_lock if not r.lstrip().startswith("#")}
                continue
            names.add(_name(req))
    return names


def _name(req: str) -> str:
    for sep in ("==", ">=", "<=", "=", "<", ">", "[", "@"):
        req = req.split(sep, 1)[0]
    return req.strip().lower().replace("_", "-").replace(".", "-")


def needed_packages(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Optional packages the config needs: ``(option, import name, pip requirement)``, e.g.
    ``("glm.engine: glmsingle", "glmsingle", "glmsingle @ git+https://...")``."""
    out = []
    for (section, key, value), (module, req) in OPTIONAL_PACKAGES.items():
        if (config.get(section) or {}).get(key) == value:
            shown = "true" if value is True else value
            out.append((f"{section}.{key}: {shown}", module, req))
    return out


def check(
    *,
    mode: Mode,
    local_executor: bool,
    default_resources: Iterable[str],
    deployment: Iterable[str],
    conda_found: bool,
    profile_files: Sequence[Path] = (),
    missing_packages: Sequence[tuple[str, str, str]] = (),
    glm_env_file: Path = GLM_ENV,
) -> list[Finding]:
    """Every preflight problem of one invocation (pure: the facts come as arguments).

    Parameters
    ----------
    mode
        What Snakemake does with the DAG (:class:`Mode`).
    local_executor
        Whether jobs run on this machine (Snakemake's local executor) rather than being
        submitted (SLURM and other cluster executors). Ignored unless ``mode`` is ``RUN``.
    default_resources
        ``KEY=VALUE`` strings of ``--default-resources`` (profile or command line).
    deployment
        Software deployment methods in use (``{"conda"}``, ``{"env-modules"}``, empty).
    conda_found
        Whether ``conda`` or ``mamba`` is on ``PATH`` (:func:`conda_available`).
    profile_files
        The profiles' ``config.yaml`` files (:func:`profile_configs`), to name where a
        placeholder is set.
    missing_packages
        ``(option, import name, pip requirement)`` of optional packages the config needs and
        the glm job's environment lacks (:func:`needed_packages`, filtered).
    glm_env_file
        The fitting rules' conda env (:func:`glm_env`), named in the message.

    Returns
    -------
    list of Finding
        Errors and warnings, in that order of checks (placeholders, conda, packages).
    """
    findings: list[Finding] = []
    if mode is Mode.OTHER:
        return findings
    default_resources = list(default_resources)
    placeholders = placeholder_resources(default_resources)
    # --default-resources on the command line replaces the profile's whole list: repeat the rest
    cli = " ".join(
        f"{k}=<yours>" if k in placeholders else f"{k}={v}"
        for k, _, v in (str(r).partition("=") for r in default_resources)
        if k != "tmpdir"
    )
    deployment = {str(d).lower().replace("_", "-") for d in deployment}
    uses_conda = "conda" in deployment or mode is Mode.CREATE_ENVS
    for key, value in placeholders.items():
        source = placeholder_source(key, profile_files)
        where = f"{source}, under default-resources," if source else "--default-resources"
        submit = mode is Mode.RUN and not local_executor
        findings.append(
            Finding(
                "error" if submit else "warning",
                f"{where} sets {key}={value}, a placeholder"
                + (
                    ": no job was submitted."
                    if submit
                    else " (SLURM would refuse every job with it)."
                )
                + f" Fix: set {key} to your cluster's value there,"
                + " or give the whole list on the command line (the option replaces the"
                + f" profile's list): --default-resources {cli}"
                + (
                    " (where your cluster bills jobs to accounts; otherwise delete the line)"
                    if key == "slurm_account"
                    else ""
                )
                + ". `sinfo -s` lists partitions, `sacctmgr show assoc user=$USER` accounts.",
            )
        )
    if uses_conda and not conda_found:
        # an error for a dry run too: Snakemake runs `conda info` then and stops without it
        findings.append(
            Finding(
                "error",
                "the software deployment method is conda (a profile's"
                " `software-deployment-method: conda`, as in profiles/slurm/config.yaml, or"
                " --sdm conda), but neither `conda` nor `mamba` is on PATH, so no job's"
                " environment can be built. " + NO_CONDA_FIX,
            )
        )
    for option, module, req in missing_packages:
        where = (
            f"the glm job's conda env ({glm_env_file.name}) does not include {req}"
            if "conda" in deployment
            else f"{module} cannot be imported by this Python"
        )
        fix = (
            f"set the option back (glm.{option.split('.', 1)[1].split(':')[0]} to its default),"
            " or run without conda from a venv that has it:"
            f" `.venv/bin/pip install {shlex.quote(req)}` then add `--sdm env-modules`"
            if "conda" in deployment
            else "install it into the venv that runs Snakemake:"
            f" `.venv/bin/pip install {shlex.quote(req)}`"
            " (or set the option back to its default)"
        )
        findings.append(
            Finding(
                "error" if mode is Mode.RUN else "warning",
                f"config {option} needs the optional package {req}, but {where}. Fix: {fix}.",
            )
        )
    return findings


def raise_or_warn(findings: Sequence[Finding], warn: Callable[[str], None]) -> None:
    """Hand each warning to ``warn``; raise :class:`PreflightError` listing every error."""
    for f in findings:
        if f.level == "warning":
            warn(f"echoprep preflight warning: {f.message}")
    errors = [f.message for f in findings if f.level == "error"]
    if errors:
        raise PreflightError(
            "echoprep preflight: nothing was run or submitted\n"
            + "\n".join(f"- {e}" for e in errors)
        )


def importable(module: str) -> bool:
    """Whether ``module`` can be imported by this Python (without importing it)."""
    return importlib.util.find_spec(module) is not None


def missing_for(
    config: Mapping[str, Any], deployment: Iterable[str], env_file: Path | None = None
) -> list[tuple[str, str, str]]:
    """:func:`needed_packages` that the glm job's environment lacks: the conda env file's
    packages with conda (``env_file``, default :func:`glm_env` of the config), this Python's
    importable modules otherwise."""
    deployment = {str(d).lower().replace("_", "-") for d in deployment}
    if "conda" in deployment:
        have = env_packages(env_file if env_file is not None else glm_env(config))
        return [n for n in needed_packages(config) if _name(n[2]) not in have]
    return [n for n in needed_packages(config) if not importable(n[1])]


def check_workflow(
    workflow: Any, config: Mapping[str, Any], argv: Sequence[str], warn: Callable[[str], None]
) -> None:
    """Gather the facts from Snakemake's ``workflow`` object and run :func:`check`.

    Call it while the DAG is built (an input function of ``rule all``), when
    ``workflow.executor_plugin`` is known. Only the main Snakemake process checks (not the
    job-level processes on the nodes).

    Raises
    ------
    PreflightError
        With every problem and its fix, when a check fails.
    """
    from snakemake_interface_executor_plugins.settings import ExecMode

    if workflow.exec_mode != ExecMode.DEFAULT:
        return
    plugin = workflow.executor_plugin
    if plugin is not None and plugin.common_settings.dryrun_exec:
        mode = Mode.DRY_RUN
    elif plugin is not None and plugin.common_settings.touch_exec:
        mode = Mode.OTHER
    elif plugin is not None:
        mode = Mode.RUN
    elif "--conda-create-envs-only" in argv:
        mode = Mode.CREATE_ENVS  # Snakemake builds the DAG without an executor here
    else:
        mode = Mode.OTHER
    defaults = workflow.resource_settings.default_resources
    deployment = [
        m.name.lower().replace("_", "-") for m in workflow.deployment_settings.deployment_method
    ]
    findings = check(
        mode=mode,
        local_executor=bool(plugin is None or plugin.common_settings.local_exec),
        default_resources=list(defaults.args or []) if defaults is not None else [],
        deployment=deployment,
        conda_found=conda_available(),
        profile_files=profile_configs(argv, os.environ, Path.cwd(), Path.home()),
        missing_packages=missing_for(config, deployment),
        glm_env_file=glm_env(config),
    )
    raise_or_warn(findings, warn)


__all__ = [
    "GLM_ENV",
    "GLM_ENVS",
    "GLM_GPU_ENV",
    "NO_CONDA_FIX",
    "OPTIONAL_PACKAGES",
    "PLACEHOLDER",
    "Finding",
    "Mode",
    "PreflightError",
    "check",
    "check_workflow",
    "conda_available",
    "env_packages",
    "glm_env",
    "importable",
    "missing_for",
    "needed_packages",
    "placeholder_resources",
    "placeholder_source",
    "profile_configs",
    "raise_or_warn",
]

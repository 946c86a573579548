"""A rule's frozen definition, the spec Snakemake takes from it, and the base of a family.

Every rule is one :class:`RuleDef` constant in the module of its family
(:mod:`echoprep.plan.families`): name, job level, log, threads, minutes, memory model, conda
env, profile group, command and console message. Beside it, the family class has a method of
the rule's name that returns the rule's files and arguments (:class:`RuleFiles`); the plan
joins the two into a :class:`RuleSpec`, which the rule block of its kind in
``workflow/rules/jobs.smk`` passes to Snakemake. See ``docs/architecture.md``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from echoprep import resources as res
from echoprep.io.paths import sidecar_path
from echoprep.plan.context import PlanContext

#: A memory model: (the rule's family, the job's wildcards, the retry attempt) -> MB.
Memory = Callable[[Any, Any, int], int]
#: A wildcard constraint no value matches: a rule with no work under a config has no jobs.
NO_JOBS = "(?!)"


def fixed_mb(mb: int) -> Memory:
    """A memory model that does not depend on the data: ``mb`` times the attempt."""

    def memory(family: Any, wc: Any, attempt: int) -> int:
        return mb * attempt

    return memory


def run_copies_mb(copies: float) -> Memory:
    """A memory model of ``copies`` float32 copies of all echoes of the job's run
    (:func:`echoprep.resources.run_mb`)."""

    def memory(family: Any, wc: Any, attempt: int) -> int:
        return res.run_mb(family.ctx.job_run_size(wc), copies) * attempt

    return memory


@dataclass(frozen=True)
class RuleDef:
    """One rule's definition (what does not depend on the config or the dataset).

    Attributes
    ----------
    name
        The rule's name (a per-run chain's rule for runs with another echo count is
        ``<name>_<n>echoes``).
    doc
        What one job of the rule makes, in one line: the rule's docstring (``snakemake
        --list-rules``) and its heading in the rules reference (docs/reference/rules.md).
    level
        One job per ``run``, ``session``, ``subject``, ``folder`` or for the ``dataset``.
    log
        ``(folder, (key folder, key stem), tag)`` of the job's log and benchmark name
        (:func:`echoprep.io.rule_logs.log_name`).
    command
        The shell command without its log redirection (``{input.x:q}``, ``{params.x}``...);
        empty for a rule that runs inside the Snakemake process (``run``).
    message
        The console line (``{wildcards.x}`` filled by Snakemake).
    memory
        The memory model (:data:`Memory`; :func:`fixed_mb` for a fixed figure); None for a
        rule that runs inside the Snakemake process with no resources (and no
        ``params.threads``).
    minutes
        Runtime (min) of the first attempt for a LAION-fMRI run or session (about 3 x the wall
        time measured on 2 cores, ``benchmarks/laion_session.json``), per echo when
        ``per_echo``; scaled up (never down) by ``scale``.
    threads
        What the scheduler reserves and what the job computes with, whatever ``--cores``
        (``--cores 1`` scaling Snakemake's own ``{threads}`` down changed ANTs's, BLAS's and
        torch's results): also ``params.threads``.
    scale
        What the job's work grows with: ``"run"``, ``"session"``, ``"subject"`` (every session
        of the subject) or None (fixed).
    per_echo
        The job treats the run's echoes one after another: memory of one echo, minutes times
        the echoes.
    env
        The conda env file under ``envs/`` (``"spatial"``); the family may choose it per
        config (chains, the GLM's engine).
    local
        Runs inside the Snakemake process (``localrule``): no benchmark, never submitted.
    grouped
        The rule whose profile group (``groups:`` of a cluster profile) the jobs join when the
        profile names none for the rule itself; a per-run job submitted as a job then joins
        its run's NORDIC chain's (``echoprep.plan.front.RUN_GROUP_RULE``).
    subshell
        The command is a step of a per-run chain: wrapped as ``( ... ) 2> {log:q}`` like the
        chain's steps.
    label
        What the step does, in a chain's console line (``"NORDIC"``).
    """

    name: str
    doc: str
    level: str
    log: tuple[str, tuple[str, str], str]
    command: str
    message: str
    memory: Memory | None
    minutes: int = 5
    threads: int = 1
    scale: str | None = None
    per_echo: bool = False
    env: str = "echoprep"
    local: bool = False
    grouped: str | None = None
    subshell: bool = False
    label: str = ""


@dataclass(frozen=True)
class RuleFiles:
    """What a family's rule method returns: the rule's files and arguments.

    Attributes
    ----------
    input
        An input function (wildcards -> ``{name: path or paths}``) or a ``{name: pattern or
        input function}`` mapping.
    output
        ``{name: pattern}`` (sidecars included, keys ``<name>_json``).
    params
        ``{name: value or function}`` (functions of ``wildcards``, ``input``, ``output``).
    wildcard_constraints
        The rule's own constraints (beside the workflow's in ``common.smk``).
    resources
        Resources beyond ``mem_mb`` and ``runtime`` (``gpu``).
    env, message, command
        Overrides of the definition's, for a rule whose env, line or command depends on the
        config (a per-run chain, the GLM's engine).
    run
        The function an in-process rule runs, ``(input, output, params, log)``.
    """

    input: Callable[[Any], dict[str, Any]] | Mapping[str, Any]
    output: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    wildcard_constraints: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, int] = field(default_factory=dict)
    env: str | None = None
    message: str | None = None
    command: str | None = None
    run: Callable[..., None] | None = None


@dataclass(frozen=True)
class RuleSpec:
    """Everything Snakemake takes for one rule (``workflow/rules/jobs.smk``).

    Attributes
    ----------
    name
        The rule's name.
    input_function
        Wildcards -> ``{name: path or paths}`` (passed through ``unpack``).
    input
        ``{name: pattern}`` (wildcard patterns Snakemake fills; passed as keywords).
    output, params, log, benchmark, resources, group, wildcard_constraints, conda, message,
    threads
        As in a rule block; ``benchmark`` None for a local rule, ``group`` a function of the
        wildcards or None.
    shell
        The shell command with its log redirection; empty for an in-process rule.
    run
        The in-process rule's function ``(input, output, params, log)``, else None.
    local
        ``localrule``.
    doc
        The rule's one-line description and the place of its definition (its docstring in
        ``snakemake --list-rules``).
    """

    name: str
    input_function: Callable[[Any], dict[str, Any]]
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    params: Mapping[str, Any]
    log: str
    benchmark: str | None
    resources: Mapping[str, Any]
    group: Callable[[Any], str | None] | None = None
    wildcard_constraints: Mapping[str, str] = field(default_factory=dict)
    conda: str | None = None
    message: str | None = None
    threads: int = 1
    shell: str = ""
    run: Callable[..., None] | None = None
    local: bool = False
    doc: str = ""


def _no_inputs(wc: Any) -> dict[str, Any]:
    return {}


def with_signature(value: Any) -> Any:
    """``value`` with its parameters read once, for Snakemake: the same function (or bound
    method), its parameters recorded where Snakemake looks for them first; anything else
    unchanged.

    Before every call of an input, params, resources or group function Snakemake reads the
    function's parameters (which of ``input``, ``threads``, ``attempt``... to pass), twice,
    with :func:`inspect.signature` unless the function carries them
    (``snakemake.common.overwrite_function_params``, what its own ``ioutils`` helpers use).
    At LAION-fMRI size this removes about 109,000 of a dry run's 153,000 reads, about 6 % of
    its CPU time (docs/cluster.md, "The whole dataset"); the rest are of Snakemake's own
    resource wrappers.

    Parameters
    ----------
    value
        A rule's input, params, resources or group value.

    Returns
    -------
    Any
        ``value`` itself; only a callable that takes no attribute and is not a bound method
        (a builtin) comes back as a function that calls it.
    """
    if not callable(value) or isinstance(value, type):
        return value
    # here, not at the top: the jobs' conda envs import the plan's modules without Snakemake
    try:
        from snakemake.common import overwrite_function_params
    except ImportError:  # no Snakemake, nothing that reads the parameters
        return value

    params = inspect.signature(value).parameters
    if inspect.ismethod(value):
        # a bound method takes no attribute but reads its function's; every method bound to
        # it has these parameters (its own, without self)
        overwrite_function_params(value.__func__, params)
        return value
    target = value
    if not hasattr(value, "__dict__"):

        @functools.wraps(value)
        def target(*args: Any, **kwargs: Any) -> Any:
            return value(*args, **kwargs)

    overwrite_function_params(target, params)
    return target


def with_signatures(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`with_signature` of each of ``values``."""
    return {k: with_signature(v) for k, v in values.items()}


def split_inputs(
    inputs: Callable[[Any], dict[str, Any]] | Mapping[str, Any],
) -> tuple[Callable[[Any], dict[str, Any]], Mapping[str, Any]]:
    """``(input function, patterns)`` of a rule's inputs: a function as it is, a mapping as
    keywords (its values patterns or input functions Snakemake calls)."""
    if callable(inputs):
        return inputs, {}
    return _no_inputs, dict(inputs)


def sidecars_of(paths: Iterable[Any]) -> set[str]:
    """The JSON sidecars (:func:`echoprep.io.paths.sidecar_path`) of those of ``paths`` (files
    or patterns) that are not JSON files themselves."""
    return {str(sidecar_path(str(p))) for p in paths if not str(p).endswith(".json")}


def declared_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs a rule declares to Snakemake: its files but the JSON sidecars of the others.

    A job writes each image's or table's sidecar beside it (:mod:`echoprep.io.sidecars`), in
    the same job; declaring them as well would nearly double the files Snakemake tracks per
    job, and its planning time grows with them (docs/architecture.md, "Sidecars"). A sidecar
    of a temporary output stays declared, flagged as its image is, so that Snakemake deletes
    the two together.

    Parameters
    ----------
    outputs
        ``{name: pattern}``, sidecars included (:attr:`RuleFiles.output`).

    Returns
    -------
    dict
        ``{name: pattern}`` without the unflagged sidecars, in the same order.
    """
    sidecars = sidecars_of(outputs.values())
    return {k: v for k, v in outputs.items() if str(v) not in sidecars or getattr(v, "flags", None)}


def without_sidecars(files: Mapping[str, Any]) -> dict[str, Any]:
    """``files`` without the sidecars of the others: what a rule that reads them declares as
    inputs (their jobs write the sidecars without declaring them, :func:`declared_outputs`;
    the image stands for its sidecar)."""
    sidecars = sidecars_of(files.values())
    return {k: v for k, v in files.items() if str(v) not in sidecars}


def env_file(env: str) -> str:
    """A conda env file as a rule file names it (relative to ``workflow/rules``)."""
    return env if "/" in env else f"../../envs/{env}.yaml"


class Family:
    """The rules of one family (one class per module of :mod:`echoprep.plan.families`).

    A family holds its rules' :class:`RuleDef` constants in :attr:`RULES` and, per rule, a
    method of the rule's name returning its :class:`RuleFiles`; :meth:`folders` names the
    derivative folders its rules write. It reaches the config, the
    dataset and the paths through :attr:`ctx` and other families through its constructor's
    arguments (composition, no inheritance between families).
    """

    #: The family's rules.
    RULES: tuple[RuleDef, ...] = ()

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.dataset = ctx.dataset

    def folders(self) -> list[str]:
        """The derivative folders the family's rules write under this config (each gets a
        dataset description); none by default."""
        return []


__all__ = [
    "NO_JOBS",
    "Family",
    "Memory",
    "RuleDef",
    "RuleFiles",
    "RuleSpec",
    "declared_outputs",
    "env_file",
    "fixed_mb",
    "run_copies_mb",
    "sidecars_of",
    "split_inputs",
    "with_signature",
    "with_signatures",
    "without_sidecars",
]

"""One spec per rule (echoprep.plan.specs): every rule of the rule files has one and takes its
files, params, log and resources from it; every spec's log is the registry's; the names its
shell command uses are the spec's; every row of the rule tables of echoprep.resources is read
by the jobs of its rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from snakemake.io import apply_wildcards, regex_from_filepattern, update_wildcard_constraints
from snakemake.iocontainers import Wildcards

from echoprep import resources as res
from echoprep.io import rule_logs
from echoprep.plan import Plan, PlanError, RuleHooks
from echoprep.plan.chains import CHAIN_RULES
from echoprep.plan.specs import RuleSpec, SpecPlan
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan, plan_config
from helpers.snake import (
    ROOT,
    local_rules,
    planned_outputs,
    rule_aliases,
    rule_blocks,
    wildcard_constraints,
)

#: Rules without a spec of their own: the target rule, and ``use rule tedana as
#: tedana_nordic`` (tedana's spec, its own wildcard constraint).
NO_SPEC = {"all", "tedana_nordic"}
#: Config under which every rule of the rule files has jobs (spatial_run: no chain runs in
#: every session; single_echo and optcom: some side does not fold them).
EVERY_RULE = {"nordic": {"enabled": False}}
#: Configs whose jobs, together, are jobs of every rule of the rule files (on :func:`bids`,
#: with a user ROI): spatial preprocessing off leaves the raw side without a chain, so its
#: optimal combination is a job of ``optcom`` (which the two above fold into a chain).
JOB_CONFIGS = {
    "default": {},
    "nordic-off": EVERY_RULE,
    "spatial-off": {**EVERY_RULE, "spatial": {"enabled": False}},
}


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    # two runs: a session's held-out fit (glm_heldout) needs two
    root = tmp_path_factory.mktemp("specs") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01", "02"), data=False)
    return root


@pytest.fixture(scope="module")
def rois(tmp_path_factory) -> Path:
    """A ``rois.dir`` with one user ROI of sub-01 (jobs of ``roi_mask``)."""
    root = tmp_path_factory.mktemp("rois")
    path = root / "sub-01" / "visual" / "sub-01_space-T1w_label-V1_mask.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), path)
    return root


def _job_wildcards(spec: RuleSpec, files: set[str]) -> list[Wildcards]:
    """The wildcards of each job of a rule, from the output files Snakemake planned for it:
    the values that make an output pattern of its spec (with the workflow's constraints, which
    tell adjacent wildcards apart) one of the files; every pattern of the spec, filled with
    them, is then one of the files (one job, whole)."""
    constraints = wildcard_constraints()
    found: dict[frozenset, Wildcards] = {}
    for path in sorted(files):
        for pattern in spec.output.values():
            regex = regex_from_filepattern(update_wildcard_constraints(pattern, {}, constraints))
            match = re.match(regex, path)
            if match is None:
                continue
            values = match.groupdict()
            if frozenset(values.items()) not in found:
                outputs = {apply_wildcards(p, values) for p in spec.output.values()}
                assert outputs <= files, (spec.name, path, sorted(outputs - files))
                found[frozenset(values.items())] = Wildcards(fromdict=values)
            break
        else:
            raise AssertionError(f"{path}: no output pattern of {spec.name} makes it")
    return list(found.values())


@pytest.fixture(scope="module")
def scheduled(bids, rois, tmp_path_factory) -> dict[str, tuple[Plan, dict[str, Any]]]:
    """Per config of :data:`JOB_CONFIGS` (with the user ROI): its plan and, per rule with jobs
    (as Snakemake plans them on :func:`bids`), the rule of its spec, the echo count (a per-run
    chain's, else None), the spec and its jobs' wildcards. A rule of ``use rule BASE as NAME``
    has BASE's spec."""
    aliases = rule_aliases()
    out = {}
    for label, config in JOB_CONFIGS.items():
        tmp = tmp_path_factory.mktemp(f"jobs-{label}")
        config = {**config, "rois": {"dir": str(rois)}}
        plan = make_plan(bids, tmp, **config)
        specs: dict[str, tuple[str, int | None, RuleSpec]] = {}
        for rule in SpecPlan.SPECS:
            counts: list[int | None] = [None]
            if rule in CHAIN_RULES.values():  # as the rule files: a side's, if it has a chain
                sides = [s for s, r in CHAIN_RULES.items() if r == rule]
                counts = list(plan.echo_counts()) if set(sides) & set(plan.chain_sides()) else []
            for n in counts:
                spec = plan.spec(rule, n)
                specs[spec.name] = (rule, n, spec)
        path = tmp / "config.json"
        path.write_text(json.dumps(plan_config(bids, tmp, **config)))
        jobs = {}
        for name, files in planned_outputs("--configfile", str(path)).items():
            rule, echoes, spec = specs[aliases.get(name, name)]
            jobs[name] = (rule, echoes, spec, _job_wildcards(spec, files))
        out[label] = (plan, jobs)
    return out


def _specs(plan: Plan) -> dict:
    return {
        rule: plan.spec(rule, 3) if rule in ("nordic", "spatial_resample") else plan.spec(rule)
        for rule in SpecPlan.SPECS
    }


def test_every_rule_has_a_spec_and_every_spec_a_rule():
    assert set(rule_blocks()) - NO_SPEC == set(SpecPlan.SPECS)


def test_every_spec_logs_under_the_registry_and_declares_resources(bids, tmp_path):
    plan = make_plan(bids, tmp_path)
    local = local_rules()
    work = plan.config["work_dir"]
    for rule, spec in _specs(plan).items():
        assert spec.log == str(rule_logs.log_path(work, rule)), rule
        if rule in local:
            assert spec.benchmark is None, rule
        else:
            assert spec.benchmark == str(rule_logs.benchmark_path(work, rule)), rule
        # run in the main process (confounds: a copy written by Snakemake itself)
        if rule in ("config_snapshot", "dataset_description", "confounds"):
            assert spec.resources == {}, rule
            continue
        assert set(spec.resources) == {"mem_mb", "runtime"}, rule


def _step_commands() -> dict[str, str]:
    """``STEP_COMMANDS`` of common.smk: step -> its command text."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    table = text.split("STEP_COMMANDS = {", 1)[1].split("\n}\n", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r'"(\w+)": \((.*?)\n    \),', table, re.S)}


def _command(plan: Plan, rule: str, block: str, steps: dict[str, str]) -> str:
    """The shell command of ``rule`` (its source ``block``; ``rule``: the rule of its spec):
    the text after ``shell:``, with its steps' commands for a job of several steps."""
    command = block.split("shell:", 1)[-1] if "shell:" in block else ""
    if "step_shell(" in command:  # a chain's steps, or the step of a step's own rule
        command += "".join(steps[s] for s in plan.rule_steps(rule))
    return command


@pytest.mark.parametrize("config", [{}, EVERY_RULE], ids=["default", "nordic-off"])
def test_the_names_a_rule_command_uses_are_its_specs(bids, tmp_path, config):
    """Every ``{params.X}`` and ``{output.X}`` of a rule's shell command (a chain's: its steps'
    commands) is a key of its spec's params and outputs."""
    plan = make_plan(bids, tmp_path, **config)
    blocks = rule_blocks()
    steps = _step_commands()
    checked = 0
    for rule, spec in _specs(plan).items():
        command = _command(plan, rule, blocks[rule], steps)
        for kind, names in (("params", spec.params), ("output", spec.output)):
            used = set(re.findall(rf"\{{{kind}\.(\w+)", command))
            assert used <= set(names), (rule, kind, sorted(used - set(names)))
            checked += len(used)
    assert checked > 50


def test_the_inputs_a_rule_command_uses_are_those_of_each_of_its_jobs(scheduled):
    """Every ``{input.X}`` of a rule's shell command (a chain's: its steps' commands) is a
    name of the inputs of every job of the rule: its spec's input mapping, or what its input
    function gives for the job's wildcards (the jobs Snakemake plans, which it would run with
    a name missing: the job fails on start). Every rule of the rule files has jobs under some
    config of :data:`JOB_CONFIGS`, and each is checked."""
    blocks = rule_blocks()
    steps = _step_commands()
    rules_checked: set[str] = set()
    # rules with jobs, input names their commands use, jobs (now: 29, 42, 89 by default;
    # 20, 32, 44 with NORDIC off; 16, 25, 34 with spatial preprocessing off too)
    least = {"default": (27, 40, 80), "nordic-off": (18, 30, 40), "spatial-off": (14, 23, 30)}
    for label, (plan, jobs) in scheduled.items():
        names = n_jobs = 0
        for name, (rule, _, spec, wildcards) in jobs.items():
            used = set(re.findall(r"\{input\.(\w+)", _command(plan, rule, blocks[name], steps)))
            for wc in wildcards:
                given = set(spec.input(wc) if callable(spec.input) else spec.input)
                assert used <= given, (label, name, dict(wc.items()), sorted(used - given))
            names += len(used)
            n_jobs += len(wildcards)
            rules_checked.add(name)
        counts = (len(jobs), names, n_jobs)
        assert all(c >= m for c, m in zip(counts, least[label], strict=True)), (label, counts)
    assert rules_checked == set(blocks) - {"all"}


class _Reads:
    """Records which keys of a table of :mod:`echoprep.resources` were found there."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def table(self, table: Any) -> Any:
        reads = self.keys

        class Dict(dict):
            def __getitem__(self, key: str) -> Any:
                reads.add(key)
                return super().__getitem__(key)

            def get(self, key: str, default: Any = None) -> Any:
                if key in self:
                    reads.add(key)
                return super().get(key, default)

            def __contains__(self, key: object) -> bool:
                found = super().__contains__(key)
                if found:
                    reads.add(str(key))
                return found

        class Set(frozenset):
            def __contains__(self, key: object) -> bool:
                found = super().__contains__(key)
                if found:
                    reads.add(str(key))
                return found

        return Dict(table) if isinstance(table, dict) else Set(table)


#: The rule-keyed tables of echoprep.resources: rule (or chain step) -> value, or a set of them.
RESOURCE_TABLES = {
    name: value
    for name, value in vars(res).items()
    if name.isupper() and isinstance(value, (dict, frozenset))
}


def test_every_row_of_the_resource_tables_is_read_by_a_job(scheduled, monkeypatch):
    """Each key of each rule table of echoprep.resources (MINUTES, THREADS, RUN_COPIES, ...)
    is read when the plan builds the specs (threads) and computes the memory and run time of
    the jobs Snakemake plans (JOB_CONFIGS, every rule): a row nothing reads (as
    ``tedana_nordic``'s were: ``use rule tedana as tedana_nordic`` takes tedana's spec, its
    threads and resources, computed for ``tedana``) fails here, not silently."""
    assert {"FIXED_MB", "MINUTES", "THREADS", "RUN_COPIES", "RUN_RULES"} <= set(RESOURCE_TABLES)
    reads = {name: _Reads() for name in RESOURCE_TABLES}
    for name, table in RESOURCE_TABLES.items():
        monkeypatch.setattr(res, name, reads[name].table(table))
    jobs = 0
    for plan, rules in scheduled.values():
        for rule, echoes, _, wildcards in rules.values():
            spec = plan.spec(rule, echoes)  # built again: its threads are read here
            for wc in wildcards:
                for resource in spec.resources.values():
                    assert not callable(resource) or resource(wc, 1) > 0, rule
                jobs += 1
    assert jobs > 100
    unread = {
        name: sorted(set(table) - reads[name].keys) for name, table in RESOURCE_TABLES.items()
    }
    assert unread == {name: [] for name in RESOURCE_TABLES}


def test_every_command_of_the_rules_is_a_command_of_the_package():
    """``python -m echoprep <command>`` of every rule (and step) is a sub-command of the CLI
    (a rule whose command is missing fails only when its job runs)."""
    import argparse

    from echoprep.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    texts = [*rule_blocks().values(), *_step_commands().values()]
    used = {m for text in texts for m in re.findall(r"python -m echoprep ([\w-]+)", text)}
    assert len(used) >= 10
    assert sorted(used - set(sub.choices)) == []


def test_no_command_reads_the_rule_files_spec_variable():
    """Snakemake evaluates ``shell:`` (and runs ``run:``) when the job runs, after every rule
    file was read: ``_spec`` then holds the last rule's spec (a chain job ran an empty
    command that way)."""
    for rule, block in rule_blocks().items():
        own = block.split("\n    def _spec_")[0]  # without the spec's source
        for directive in ("shell:", "run:"):
            if directive in own:
                assert "_spec" not in own.split(directive, 1)[1], rule


def test_a_chain_is_asked_for_with_its_echo_count_and_unknown_rules_are_named(bids, tmp_path):
    plan = make_plan(bids, tmp_path)
    with pytest.raises(PlanError, match="rule nordic: expected an echo count"):
        plan.spec("nordic")
    with pytest.raises(KeyError, match="no rule spec 'no_such_rule'"):
        plan.spec("no_such_rule")


def test_hooks_mark_temporary_echoes_and_give_the_profile_groups(bids, tmp_path):
    """Snakemake's temp and the profile's groups reach the specs through the hooks: the
    resampled echoes are temporary with spatial.keep_echoes: false, and a rule's group is read
    when a job asks (the profile is known only after the rules are parsed)."""
    base = make_plan(bids, tmp_path, spatial={"keep_echoes": False})
    groups: dict[str, str] = {}
    plan = Plan(
        base.config, base.dataset, RuleHooks(temp=lambda p: ("temp", p), groups=lambda: groups)
    )
    output = plan.spec("nordic", 3).output
    assert output["preproc_echo1_bold"][0] == "temp"
    assert not isinstance(output["echo1_bold"], tuple)  # NORDIC's outputs are kept
    group = plan.spec("nordic", 3).group
    assert group is not None and group(None) is None
    groups["nordic"] = "run"
    assert group(None) == "run"
    assert plan.spec("glm").group is None

"""One spec per rule (echoprep.plan.specs): every rule of the rule files has one and takes its
files, params, log and resources from it; every spec's log is the registry's; the names its
shell command uses are the spec's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from echoprep.io import rule_logs
from echoprep.plan import Plan, PlanError, RuleHooks
from echoprep.plan.specs import SpecPlan
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan
from helpers.snake import ROOT, local_rules, rule_blocks

#: Rules without a spec of their own: the target rule, and ``use rule tedana as
#: tedana_nordic`` (tedana's spec, its own wildcard constraint).
NO_SPEC = {"all", "tedana_nordic"}
#: Config under which every rule of the rule files has jobs (spatial_run: no chain runs in
#: every session; single_echo and optcom: some side does not fold them).
EVERY_RULE = {"nordic": {"enabled": False}}


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("specs") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01",), data=False)
    return root


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


@pytest.mark.parametrize("config", [{}, EVERY_RULE], ids=["default", "nordic-off"])
def test_the_names_a_rule_command_uses_are_its_specs(bids, tmp_path, config):
    """Every ``{params.X}`` and ``{output.X}`` of a rule's shell command (a chain's: its steps'
    commands) is a key of its spec's params and outputs."""
    plan = make_plan(bids, tmp_path, **config)
    blocks = rule_blocks()
    steps = _step_commands()
    checked = 0
    for rule, spec in _specs(plan).items():
        command = blocks[rule].split("shell:", 1)[-1] if "shell:" in blocks[rule] else ""
        if "step_shell(" in command:  # a chain's steps, or the step of a step's own rule
            command += "".join(steps[s] for s in plan.rule_steps(rule))
        for kind, names in (("params", spec.params), ("output", spec.output)):
            used = set(re.findall(rf"\{{{kind}\.(\w+)", command))
            assert used <= set(names), (rule, kind, sorted(used - set(names)))
            checked += len(used)
    assert checked > 50


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

"""One rule, one place (echoprep.plan.families): every rule is defined once, in one family
module, and no table keyed by rule names exists outside it; the plan joins each definition
with its family's files into the spec Snakemake takes (workflow/rules/jobs.smk); every spec's
log is the registry's; the names its shell command uses are its own; every rule exists under
every config and each has jobs under some config."""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from snakemake import common
from snakemake.io import apply_wildcards, regex_from_filepattern, update_wildcard_constraints
from snakemake.iocontainers import Wildcards

from echoprep.io import rule_logs
from echoprep.plan import Plan, PlanError, RuleHooks, RuleSpec
from echoprep.plan.chains import CHAIN_RULES
from echoprep.plan.front import FAMILIES, rule_definitions
from echoprep.plan.places import CATALOG_END, CATALOG_START, rule_catalog
from echoprep.plan.rule import (
    NO_JOBS,
    RuleDef,
    declared_outputs,
    sidecars_of,
    with_signature,
    without_sidecars,
)
from helpers.bidstree import make_bids_tree, write_freesurfer_subject
from helpers.plans import make_plan, plan_config
from helpers.snake import ROOT, RULE_FILES, planned_outputs, wildcard_constraints

PACKAGE = ROOT / "workflow" / "echoprep"
FAMILY_DIR = PACKAGE / "plan" / "families"
#: Config under which the rules that have no jobs by default have some (spatial_run: no chain
#: runs in every session; single_echo and optcom: some side does not fold them; surface_bold:
#: the series on the surfaces asked for).
EVERY_RULE = {"nordic": {"enabled": False}, "surface": {"bold": True}}
#: Configs whose jobs, together, are jobs of every rule (on :func:`bids`, with a user ROI):
#: spatial preprocessing off leaves the raw side without a chain, so its optimal combination
#: is a job of ``optcom`` (which the two above fold into a chain).
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
    # a FreeSurfer subject: jobs of the surface rules
    write_freesurfer_subject(root / "derivatives" / "freesurfer" / "sub-01")
    return root


@pytest.fixture(scope="module")
def rois(tmp_path_factory) -> Path:
    """A ``rois.dir`` with one user ROI of sub-01 (jobs of ``rois_mask``)."""
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
    (as Snakemake plans them on :func:`bids`), its spec and its jobs' wildcards."""
    out = {}
    for label, config in JOB_CONFIGS.items():
        tmp = tmp_path_factory.mktemp(f"jobs-{label}")
        config = {**config, "rois": {"dir": str(rois)}}
        plan = make_plan(bids, tmp, **config)
        specs = {spec.name: spec for spec in plan.specs()}
        path = tmp / "config.json"
        path.write_text(json.dumps(plan_config(bids, tmp, **config)))
        jobs = {}
        for name, files in planned_outputs("--configfile", str(path)).items():
            jobs[name] = (specs[name], _job_wildcards(specs[name], files))
        out[label] = (plan, jobs)
    return out


def _specs(plan: Plan) -> dict[str, RuleSpec]:
    return {spec.name: spec for spec in plan.specs()}


# ---------------------------------------------------------------------------------------------
# one rule, one place


def _module_rule_defs() -> dict[str, list[str]]:
    """Rule name -> the modules of the package that define a :class:`RuleDef` of that name:
    a module-level assignment (not an import) whose value, once the module is imported, is a
    RuleDef (in every module that names the class: a definition is built with it)."""
    import importlib

    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "RuleDef" not in path.read_text():
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        targets = [
            t.id
            for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        ]
        if not targets:
            continue
        module = importlib.import_module(name)
        for target in targets:
            value = getattr(module, target, None)
            if isinstance(value, RuleDef):
                found.setdefault(value.name, []).append(name)
    return found


def test_each_rule_is_defined_in_one_family_module_and_has_its_method_there():
    defs = _module_rule_defs()
    assert set(defs) == set(rule_definitions()), sorted(set(defs) ^ set(rule_definitions()))
    for rule, modules in defs.items():
        assert len(modules) == 1, (rule, modules)
        assert modules[0].startswith("echoprep.plan.families."), (rule, modules)
    for family in FAMILIES:
        for d in family.RULES:
            assert callable(getattr(family, d.name, None)), (family.__name__, d.name)
            module = family.__module__
            assert defs[d.name] == [module], (d.name, defs[d.name], module)
    assert len(rule_definitions()) >= 30


def _rule_name_tables(tree: ast.AST, rules: set[str]) -> list[str]:
    """Dict, set, list and tuple literals with two or more rule names among their keys or
    elements, and comparisons of a name with two or more rule names (``rule in ("glm",
    "glm_reference")``) or chains of ``== "<rule>"`` tests (an if-chain)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        elif isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            keys = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.If):
            keys = []
            branch: ast.stmt | None = node
            while isinstance(branch, ast.If):
                test = branch.test
                if (
                    isinstance(test, ast.Compare)
                    and isinstance(test.ops[0], ast.Eq)
                    and isinstance(test.comparators[0], ast.Constant)
                ):
                    keys.append(test.comparators[0].value)
                branch = branch.orelse[0] if len(branch.orelse) == 1 else None
        else:
            continue
        named = sorted({k for k in keys if isinstance(k, str) and k in rules})
        if len(named) >= 2:
            found.append(f"line {node.lineno}: {named}")
    return found


#: Words that are both a rule's name and something else (a NORDIC side, an echo combination,
#: a config section, an output stage): a table keyed by those is keyed by the other thing.
SHARED_WORDS = {"nordic", "optcom", "glm", "anatomy", "comparison", "confounds", "tedana"}


def _without_catalog(text: str) -> str:
    """A rule file's text without the comment block that names the rules it makes
    (:func:`echoprep.plan.places.rule_catalog`)."""
    if CATALOG_START not in text:
        return text
    head, rest = text.split(CATALOG_START, 1)
    return head + rest.split(CATALOG_END, 1)[1]


def test_every_rule_says_what_it_makes_in_one_line():
    """Each definition's ``doc`` (the rule's docstring in ``snakemake --list-rules``) is one
    line of a sentence's length, and no two rules share one."""
    docs = {name: d.doc for name, d in rule_definitions().items()}
    for name, doc in docs.items():
        assert 20 <= len(doc) <= 140 and "\n" not in doc, (name, doc)
    assert len(set(docs.values())) == len(docs)


def test_jobs_smk_names_the_rules_it_makes():
    """``workflow/rules/jobs.smk`` names every rule it makes, by family module, in a comment
    block that is the plan's (:func:`rule_catalog`); a rule added to a family without it there
    fails here (replace the block with the one this test prints)."""
    text = (ROOT / "workflow" / "rules" / "jobs.smk").read_text()
    expected = rule_catalog(FAMILIES)
    assert expected in text, f"replace the <rules> block of jobs.smk with:\n{expected}"
    for rule in rule_definitions():
        assert re.search(rf"^#   \S+\.py .*\b{rule}\b", expected, re.M), rule


def test_no_table_keyed_by_rule_names_outside_the_families():
    """A rule's figures, files and commands live in its definition: no module outside the
    family modules (the rest of the package, the rule files) holds a table, set or if-chain
    of rule names (as the memory if-chain, the seven rule-keyed resource tables, the log table
    and the step commands did). The check can fail: the old memory model's if-chain and the
    old tables are found."""
    rules = set(rule_definitions()) - SHARED_WORDS
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if FAMILY_DIR in path.parents:
            continue
        hits = _rule_name_tables(ast.parse(path.read_text()), rules)
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    for path in RULE_FILES:
        text = _without_catalog(path.read_text())
        named = sorted({r for r in rules if re.search(rf"\b{r}\b", text)})
        assert named == [], (path.name, named)
        assert re.findall(r"^rule (\w+):", text, re.M) in ([], ["all"]), path.name
    assert found == {}
    old = (
        "RUN_RULES = frozenset({'spatial_run', 'single_echo', 'nordic'})\n"
        "def m(rule):\n    if rule == 'glm_heldout':\n        return 1\n"
        "    elif rule == 'rois_visual':\n        return 2\n"
    )
    assert len(_rule_name_tables(ast.parse(old), rules)) == 2


def test_every_rule_exists_under_every_config_and_has_jobs_under_some(scheduled, bids, tmp_path):
    """The same rules under every config (a rule with no work has no jobs rather than not
    existing: ``--forcerun optcom`` names a rule whatever the config), and every rule has jobs
    under one of :data:`JOB_CONFIGS`."""
    names = {label: set(_specs(plan)) for label, (plan, _) in scheduled.items()}
    every = set(rule_definitions())
    assert all(n == every for n in names.values()), names
    mixed = tmp_path / "mixed"
    make_bids_tree(mixed, subjects=("01",), sessions=("01",), runs=("01",), data=False)
    make_bids_tree(
        mixed, subjects=("02",), sessions=("01",), runs=("01",), echoes=(0.01, 0.02), data=False
    )
    per_count = set(_specs(make_plan(mixed, tmp_path / "w")))
    chains = set(CHAIN_RULES.values())
    assert per_count - {f"{c}_{n}echoes" for c in chains for n in (2, 3)} == every - chains
    with_jobs = {name for _, jobs in scheduled.values() for name in jobs}
    assert with_jobs == every, sorted(every - with_jobs)
    # default config: the rules the chains fold have no jobs, by a constraint nothing matches
    default = _specs(scheduled["default"][0])
    assert default["spatial_run"].wildcard_constraints == {"run_prefix": NO_JOBS}
    assert set(scheduled["default"][1]) < every


#: The wildcards that key a job at each level of :attr:`RuleDef.level` (one of each group).
LEVEL_KEYS = {
    "run": {"run_dir", "run_prefix"},
    "session": {"ses_dir", "ses_prefix"},
    "subject": {"subject"},
    "dataset": set(),
    "folder": {"folder"},
}


def test_each_rule_level_is_the_key_of_its_outputs(bids, tmp_path):
    """A rule's level says what one job is: a run's, a session's, a subject's (by ``subject``
    or its GLM folder's ``sub_dir``/``sub_prefix``), one for the dataset or one per folder;
    the wildcards of its outputs are that key (plus the variant and the job's own labels)."""
    plan = make_plan(bids, tmp_path)
    for name, spec in _specs(plan).items():
        level = plan.definition(name).level
        found = set()
        for value in spec.output.values():
            found |= set(re.findall(r"\{(\w+)", str(value)))
        keys = LEVEL_KEYS[level]
        if level == "subject" and "sub_prefix" in found:
            keys = {"sub_dir", "sub_prefix"}
        assert keys <= found, (name, level, sorted(found))
        others = {k for lvl, ks in LEVEL_KEYS.items() if lvl != level for k in ks}
        assert not (found & others - keys), (name, level, sorted(found))


# ---------------------------------------------------------------------------------------------
# the specs


def test_every_spec_logs_under_the_registry_and_declares_resources(bids, tmp_path):
    plan = make_plan(bids, tmp_path)
    work = plan.config["work_dir"]
    for name, spec in _specs(plan).items():
        d = plan.definition(name)
        assert spec.log == str(rule_logs.log_path(work, d.log)), name
        if d.local:
            assert spec.benchmark is None, name
        else:
            assert spec.benchmark == str(rule_logs.benchmark_path(work, d.log)), name
        # run in the main process (confounds: a copy written by Snakemake itself)
        if name in ("config_snapshot", "dataset_description", "confounds"):
            assert spec.resources == {}, name
            assert "threads" not in spec.params, name
            continue
        assert set(spec.resources) == {"mem_mb", "runtime"}, name
        assert spec.params["threads"] == spec.threads == d.threads, name


@pytest.mark.parametrize("config", [{}, EVERY_RULE], ids=["default", "nordic-off"])
def test_the_names_a_rule_command_uses_are_its_specs(bids, tmp_path, config):
    """Every ``{params.X}`` and ``{output.X}`` of a rule's shell command (a chain's: its steps'
    commands) is a key of its spec's params and outputs."""
    plan = make_plan(bids, tmp_path, **config)
    checked = 0
    for name, spec in _specs(plan).items():
        for kind, names in (("params", spec.params), ("output", spec.output)):
            used = set(re.findall(rf"\{{{kind}\.(\w+)", spec.shell))
            assert used <= set(names), (name, kind, sorted(used - set(names)))
            checked += len(used)
    assert checked > 50


#: Params that still hold several command-line options, and why (a new one fails the test
#: below; a per-run chain's steps share one ``params``, so their step arguments stay bundled
#: under the step's prefix). Every other param holds one thing and is named for it.
BUNDLED_PARAMS = {
    "nordic": {"nordic_args", "spatial_args", "resample_args", "combine_args"},
    "spatial_resample": {"resample_args", "combine_args"},
    "spatial_run": {"spatial_args"},
    "single_echo": {"combine_args"},
    "optcom": {"combine_args"},
    "spatial_reference": {"args"},
    "analysis_mask": {"args"},
    "rois_mask": {"args"},
    "diagnostics": {"args"},
    "subject_report": {"args"},
    "comparison_subject": {"entries"},
    "publish_session": {"args"},
    "publish_subject": {"args"},
    "publish_repeats": {"args"},
    "publish_roi": {"args"},
    "publish_surface": {"args"},
}


def _job_params(spec: RuleSpec, wc: Wildcards) -> dict[str, str]:
    """Every param of one job, evaluated as Snakemake would (functions of the wildcards, the
    inputs and the outputs)."""
    import inspect

    from snakemake.iocontainers import InputFiles, OutputFiles

    given = dict(spec.input_function(wc))
    for key, value in spec.input.items():
        given[key] = value(wc) if callable(value) else apply_wildcards(value, dict(wc.items()))
    input = InputFiles(fromdict=given)
    output = OutputFiles(
        fromdict={k: apply_wildcards(str(v), dict(wc.items())) for k, v in spec.output.items()}
    )
    found = {}
    for name, value in spec.params.items():
        if callable(value):
            args = {"wildcards": wc, "input": input, "output": output}
            names = list(inspect.signature(value).parameters)
            value = value(*[args.get(n, wc) if i else wc for i, n in enumerate(names)])
        found[name] = str(value)
    return found


def test_a_param_holds_one_thing_and_is_named_for_it(scheduled):
    """No param of a rule shares its name with a wildcard (``{params.nordic}`` was tedana's
    flags beside the ``nordic`` wildcard), and every param of every planned job holds at most
    one command-line option (``--x`` with its values), but those of :data:`BUNDLED_PARAMS`
    (the GLM's ``session`` held four options, tedana's ``nordic`` two)."""
    wildcards = set(wildcard_constraints())
    bundles: dict[str, set[str]] = {}
    checked = 0
    for _, jobs in scheduled.values():
        for name, (spec, job_wildcards) in jobs.items():
            assert not set(spec.params) & wildcards, (name, sorted(set(spec.params) & wildcards))
            for wc in job_wildcards[:2]:
                for param, value in _job_params(spec, wc).items():
                    options = [w for w in value.split() if re.fullmatch(r"--[a-z][\w-]*", w)]
                    if len(options) > 1:
                        bundles.setdefault(name, set()).add(param)
                    checked += 1
    extra = {r: ps - BUNDLED_PARAMS.get(r, set()) for r, ps in bundles.items()}
    assert {r: ps for r, ps in extra.items() if ps} == {}
    # the list shrinks with the code: a param that holds one thing now leaves it
    assert bundles == BUNDLED_PARAMS
    assert checked > 200


def test_the_inputs_a_rule_command_uses_are_those_of_each_of_its_jobs(scheduled):
    """Every ``{input.X}`` of a rule's shell command (a chain's: its steps' commands) is a
    name of the inputs of every job of the rule: its spec's input mapping, or what its input
    function gives for the job's wildcards (the jobs Snakemake plans, which it would run with
    a name missing: the job fails on start)."""
    # rules with jobs, input names their commands use, jobs (now: 29, 42, 89 by default;
    # 20, 32, 44 with NORDIC off; 16, 25, 34 with spatial preprocessing off too)
    least = {"default": (27, 40, 80), "nordic-off": (18, 30, 40), "spatial-off": (14, 23, 30)}
    for label, (_, jobs) in scheduled.items():
        names = n_jobs = 0
        for name, (spec, wildcards) in jobs.items():
            used = set(re.findall(r"\{input\.(\w+)", spec.shell))
            for wc in wildcards:
                given = set(spec.input_function(wc)) | set(spec.input)
                assert used <= given, (label, name, dict(wc.items()), sorted(used - given))
            names += len(used)
            n_jobs += len(wildcards)
        counts = (len(jobs), names, n_jobs)
        assert all(c >= m for c, m in zip(counts, least[label], strict=True)), (label, counts)


def test_every_job_gets_positive_resources_from_every_step_definition(scheduled):
    """The memory and run time of every planned job (of every rule, under the configs that
    give every rule jobs) come out positive from its steps' definitions, and a per-run chain
    asks for the most memory of one step and the sum of the steps' minutes."""
    jobs = 0
    for plan, rules in scheduled.values():
        for name, (spec, wildcards) in rules.items():
            for wc in wildcards:
                for resource in spec.resources.values():
                    assert not callable(resource) or resource(wc, 1) > 0, name
                jobs += 1
        chain = _specs(plan).get("nordic")
        if chain is not None and "nordic" in rules:
            wc = rules["nordic"][1][0]
            steps = [plan.definition(s) for s in plan.rule_steps("nordic")]
            assert len(steps) >= 2
            family = plan.chain_rules
            mem = max(d.memory(family, wc, 1) for d in steps if d.memory)
            assert chain.resources["mem_mb"](wc, 1) >= mem
    assert jobs > 100


def test_snakemake_reads_no_signature_of_a_spec_function_when_it_calls_one(scheduled, monkeypatch):
    """Every function of every spec (input function, inputs, params, resources, group) carries
    its parameters where Snakemake looks first (``with_signature``), so planning a job reads
    no signature; and Snakemake passes each the same arguments as without them."""
    functions = []
    for plan, _rules in scheduled.values():
        for spec in _specs(plan).values():
            values = [spec.input_function, spec.group, *spec.input.values()]
            values += [*spec.params.values(), *spec.resources.values()]
            functions += [v for v in values if callable(v)]
    assert len(functions) > 100
    truth = [inspect.signature(f).parameters for f in functions]

    def no_signature(*args, **kwargs):
        raise AssertionError("Snakemake read a signature")

    monkeypatch.setattr(inspect, "signature", no_signature)
    offered = {"input": 1, "output": 2, "threads": 3, "attempt": 4, "rulename": 5}
    for f, params in zip(functions, truth, strict=True):
        assert list(common.get_function_params(f)) == list(params), f
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        expected = {k: v for k, v in offered.items() if takes_any or k in params}
        assert common.get_input_function_aux_params(f, offered) == expected, f


def test_with_signature_keeps_a_bound_method_and_leaves_other_values():
    get_function_params = common.get_function_params

    class Family:
        def rule(self, wildcards, input, attempt=1):
            return (wildcards, input, attempt)

    bound = Family().rule
    assert with_signature(bound) == bound and bound("wc", input="i") == ("wc", "i", 1)
    assert list(get_function_params(bound)) == ["wildcards", "input", "attempt"]
    assert list(get_function_params(Family().rule)) == ["wildcards", "input", "attempt"]

    wrapped = with_signature(len)  # a builtin takes no attribute: a function calling it
    assert wrapped is not len and wrapped("abc") == 3
    assert list(get_function_params(wrapped)) == ["obj"]

    def plain(wildcards):
        return wildcards

    assert with_signature(plain) is plain and list(get_function_params(plain)) == ["wildcards"]
    assert with_signature("x/{subject}.nii.gz") == "x/{subject}.nii.gz"
    assert with_signature(None) is None and with_signature(3) == 3


def test_with_signature_leaves_a_function_as_it_is_without_snakemake(monkeypatch):
    monkeypatch.setitem(sys.modules, "snakemake.common", None)

    def rule(wildcards):
        return wildcards

    assert with_signature(rule) is rule and not hasattr(rule, "_overwrite_params")


def test_every_command_of_the_rules_is_a_command_of_the_package():
    """``python -m echoprep <command>`` of every rule (and step) is a sub-command of the CLI
    (a rule whose command is missing fails only when its job runs)."""
    import argparse

    from echoprep.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    used = {
        m
        for d in rule_definitions().values()
        for m in re.findall(r"python -m echoprep ([\w-]+)", d.command)
    }
    assert len(used) >= 10
    assert sorted(used - set(sub.choices)) == []


def test_each_rule_block_reads_its_own_spec_when_the_job_runs(bids, tmp_path):
    """Snakemake evaluates ``shell:`` again (and runs ``run:``) when the job runs, after the
    loop over the specs has ended: a block that read the loop's variable then would see the
    last rule's spec (a chain job ran an empty command that way). Every rule block's
    ``shell:``/``run:`` looks its rule up by name, and the lookup gives each rule its own
    command in both scopes."""
    text = (ROOT / "workflow" / "rules" / "jobs.smk").read_text()
    blocks = text.split("\n    rule:\n")[1:]
    assert len(blocks) == 3
    for block in blocks:
        directive = "shell:" if "shell:" in block else "run:"
        after = block.split(directive, 1)[1].split("\n\n\n")[0]
        assert "_spec" not in after, after
        assert "shell_of(locals())" in after or "PLAN.spec_of(rule)" in after
    plan = make_plan(bids, tmp_path)
    specs = plan.specs()
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    source = "def shell_of" + common.split("\ndef shell_of", 1)[1].split("\n\n\n")[0]
    namespace: dict[str, Any] = {"PLAN": plan}
    exec(source, namespace)
    shell_of = namespace["shell_of"]
    last = specs[-1]
    for spec in specs:
        assert shell_of({"_spec": spec}) == spec.shell  # while the rules are defined
        assert shell_of({"rule": spec.name, "_spec": last}) == spec.shell  # when a job runs
    assert len({s.shell for s in specs}) > 20


def test_a_chain_is_asked_for_with_its_echo_count_and_unknown_rules_are_named(bids, tmp_path):
    plan = make_plan(bids, tmp_path)
    with pytest.raises(PlanError, match="rule nordic: expected an echo count"):
        plan.spec("nordic")
    with pytest.raises(KeyError, match="no rule spec 'no_such_rule'"):
        plan.spec("no_such_rule")


def test_hooks_mark_temporary_echoes_reports_and_give_the_profile_groups(bids, tmp_path):
    """Snakemake's temp, report and the profile's groups reach the specs through the hooks:
    the resampled echoes are temporary with spatial.keep_echoes: false, the comparison figure
    and the reports are marked for ``snakemake --report``, and a rule's group is read when a
    job asks (the profile is known only after the rules are parsed)."""
    base = make_plan(bids, tmp_path, spatial={"keep_echoes": False})
    groups: dict[str, str] = {}
    hooks = RuleHooks(
        temp=lambda p: ("temp", p),
        groups=lambda: groups,
        in_report=lambda p, caption, category: ("report", p, caption),
        captions="/captions",
    )
    plan = Plan(base.config, base.dataset, hooks)
    output = plan.spec("nordic", 3).output
    assert output["preproc_echo1_bold"][0] == "temp"
    assert not isinstance(output["echo1_bold"], tuple)  # NORDIC's outputs are kept
    assert plan.spec("comparison").output["png"][::2] == ("report", "/captions/comparison.rst")
    assert not isinstance(plan.spec("comparison").output["tsv"], tuple)
    assert plan.spec("subject_report").output["html"][2] == "/captions/subject.rst"
    group = plan.spec("nordic", 3).group
    assert group is not None and group(None) is None
    groups["nordic"] = "run"
    assert group(None) == "run"
    assert plan.spec("glm").group is None


# ---------------------------------------------------------------------------------------------
# sidecars: written by the job of their image, not declared


def test_jobs_declare_their_files_and_write_the_sidecars_beside_them(bids, tmp_path):
    """A rule's files (its family's ``RuleFiles.output``) list every JSON sidecar its job
    writes; its spec declares none of them (Snakemake's planning time grows with declared
    files), but those of temporary outputs, flagged like their images so that Snakemake
    removes the two together; ``rule all`` asks for no sidecar; a file that only a sidecar
    would be (``recommended_variant.json``, ``dataset_description.json``) stays declared."""
    from snakemake.io import is_flagged, temp

    plan = make_plan(bids, tmp_path)
    written = plan.chain_rules.nordic(3).output
    assert {"echo1_bold_json", "preproc_echo1_bold_json", "spatial_confounds_json"} <= set(written)
    for spec in plan.specs():
        declared = [str(v) for v in spec.output.values()]
        assert not sidecars_of(declared) & set(declared), spec.name
    assert set(plan.spec("nordic", 3).output) == {k for k in written if not k.endswith("_json")}
    targets = plan.targets()
    assert not sidecars_of(targets) & set(targets)
    names = {Path(t).name for t in targets}
    assert {"recommended_variant.json", "dataset_description.json"} <= names
    assert any(t.endswith("_desc-GLMsingle_summary.json") for t in targets)

    dropped = make_plan(bids, tmp_path, spatial={"keep_echoes": False})
    flagged = Plan(dropped.config, dropped.dataset, RuleHooks(temp=temp)).spec("nordic", 3)
    assert is_flagged(flagged.output["preproc_echo1_bold"], "temp")
    assert is_flagged(flagged.output["preproc_echo1_bold_json"], "temp")
    assert "echo1_bold_json" not in flagged.output  # NORDIC's echoes are kept


def test_a_reader_of_sidecars_waits_for_their_images():
    """``without_sidecars`` keeps a mapping's files but the sidecars of the others (a reader
    declares the image, whose job writes the sidecar); a JSON file that is no sidecar of
    another stays."""
    files = {
        "betas": "/o/x_statmap.nii.gz",
        "betas_json": "/o/x_statmap.json",
        "trials": "/o/x_trials.tsv",
        "trials_json": "/o/x_trials.json",
        "summary": "/o/x_summary.json",
    }
    assert without_sidecars(files) == {
        "betas": "/o/x_statmap.nii.gz",
        "trials": "/o/x_trials.tsv",
        "summary": "/o/x_summary.json",
    }
    assert declared_outputs(files) == without_sidecars(files)
    assert sidecars_of(files.values()) == {"/o/x_statmap.json", "/o/x_trials.json"}

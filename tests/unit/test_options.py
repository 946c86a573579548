"""One source of options: the config schema holds every default and allowed value; each stage
reads its section into a frozen options object that is exactly that section; unknown keys are
refused; no module repeats a schema default; each rule passes its own section."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest
import yaml

from echoprep.config import validate_config
from echoprep.options import (
    OptionsError,
    option_names,
    options_dict,
    parse_options,
    section_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workflow" / "echoprep"

#: The config sections no stage reads ("variants" says which jobs exist: the plan reads it).
PLAN_SECTIONS = {"variants"}


def _schema_sections() -> set[str]:
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return {k for k, v in schema["properties"].items() if v.get("type") == "object"}


def _stage_options() -> dict[tuple[str, str], str]:
    """Each stage's options class and the config section it reads, found in the stage
    modules (``echoprep.stages``): a frozen dataclass whose fields are exactly the option
    names of a schema section. A new stage's class is found without a list to extend."""
    import pkgutil

    import echoprep.stages

    sections = {s: set(option_names(s)) for s in _schema_sections() - PLAN_SECTIONS}
    found: dict[tuple[str, str], str] = {}
    for info in pkgutil.walk_packages(echoprep.stages.__path__, "echoprep.stages."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if not (dataclasses.is_dataclass(value) and isinstance(value, type)):
                continue
            if value.__module__ != info.name:
                continue  # imported: counted where it is defined
            fields = {f.name for f in dataclasses.fields(value)}
            for section, names in sections.items():
                if fields == names:
                    found[(info.name, name)] = section
    return found


#: Each stage's options class and the config section it reads.
STAGE_OPTIONS = _stage_options()


def test_the_options_classes_are_found():
    """One class per stage section, among them the ones named here (the discovery can fail)."""
    assert {
        ("echoprep.stages.nordic", "NordicOptions"): "nordic",
        ("echoprep.stages.glm.options", "GlmOptions"): "glm",
        ("echoprep.stages.combine.echoes", "OptcomOptions"): "optcom",
    }.items() <= STAGE_OPTIONS.items()
    assert len(STAGE_OPTIONS) == len(set(STAGE_OPTIONS.values())) >= 11


@pytest.mark.parametrize(("where", "section"), STAGE_OPTIONS.items(), ids=lambda x: str(x))
def test_each_stage_accepts_exactly_its_schema_section(where, section):
    module, name = where
    cls = getattr(importlib.import_module(module), name)
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == list(option_names(section)) or {
        f.name for f in fields
    } == set(option_names(section))
    # no field repeats a default: the schema's are filled in by parse_options
    assert all(f.default is dataclasses.MISSING for f in fields), name
    assert cls.__dataclass_params__.frozen
    opts = parse_options(cls, section, None, source="test")
    assert options_dict(opts) == section_defaults(section)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(opts, fields[0].name, None)
    with pytest.raises(
        OptionsError, match=rf"unknown key\(s\) \['nope'\]; allowed keys of '{section}'"
    ):
        parse_options(cls, section, {"nope": 1}, source="--options-json")


def test_values_the_schema_refuses_are_refused_all_at_once():
    cls = dataclasses.make_dataclass(
        "T", [(n, object) for n in option_names("nordic")], frozen=True
    )
    with pytest.raises(OptionsError) as err:
        parse_options(cls, "nordic", {"temporal_phase": 9, "phase_units": "deg"}, source="x.json")
    text = str(err.value)
    assert text.startswith("x.json: 2 problem(s) in the 'nordic' options")
    assert "nordic.temporal_phase" in text and "nordic.phase_units" in text


def test_every_stage_section_is_covered():
    # "variants" says which jobs exist: the plan reads it, no stage does
    assert _schema_sections() - set(STAGE_OPTIONS.values()) == PLAN_SECTIONS


def _schema_defaults() -> dict[str, object]:
    """Option name -> schema default, for options with a distinctive name and a non-trivial
    default (a literal repeated elsewhere is a second source)."""
    generic = {"enabled", "seed", "threshold", "echo", "res", "dir", "sessions", "variant"}
    found = {}
    for section in STAGE_OPTIONS.values():
        for name, value in section_defaults(section).items():
            trivial = value is None or isinstance(value, bool) or value in ([], {}, 0)
            if name not in generic and not trivial:
                found[name] = value
    return found


def _literal(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ...


def _repeated_defaults(tree: ast.AST, defaults: dict[str, object]) -> list[tuple[int, str]]:
    hits = []
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values, strict=True)
                     if isinstance(k, ast.Constant)]  # fmt: skip
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get":
            if len(node.args) == 2 and isinstance(node.args[0], ast.Constant):
                pairs = [(node.args[0].value, node.args[1])]
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            with_default = positional[len(positional) - len(node.defaults) :]
            pairs = [(a.arg, d) for a, d in zip(with_default, node.defaults, strict=True)]
            pairs += [
                (a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d
            ]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            pairs = [(node.target.id, node.value)]
        for key, value in pairs:
            if key in defaults and _literal(value) == defaults[key]:
                hits.append((value.lineno, f"{key}={defaults[key]!r}"))
    return hits


def test_no_module_repeats_a_schema_default():
    """Each option's default is written once, in the schema: no dict entry, ``.get`` fallback,
    keyword default or dataclass field default repeats it (the simulator's own parameters
    are not options)."""
    defaults = _schema_defaults()
    assert {"n_pcs", "factor_error", "gfactor_kernel", "chunklen"} <= set(defaults)
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if "simulate" in path.parts:
            continue
        for line, what in _repeated_defaults(ast.parse(path.read_text()), defaults):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert problems == []


def test_the_default_check_finds_a_repeated_default():
    defaults = {"n_pcs": 10}
    code = 'X = {"n_pcs": 10}\ny = opts.get("n_pcs", 10)\ndef f(a, n_pcs=10): ...\n'
    assert len(_repeated_defaults(ast.parse(code), defaults)) == 3


def test_config_yaml_documents_the_schema_defaults():
    """config/config.yaml is a commented copy of the defaults for users to start from: every
    value it sets is the schema's default (the paths excepted)."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    defaults = validate_config({"bids_dir": "x"})  # nested defaults filled in
    differ = []
    for section, value in shipped.items():
        if isinstance(value, dict):
            want = defaults[section]
            differ += [f"{section}.{k}" for k, v in value.items() if want.get(k, ...) != v]
    assert differ == []


def test_rules_pass_their_own_config_section():
    """Every ``--options-json`` in the rules comes from the plan's section (no hand-picked
    subsets, no JSON built in a rule)."""
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        for m in re.finditer(r"options=(.*)", text):
            assert m.group(1).startswith("PLAN."), f"{path.name}: options={m.group(1)}"


def test_unknown_keys_inside_a_nested_section_are_refused():
    from echoprep.stages.rois import RoiOptions

    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['nope'\] in 'rois.visual'"):
        parse_options(RoiOptions, "rois", {"visual": {"nope": 1}}, source="x")

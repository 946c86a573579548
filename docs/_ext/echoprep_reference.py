"""The documentation's references, generated from the code when the site is built.

Three Markdown pages under ``docs/reference/`` (not committed: written by every build, so they
cannot fall behind the code):

- ``config.md``: every key of ``workflow/schemas/config.schema.yaml`` (type, default, meaning);
- ``cli.md``: every command of ``echoprep`` from its argparse parser
  (:func:`echoprep.cli.build_parser`), sub-commands included;
- ``rules.md``: every rule from its definition (:class:`echoprep.plan.rule.RuleDef`) and the
  spec the plan joins for it (:class:`echoprep.plan.rule.RuleSpec`): what one job makes, the
  file and line of its definition, inputs, outputs, params, command, threads, memory, runtime,
  conda env and profile group, one section per rule.

The rules need a plan, and a plan a dataset: the build simulates the tiny dataset
(``echoprep simulate --preset tiny``, a few seconds) into a temporary folder and plans it
with the default configuration. ``tests/unit/test_docs_site.py`` builds the site and checks
that every rule of ``snakemake --list-rules``, every schema key and every command is there.

Run alone (``python docs/_ext/echoprep_reference.py OUT_DIR``) it writes the three pages.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
if str(ROOT / "workflow") not in sys.path:
    sys.path.insert(0, str(ROOT / "workflow"))

# ---------------------------------------------------------------------------------------------
# config


def schema_keys(node: dict[str, Any] | None = None, prefix: str = "") -> Iterator[tuple]:
    """``(dotted key, its schema)`` of every leaf key of the schema (a section, an object with
    properties of its own, is walked, not listed), in the schema's order."""
    node = yaml.safe_load(SCHEMA.read_text()) if node is None else node
    for name, spec in (node.get("properties") or {}).items():
        key = f"{prefix}{name}"
        if spec.get("properties"):
            yield from schema_keys(spec, key + ".")
        else:
            yield key, spec


def _type(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(str(k) for k in kinds if k)
    items = spec.get("items") or {}
    if "array" in kinds and items.get("type"):
        text = text.replace("array", f"array of {items['type']}")
    choices = spec.get("enum") or items.get("enum")
    if choices:
        text += ": " + ", ".join(f"`{c}`" for c in choices if c is not None)
    return text or "any"


def _plain(text: str) -> str:
    """A docstring's text for Markdown: Sphinx roles (``:mod:`~x```) as code."""
    return re.sub(r":(?:mod|func|class|meth|data|attr):`~?([^`]+)`", r"`\1`", text)


def _cell(text: str) -> str:
    """Text for one cell of a Markdown table."""
    return " ".join(_plain(str(text)).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def config_page() -> str:
    """``reference/config.md``: one table per section, one row per key."""
    schema = yaml.safe_load(SCHEMA.read_text())
    lines = [
        "# Configuration keys",
        "",
        "Every key of the configuration, generated from the JSON Schema",
        "`workflow/schemas/config.schema.yaml` when this site is built (unknown keys are errors;",
        "`config/config.yaml` repeats the defaults with comments). How to set them: "
        "{doc}`../configuration`.",
        "",
    ]
    sections: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, spec in schema_keys(schema):
        sections.setdefault(key.split(".")[0] if "." in key else "", []).append((key, spec))
    for section, keys in sections.items():
        title = f"`{section}:`" if section else "Top-level keys"
        about = (schema["properties"].get(section) or {}).get("description", "")
        lines += [f"## {title}", ""]
        if about:
            lines += [_cell(about), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, spec in keys:
            default = _value(spec["default"]) if "default" in spec else "(required)"
            lines.append(
                f"| `{key}` | {_cell(_type(spec))} | {_cell(default)} "
                f"| {_cell(spec.get('description', ''))} |"
            )
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# command line


def commands(
    parser: argparse.ArgumentParser | None = None, prefix: str = "echoprep"
) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """``(command, its parser, its help)`` of every command and sub-command, depth first."""
    from echoprep.cli import build_parser

    parser = build_parser() if parser is None else parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub, helps.get(name, "")
                yield from commands(sub, f"{prefix} {name}")


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(action.option_strings) or action.dest
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS, False, []) else f"`{default}`"
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            shown += " (one of " + ", ".join(f"`{c}`" for c in action.choices) + ")"
        required = "yes" if action.required or not action.option_strings else ""
        rows.append(f"| `{name}` | {required} | {_cell(shown)} | {_cell(action.help or '')} |")
    if not rows:
        return []
    return ["| argument | required | default | help |", "|---|---|---|---|", *rows, ""]


def cli_page() -> str:
    """``reference/cli.md``: every command with its usage and arguments."""
    from echoprep.cli import build_parser

    top = build_parser()
    lines = [
        "# Command line",
        "",
        "Every command of `echoprep` (also `python -m echoprep`), generated from its argparse",
        "parser (`echoprep.cli.build_parser`) when this site is built. The workflow's rules",
        "call the stage commands (their shell commands: {doc}`rules`), so each step can be run",
        "by hand on one run.",
        "",
        "```text",
        top.format_usage().strip(),
        "```",
        "",
        *_arguments(top),
    ]
    for name, parser, help_text in commands(top):
        depth = min(name.count(" ") + 1, 4)
        lines += [f"{'#' * depth} `{name}`", ""]
        if help_text:
            lines += [_cell(help_text) + ".", ""]
        if parser.description and parser.description != help_text:
            lines += [parser.description.strip(), ""]
        lines += ["```text", parser.format_usage().strip(), "```", ""]
        lines += _arguments(parser)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# rules


def _where(obj: Any) -> str:
    """``path:line`` of a function's definition, relative to the checkout."""
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    try:
        path = Path(inspect.getsourcefile(obj) or "").resolve()
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return ""
    try:
        return f"{path.relative_to(ROOT).as_posix()}:{line}"
    except ValueError:
        return f"{path.name}:{line}"


def _about(obj: Callable[..., Any]) -> str:
    """A function's name, the first paragraph of its docstring and its place (a lambda: its
    source line)."""
    func = getattr(obj, "__func__", obj)
    name = getattr(func, "__qualname__", repr(func))
    where = _where(func)
    if "<lambda>" in name:
        try:
            source = " ".join(inspect.getsource(func).split())
        except (OSError, TypeError):
            source = "a function of the job"
        return f"`{_cell(source)}` ({where})"
    doc = (inspect.getdoc(func) or "").split("\n\n")[0]
    text = f"`{name}`" + (f": {_cell(doc)}" if doc else "")
    return text + (f" ({where})" if where else "")


def _file_value(value: Any) -> str:
    if callable(value):
        return _about(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def simulated_plan(folder: Path) -> Any:
    """The plan of the default configuration on the tiny simulated dataset in ``folder``."""
    from echoprep.config import validate_config
    from echoprep.io.bids import discover
    from echoprep.plan import Plan, discovery_options
    from echoprep.simulate import simulate_dataset

    logging.getLogger("echoprep").setLevel(logging.WARNING)  # the simulator's progress lines
    bids = simulate_dataset(folder / "bids", "tiny")
    config = validate_config({"bids_dir": str(bids), "output_dir": "results", "work_dir": "work"})
    dataset = discover(config["bids_dir"], **discovery_options(config), cache_dir=folder / "w")
    return Plan(config, dataset)


def _profile_groups() -> dict[str, str]:
    return dict((yaml.safe_load(PROFILE.read_text()) or {}).get("groups") or {})


def _memory(defn: Any) -> str:
    """The rule's memory model: a fixed figure, copies of the run, or the model function."""
    model = defn.memory
    if model is None:
        return "none (runs inside the Snakemake process)"
    name = getattr(model, "__qualname__", "")
    values = inspect.getclosurevars(model).nonlocals
    if name.startswith("fixed_mb."):
        return f"{values['mb']} MB, times the attempt (`fixed_mb`)"
    if name.startswith("run_copies_mb."):
        return (
            f"{values['copies']:g} float32 copies of all echoes of the job's run "
            "(`echoprep.resources.run_mb`), times the attempt (`run_copies_mb`)"
        )
    return _about(model)


def _runtime(defn: Any) -> str:
    if defn.memory is None:
        return "none (runs inside the Snakemake process)"
    text = f"{defn.minutes} min at LAION-fMRI size"
    if defn.per_echo:
        text += " per echo"
    if defn.scale:
        text += f", scaled up (never down) with the {defn.scale}'s data"
    return text + "; times the attempt when Snakemake retries"


def _group(name: str, defn: Any, groups: dict[str, str]) -> str:
    from echoprep.plan.front import RUN_GROUP_RULE

    if defn.local:
        return "none: a local rule, run next to Snakemake"
    own = groups.get(name)
    names = [c for c in (defn.grouped,) if c]
    if defn.level == "run":
        names.append(RUN_GROUP_RULE)
    text = f"`{own}` in `profiles/slurm`" if own else "none of its own in `profiles/slurm`"
    others = [n for n in dict.fromkeys(names) if n != name]
    if others and not own:
        joined = ", ".join(f"`{n}`'s (`{groups.get(n, '-')}`)" for n in others)
        text += f"; joins the group of {joined}"
    return text


def rules_page(plan: Any) -> str:
    """``reference/rules.md``: every rule, one section each, family by family."""
    from echoprep.plan.chains import CHAIN_RULES
    from echoprep.plan.front import FAMILIES
    from echoprep.plan.places import rule_places

    places = rule_places(FAMILIES)
    groups = _profile_groups()
    lines = [
        "# Rules",
        "",
        "Every rule of the workflow, generated when this site is built from its definition: the",
        "`RuleDef` constant in its family module (`workflow/echoprep/plan/families/`) and the",
        "spec the plan joins from it (`echoprep.plan.Plan.spec`) under the default",
        "configuration. `snakemake --list-rules` prints the same one-line descriptions and",
        "places. Wildcards in `{braces}`; `{params.X}` and `{input.X}` are filled per job.",
        "How the pieces fit: {doc}`../architecture`.",
        "",
    ]
    for family in FAMILIES:
        module = family.__module__.rsplit(".", 1)[-1]
        lines += [f"## Family `{module}`", ""]
        doc = (inspect.getdoc(inspect.getmodule(family)) or "").split("\n\n")[0]
        lines += [_cell(doc), ""]
        for defn in family.RULES:
            name = defn.name
            if name in CHAIN_RULES.values():
                counts = plan.ctx.echo_counts()
                spec = plan.spec(name, counts[0])
            else:
                spec = plan.spec(name)
            place = places[name]
            method = getattr(family, name)
            lines += [f"### `{name}`", "", f"{defn.doc}.", ""]
            lines += [
                f"Defined at `{place}` (its `RuleDef`); files and params: "
                f"`{family.__name__}.{name}` ({_where(method)}).",
                "",
                "| | |",
                "|---|---|",
                f"| one job per | {defn.level} |",
                f"| threads | {spec.threads} |",
                f"| memory | {_cell(_memory(defn))} |",
                f"| runtime | {_cell(_runtime(defn))} |",
                f"| conda env | `{(spec.conda or '').removeprefix('../../')}` |"
                if spec.conda
                else "| conda env | none (no shell command) |",
                f"| group | {_cell(_group(name, defn, groups))} |",
                f"| local | {'yes' if spec.local else 'no'} |",
                f"| console line | `{_cell(spec.message or '')}` |",
                "",
            ]
            if name in CHAIN_RULES.values():
                steps = plan.rule_steps(name)
                lines += [
                    f"A per-run chain: one job runs the steps {', '.join(f'`{s}`' for s in steps)}"
                    " one after another (under the default configuration; "
                    "`echoprep.plan.chains`). Runs with another echo count get the rule "
                    f"`{name}_<n>echoes`.",
                    "",
                ]
            lines += ["**Inputs**", ""]
            lines += [f"- `{k}`: {_file_value(v)}" for k, v in spec.input.items()]
            if spec.input_function.__name__ != "_no_inputs":
                lines.append(f"- {_about(spec.input_function)}")
            elif not spec.input:
                lines.append("- none")
            lines += ["", "**Outputs**", ""]
            lines += [f"- `{k}`: `{v}`" for k, v in spec.output.items()] or ["- none"]
            lines += ["", "**Params**", ""]
            lines += [f"- `{k}`: {_file_value(v)}" for k, v in spec.params.items()] or ["- none"]
            lines += ["", "**Command**", ""]
            if spec.shell:
                lines += ["```bash", spec.shell, "```"]
            else:
                lines.append(f"Runs inside the Snakemake process: {_about(spec.run)}.")
            lines += ["", f"Log: `{spec.log}`", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the build


def write_references(out: Path) -> list[Path]:
    """Write ``config.md``, ``cli.md`` and ``rules.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = {
            "config.md": config_page(),
            "cli.md": cli_page(),
            "rules.md": rules_page(simulated_plan(Path(tmp))),
        }
    written = []
    for name, text in pages.items():
        path = out / name
        if not path.is_file() or path.read_text() != text + "\n":
            path.write_text(text + "\n")  # unchanged pages keep their time: no rebuild
        written.append(path)
    return written


def _on_builder_inited(app: Any) -> None:
    write_references(Path(app.srcdir) / "reference")


def setup(app: Any) -> dict[str, Any]:
    """The Sphinx extension: write the references before the sources are read."""
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    for page in write_references(Path(sys.argv[1])):
        print(page)

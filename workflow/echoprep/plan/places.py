"""Where each rule is defined: the file and line of its :class:`~echoprep.plan.rule.RuleDef`
constant, for ``snakemake --list-rules`` (each rule's docstring)
and the rules reference (docs/reference/rules.md)."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from echoprep.plan.rule import Family, RuleDef

#: The checkout (the folder that holds ``workflow/``): places are given relative to it.
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Place:
    """Where one rule is defined.

    Attributes
    ----------
    path
        The family module, relative to the checkout (``workflow/echoprep/plan/families/glm.py``).
    line
        The line of the rule's ``RuleDef`` constant (its ``NAME = ...`` assignment).
    """

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _relative(path: str) -> str:
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path


@functools.cache
def _constant_lines(module_name: str) -> dict[str, int]:
    """Rule name -> the line of the module-level assignment that makes its RuleDef."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    lines = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                value = getattr(module, getattr(target, "id", ""), None)
                if isinstance(value, RuleDef):
                    lines[value.name] = node.lineno
    return lines


def rule_places(families: tuple[type[Family], ...]) -> dict[str, Place]:
    """Every rule of ``families`` (:data:`echoprep.plan.front.FAMILIES`) and its place."""
    return dict(_places(families))


@functools.cache
def _places(families: tuple[type[Family], ...]) -> dict[str, Place]:
    """:func:`rule_places`, found once per process: the plan asks once per rule (each
    resolves every family's file; 0.2 s of a dry run when done each time)."""
    places = {}
    for family in families:
        module = inspect.getmodule(family)
        assert module is not None and module.__file__ is not None, family
        lines = _constant_lines(module.__name__)
        for defn in family.RULES:
            places[defn.name] = Place(_relative(module.__file__), lines[defn.name])
    return places


#: The markers of the list of rules in ``workflow/rules/jobs.smk``.
CATALOG_START, CATALOG_END = "# <rules>", "# </rules>"


def rule_catalog(families: tuple[type[Family], ...]) -> str:
    """The comment block of ``workflow/rules/jobs.smk`` that names the rules it makes: each
    family module and its rules, between :data:`CATALOG_START` and :data:`CATALOG_END`
    (tests/unit/test_specs.py keeps it current)."""
    by_module: dict[str, list[str]] = {}
    for name, place in rule_places(families).items():
        by_module.setdefault(Path(place.path).name, []).append(name)
    width = max(len(m) for m in by_module) + 2
    lines = [CATALOG_START]
    lines += [f"#   {m:{width}s}{', '.join(names)}" for m, names in by_module.items()]
    return "\n".join([*lines, CATALOG_END])


__all__ = ["CATALOG_END", "CATALOG_START", "ROOT", "Place", "rule_catalog", "rule_places"]

"""The dead-code check's whitelist (workflow/vulture_whitelist.py) holds no stale entry: every
name it lists exists, every ``Plan`` method (``RuleSpec`` field) it lists is still called
(read) from a rule file, and every rule family method it lists is still the method of one of
its family's rules, which ``Plan.spec`` calls by the rule's name (a name the rules stopped
using must be flagged by vulture, not hidden)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHITELIST = ROOT / "workflow" / "vulture_whitelist.py"
RULES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]


def _imports(tree: ast.Module) -> dict[str, object]:
    """Name -> object of the whitelist's ``from module import name`` lines."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                found[alias.asname or alias.name] = getattr(module, alias.name)
    return found


def _listed(tree: ast.Module) -> list[ast.expr]:
    """The entries of the whitelist's one tuple."""
    (entries,) = [
        node.value.elts
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)
    ]
    return entries


def test_every_whitelisted_name_exists():
    tree = ast.parse(WHITELIST.read_text())
    names = _imports(tree)
    entries = _listed(tree)
    assert entries
    for entry in entries:
        if isinstance(entry, ast.Name):
            assert entry.id in names, ast.unparse(entry)
            continue
        assert isinstance(entry, ast.Attribute), ast.unparse(entry)
        owner = eval(ast.unparse(entry.value), {}, names)  # a class, or an instance of one
        fields = (
            {f.name for f in dataclasses.fields(owner)} if dataclasses.is_dataclass(owner) else ()
        )
        assert hasattr(owner, entry.attr) or entry.attr in fields, ast.unparse(entry)


def test_whitelisted_plan_methods_are_called_from_the_rules():
    called = {name for path in RULES for name in re.findall(r"\bPLAN\.(\w+)", path.read_text())}
    listed = {
        e.attr
        for e in _listed(ast.parse(WHITELIST.read_text()))
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "Plan"
    }
    assert listed
    assert sorted(listed - called) == [], "no rule calls these; remove them from the whitelist"


def test_whitelisted_spec_fields_are_read_by_the_rules():
    # jobs.smk reads the fields of each rule's spec (``_spec`` of its loop over PLAN.specs())
    read = {name for path in RULES for name in re.findall(r"\b_?spec\.(\w+)", path.read_text())}
    listed = {
        e.attr
        for e in _listed(ast.parse(WHITELIST.read_text()))
        if isinstance(e, ast.Attribute)
        and isinstance(e.value, ast.Name)
        and e.value.id == "RuleSpec"
    }
    assert listed
    assert sorted(listed - read) == [], "no rule reads these; remove them from the whitelist"


def test_whitelisted_family_methods_are_rules_of_their_family():
    """A family method listed is one ``Plan.spec`` calls by a rule's name (``getattr``): the
    name of one of the family's rules (its ``RULES``)."""
    from echoprep.plan.rule import Family

    tree = ast.parse(WHITELIST.read_text())
    names = _imports(tree)
    listed = [
        (names[e.value.id], e.attr)
        for e in _listed(tree)
        if isinstance(e, ast.Attribute)
        and isinstance(e.value, ast.Name)
        and isinstance(names.get(e.value.id), type)
        and issubclass(names[e.value.id], Family)
    ]
    assert listed
    stale = [
        f"{family.__name__}.{attr}"
        for family, attr in listed
        if attr not in {d.name for d in family.RULES}
    ]
    assert stale == [], "not a rule of the family; remove them from the whitelist"

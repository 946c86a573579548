"""docs/naming.md against the code: its rule table, its ``desc`` labels and their convention.

- Table 1 (between ``<!-- rules-table -->`` markers) has one row per rule (``rule all`` and
  each family's definitions, ``helpers.snake.rule_blocks``) and no other; the commands,
  modules, output stages and folders it names exist, and every output stage of the file table
  is named by some row.
- Table 2 (between ``<!-- desc-table -->`` markers) lists every ``desc`` value of the file table
  (``echoprep.io.outputs.OUTPUTS``) and no other, with its casing, origin and output entries;
  the ``LAION loader`` labels are exactly the published files' and every label of a file a tool
  names (``tool_name``) is a ``tool`` label; echoprep's own labels keep the stated convention.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from echoprep.cli import STAGE_COMMANDS
from echoprep.io.output_folders import FOLDERS
from echoprep.io.outputs import OUTPUTS
from helpers.snake import rule_blocks, rule_definitions

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "naming.md"
PACKAGE = ROOT / "workflow" / "echoprep"

#: Commands of ``python -m echoprep`` that are no stage (``echoprep.cli.build_parser``).
BUILTIN_COMMANDS = {"simulate", "discover", "describe", "install-profile"}
#: Origins of table 2, in the order of the doc's count line; every one but ``echoprep`` is a
#: documented exception to the convention.
ORIGINS = ("LAION loader", "LAION GLM", "LAION style", "tool", "tool style", "echoprep")
#: echoprep's own labels: lowerCamelCase (one word: lowercase), no run of capitals.
OWN_LABEL = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*")
PLACEHOLDER = re.compile(r"\{\w+\}")


def _table(text: str, marker: str) -> list[list[str]]:
    """The cells of each body row of the table between two ``<!-- marker -->`` lines."""
    parts = text.split(f"<!-- {marker} -->")
    assert len(parts) == 3, f"docs/naming.md needs two <!-- {marker} --> lines around its table"
    rows = [line for line in parts[1].strip().splitlines() if line.startswith("|")]
    assert len(rows) > 2, f"no rows between the {marker} markers"
    return [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows[2:]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _first_ticked(cell: str) -> str:
    names = _ticked(cell)
    assert names, f"no `name` in the cell {cell!r}"
    return names[0]


def _keyed_rows(text: str, marker: str, width: int, what: str) -> dict[str, list[str]]:
    """The table after ``marker``: its first ticked name -> its ``width`` cells."""
    rows: dict[str, list[str]] = {}
    for cells in _table(text, marker):
        assert len(cells) == width, cells
        key = _first_ticked(cells[0])
        assert key not in rows, f"{what} {key} has two rows"
        rows[key] = cells
    return rows


def rule_rows(text: str) -> dict[str, list[str]]:
    """Table 1: rule -> its cells (rule, command, module, output stage, folder, why)."""
    return _keyed_rows(text, "rules-table", 6, "rule")


def desc_rows(text: str) -> dict[str, list[str]]:
    """Table 2: desc label -> its cells (label, casing, origin, output entries)."""
    return _keyed_rows(text, "desc-table", 4, "desc")


def casing(label: str) -> str:
    """``lower``, ``lowerCamel`` or ``UpperCamel`` (placeholders such as ``{nrep}`` left out)."""
    word = PLACEHOLDER.sub("", label)
    if re.fullmatch(r"[a-z][a-z0-9]*", word):
        return "lower"
    if re.fullmatch(r"[a-z][a-z0-9]*[A-Z][A-Za-z0-9]*", word):
        return "lowerCamel"
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*", word):
        return "UpperCamel"
    raise AssertionError(f"desc {label!r} is none of lower, lowerCamel, UpperCamel")


def desc_outputs() -> dict[str, set[str]]:
    """desc value -> the keys of the file table's entries that carry it (a value that is only a
    placeholder, ``{combine}``, is no label of its own: the series' labels it takes are)."""
    found: dict[str, set[str]] = {}
    for key, out in OUTPUTS.items():
        if "desc" in out.entities and PLACEHOLDER.sub("", out.entities["desc"]):
            found.setdefault(out.entities["desc"], set()).add(key)
    return found


def label_problems(rows: dict[str, list[str]]) -> list[str]:
    """Labels of table 2 that break the convention of docs/naming.md §2."""
    problems = []
    for label, (_, _, origin, _) in rows.items():
        if origin != "echoprep":
            continue  # a documented exception (LAION's, a tool's, or in their style)
        if not OWN_LABEL.fullmatch(PLACEHOLDER.sub("", label)):  # as casing(): {x} left out
            problems.append(f"{label}: echoprep's own labels are lowerCamelCase")
        elif casing(label) == "lowerCamel":
            stages = {OUTPUTS[key].stage.split("_")[0] for key in desc_outputs().get(label, ())}
            bad = sorted(s for s in stages if not label.startswith(s))
            if bad:
                problems.append(f"{label}: a label of several words begins with its stage {bad}")
    return problems


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_every_rule_has_a_row_and_every_row_is_a_rule(doc):
    rules = set(rule_blocks())
    rows = set(rule_rows(doc))
    assert sorted(rules - rows) == [], "rules missing from docs/naming.md table 1"
    assert sorted(rows - rules) == [], "rows of docs/naming.md table 1 that name no rule"
    assert f"{len(rules)} rules." in doc


def test_the_commands_of_each_row_are_those_its_rule_runs(doc):
    blocks = rule_blocks()
    steps = " ".join(d.command for d in rule_definitions().values())
    for rule, cells in rule_rows(doc).items():
        for command in _ticked(re.sub(r"\([^)]*\)", "", cells[1])):  # not the (remarks)
            words = command.split()
            assert words[0] in STAGE_COMMANDS or words[0] in BUILTIN_COMMANDS, (rule, command)
            if words[0] in STAGE_COMMANDS:  # a stage command: in the rule's shell or a step's
                shell = f"python -m echoprep {command}"
                assert shell in blocks[rule] or shell in steps, (rule, shell)


def test_the_modules_output_stages_and_folders_named_exist(doc):
    stages = {out.stage for out in OUTPUTS.values()}
    named: set[str] = set()
    for rule, (_, _, modules, out_stages, folders, _) in rule_rows(doc).items():
        for module in _ticked(modules):
            assert (PACKAGE / module).exists(), (rule, module)
        for stage in _ticked(out_stages):
            assert stage in stages, (rule, stage)
            named.add(stage)
        for kind, name in re.findall(r"`([\w-]+)` → `([^`]+)`", folders):
            assert kind in FOLDERS and FOLDERS[kind].template == name, (rule, kind, name)
    assert sorted(stages - named) == [], "output stages no row of table 1 names"


def test_every_desc_label_is_listed_with_its_entries_casing_and_origin(doc):
    found = desc_outputs()
    rows = desc_rows(doc)
    assert sorted(set(found) - set(rows)) == [], "desc labels missing from docs/naming.md"
    assert sorted(set(rows) - set(found)) == [], "desc labels listed but in no output"
    for label, (_, case, origin, entries) in rows.items():
        assert case == casing(label), (label, case)
        assert origin in ORIGINS, (label, origin)
        assert set(_ticked(entries)) == found[label], (label, entries)
    origins = Counter(cells[2] for cells in rows.values())
    line = ", ".join(f"{o} {origins[o]}" for o in ORIGINS)
    assert f"By origin: {line}." in doc


def test_the_laion_and_tool_labels_are_those_of_the_published_and_tool_files(doc):
    rows = desc_rows(doc)
    published = {
        o.entities["desc"]
        for o in OUTPUTS.values()
        if o.stage == "publish" and "desc" in o.entities
    }
    laion = {label for label, cells in rows.items() if cells[2] == "LAION loader"}
    assert laion == published
    tools = {o.entities["desc"] for o in OUTPUTS.values() if o.tool_name and "desc" in o.entities}
    assert sorted(label for label in tools if rows[label][2] != "tool") == []


def test_every_own_label_keeps_the_convention(doc):
    assert label_problems(desc_rows(doc)) == []


def test_the_checks_fail_on_a_missing_row_and_a_label_against_the_convention(doc):
    """The checks can fail: a rule row taken out, an own label of the wrong case, an own label
    of several words that does not begin with its stage."""
    row = next(line for line in doc.splitlines() if line.startswith("| `analysis_mask` |"))
    assert "analysis_mask" not in rule_rows(doc.replace(row + "\n", ""))
    assert label_problems({"SomeMap": ["`SomeMap`", "UpperCamel", "echoprep", ""]})
    assert label_problems({"Some{combine}": ["`Some{combine}`", "UpperCamel", "echoprep", ""]})
    assert not label_problems({"physio{combine}": ["`physio{combine}`", "lower", "echoprep", ""]})
    # tedana's label (stage combine), were it echoprep's own
    row = ["`adaptiveGoodSignal`", "lowerCamel", "echoprep", "`combine.optcom.mask`"]
    assert label_problems({"adaptiveGoodSignal": row})

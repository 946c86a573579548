"""The package's layering and size rules (docs/architecture.md), checked on the source.

- Import graph: kernels import only kernels (and the leaf echoprep.variants); io, adapters,
  report and simulate never import a stage; no stage imports another stage (a stage
  package's own modules may import each other); the plan never imports a stage (a DAG
  build must not pull in matplotlib, ANTs or tedana).
- No module over 700 lines without a stated reason in its module docstring.
- Docstrings, comments and the config schema point to docs/, never outside the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workflow" / "echoprep"
MAX_LINES = 700


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``echoprep...`` module a file imports (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("echoprep"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("echoprep"))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "echoprep"


def _stage(module: str) -> str | None:
    """The stage (family) a module belongs to: ``echoprep.stages.glm.fit`` -> ``glm``."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "stages" else None


#: Layers each layer may import (besides itself and the package root's metadata).
ALLOWED = {
    "kernels": {"kernels"},
    "io": {"io", "kernels", "config", "options"},
    "adapters": {"adapters", "kernels", "io"},
    "report": {"report", "kernels", "io"},
    "simulate": {"simulate", "kernels", "io"},
    "options": {"config"},
    "config": set(),
    "resources": set(),
    "variants": set(),
    "plan": {"plan", "io", "options", "config", "resources"},
    "stages": {"stages", "kernels", "io", "adapters", "report", "options", "config"},
}
# the variants vocabulary (a leaf: imports nothing) may be used by every layer
for _layer_name, _allowed in ALLOWED.items():
    if _layer_name != "variants":
        _allowed.add("variants")


def _violations() -> list[str]:
    modules = _modules()
    problems = []
    for name, path in sorted(modules.items()):
        layer = _layer(name)
        for imported in sorted(_imports(path)):
            target = imported
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # "from x import name": the module is x
            if target == "echoprep":
                continue  # __version__, CODE_URL
            other = _layer(target)
            if layer in ALLOWED and other not in ALLOWED[layer] and other != layer:
                problems.append(f"{name} ({layer}) imports {target} ({other})")
            if layer == "stages" and other == "stages" and _stage(target) != _stage(name):
                problems.append(f"stage {name} imports stage {target}")
    return problems


def test_layers_import_only_what_they_may():
    assert _violations() == []


def test_the_import_check_sees_function_level_imports(tmp_path):
    """The check can fail: an import inside a function is found like one at the top."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from echoprep.stages.anatomy import x\n")
    assert "echoprep.stages.anatomy" in _imports(probe)


def test_no_module_is_over_700_lines_without_a_reason():
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        n = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MAX_LINES and "over 700 lines" not in doc:
            long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert long == []


#: The most lines of a module of the plan (a reader of one rule reads its family's module).
PLAN_MAX_LINES = 400


def test_no_plan_module_is_over_400_lines():
    long = [
        f"{p.relative_to(ROOT)}: {p.read_text().count(chr(10))} lines"
        for p in (PACKAGE / "plan").rglob("*.py")
        if p.read_text().count("\n") > PLAN_MAX_LINES
    ]
    assert long == []


def _plan_classes() -> dict[str, list[str]]:
    """Class name -> the names of its bases, of every class defined in the plan."""
    classes = {}
    for path in (PACKAGE / "plan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = [
                    b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases
                ]
    return classes


def _depth(name: str, classes: dict[str, list[str]]) -> int:
    """Levels of plan classes above ``name`` (0: it derives from none)."""
    bases = [b for b in classes.get(name, []) if b in classes]
    return 1 + max(_depth(b, classes) for b in bases) if bases else 0


def test_no_class_hierarchy_deeper_than_one_level_in_the_plan():
    """Families derive from :class:`echoprep.plan.rule.Family` and nothing else of the plan;
    no plan class derives from a class that derives from another (the plan was a chain of
    seven)."""
    classes = _plan_classes()
    assert "Family" in classes and len(classes) >= 15
    deep = {name: _depth(name, classes) for name in classes if _depth(name, classes) > 1}
    assert deep == {}
    chain = {"A": [], "B": ["A"], "C": ["B"]}
    assert _depth("C", chain) == 2


#: Pointers to the design notes outside the repository.
OUTSIDE = re.compile(r"shared/specs|\.\./shared|design notes|glmsingle\.md|pipeline\.md|hpc\.md")


def test_docs_are_pointed_to_inside_the_repository():
    files = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "workflow" / "rules").glob("*.smk"),
        ROOT / "workflow" / "schemas" / "config.schema.yaml",
        ROOT / "config" / "config.yaml",
    ]
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if OUTSIDE.search(line.replace("docs/glm.md", ""))
    ]
    assert found == []
    cited = {m.group(1) for p in files for m in re.finditer(r"docs/([\w-]+\.md)", p.read_text())}
    assert cited and all((ROOT / "docs" / name).is_file() for name in cited), cited


def test_the_places_to_touch_when_adding_a_stage_exist():
    """docs/architecture.md's list of places to touch names files and symbols that exist, and
    at most 10 existing files (a numbered item each) for a per-run stage in the middle of the
    chain."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("<!-- places-to-touch -->")[1]
    paths = set(
        re.findall(
            r"`((?:workflow|tests|config|profiles|benchmarks|docs|envs)/[\w/.-]+"
            r"|echoprep/[\w/.]+|Snakefile|README\.md|pyproject\.toml)`",
            section,
        )
    )
    assert len(paths) >= 20, paths
    existing = section.split("**Existing files**")[1].split("**Tests that pin")[0]
    items = re.findall(r"^(\d+)\. ", existing, re.M)
    assert items == [str(i) for i in range(1, len(items) + 1)] and len(items) <= 10, items
    for path in paths:
        where = ROOT / path if not path.startswith("echoprep/") else PACKAGE.parent / path
        assert where.exists(), path
    symbols = {
        "STAGE_COMMANDS": PACKAGE / "cli.py",
        "FAMILIES": PACKAGE / "plan" / "front.py",
        "RuleDef": PACKAGE / "plan" / "rule.py",
        "RuleFiles": PACKAGE / "plan" / "rule.py",
        "Family": PACKAGE / "plan" / "rule.py",
        "def fixed_mb(": PACKAGE / "plan" / "rule.py",
        "def run_copies_mb(": PACKAGE / "plan" / "rule.py",
        "def files(": PACKAGE / "plan" / "context.py",
        "def folders(": PACKAGE / "plan" / "rule.py",
        "class Folder": PACKAGE / "io" / "output_folders.py",
        "def parse_options(": PACKAGE / "options.py",
        # a stage in the middle of the chain: the consumer's inputs
        "def _fit_inputs(": PACKAGE / "plan" / "families" / "glm.py",
        "def _mask_inputs(": PACKAGE / "plan" / "families" / "glm.py",
        "def _diagnostics_items(": PACKAGE / "plan" / "families" / "report.py",
        "def _report_inputs(": PACKAGE / "plan" / "families" / "report.py",
        "ALL_VARIANTS": PACKAGE / "variants.py",
        "def series_tr(": PACKAGE / "io" / "images.py",
        "RUN_GROUP_RULE": PACKAGE / "plan" / "front.py",
        "NOT_MEASURED": ROOT / "tests" / "unit" / "test_resources_measured.py",
        "CHANGES": ROOT / "tests" / "workflow" / "test_regeneration.py",
    }
    for symbol, path in symbols.items():
        assert symbol.removeprefix("def ").removeprefix("class ").rstrip("(") in section, symbol
        assert symbol in path.read_text(), (symbol, path)

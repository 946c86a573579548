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
    """docs/architecture.md's list of places to touch names files and symbols that exist."""
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
    for path in paths:
        where = ROOT / path if not path.startswith("echoprep/") else PACKAGE.parent / path
        assert where.exists(), path
    symbols = {
        "STAGE_COMMANDS": PACKAGE / "cli.py",
        "STAGE_OPTIONS": ROOT / "tests" / "unit" / "test_options.py",
        "def targets(": PACKAGE / "plan" / "_base.py",
        "def described_folders(": PACKAGE / "plan" / "_base.py",
        "def _memory(": PACKAGE / "plan" / "_base.py",
        "class Folder": PACKAGE / "io" / "output_folders.py",
        "RULE_LOGS": PACKAGE / "io" / "rule_logs.py",
        "def parse_options(": PACKAGE / "options.py",
        # a stage in the middle of the chain: the consumer's inputs, resources, the cluster
        "def _glm_inputs(": PACKAGE / "plan" / "sessions.py",
        "def _analysis_mask_inputs(": PACKAGE / "plan" / "sessions.py",
        "def _diagnostics_items(": PACKAGE / "plan" / "subjects.py",
        "def _report_inputs(": PACKAGE / "plan" / "subjects.py",
        "SPECS": PACKAGE / "plan" / "specs.py",
        "def _rule(": PACKAGE / "plan" / "specs.py",
        "def _work_scale(": PACKAGE / "plan" / "_base.py",
        "ALL_VARIANTS": PACKAGE / "variants.py",
        "def series_tr(": PACKAGE / "stages" / "glm" / "inputs.py",
        "SECTIONS": PACKAGE / "io" / "describe.py",
        "MINUTES": PACKAGE / "resources.py",
        "RUN_RULES": PACKAGE / "resources.py",
        "SESSION_RULES": PACKAGE / "resources.py",
        "FIXED_MB": PACKAGE / "resources.py",
        "groups:": ROOT / "profiles" / "slurm" / "config.yaml",
        "CHANGES": ROOT / "tests" / "workflow" / "test_regeneration.py",
    }
    for symbol, path in symbols.items():
        assert symbol.removeprefix("def ").removeprefix("class ").rstrip("(") in section, symbol
        assert symbol in path.read_text(), (symbol, path)

"""The output registry (echoprep.io.outputs): every derivative declared once, names built in
BIDS entity order, and no output name spelled anywhere else in the package or the rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from echoprep.io import outputs as reg

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workflow" / "echoprep"
REGISTRY = PACKAGE / "io" / "outputs.py"


def _code(path: Path) -> str:
    """The file's text with comments and docstrings blanked (line numbers kept): prose may
    mention a file name, code must not spell one."""
    text = path.read_text()
    lines = text.split("\n")
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                for i in range(node.lineno - 1, node.end_lineno):
                    lines[i] = ""
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in lines)


def _sources() -> dict[Path, str]:
    files = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "workflow" / "rules").glob("*.smk"),
        ROOT / "Snakefile",
    ]
    # the simulator writes the raw input dataset (BIDS names), not derivatives
    return {p: _code(p) for p in files if p != REGISTRY and "simulate" not in p.parts}


def test_keys_are_unique_and_levels_known():
    outputs = reg._outputs()
    assert len({o.key for o in outputs}) == len(outputs)
    assert {o.level for o in outputs} <= set(reg.LEVELS)
    # every output lives in a described folder
    templates = {f.template for f in reg.FOLDERS.values()}
    assert {o.folder for o in outputs} <= templates


@pytest.mark.parametrize(
    ("key", "where", "values", "expected"),
    [
        (
            "glm.betas",
            reg.session_key("01", "01", "images"),
            {"nordic": "nordic", "combine": "optcom"},
            "glmsingle-nordic-optcom/sub-01/ses-01/func/"
            "sub-01_ses-01_task-images_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz",
        ),
        (
            "nordic.bold",
            reg.run_key({"sub": "01", "ses": "02", "task": "images", "run": "03"}),
            {"echo": 2},
            "nordic/sub-01/ses-02/func/sub-01_ses-02_task-images_run-03_echo-2_part-mag_desc-nordic_bold.nii.gz",
        ),
        (
            "noiseceiling.nrep",
            ("{sub_dir}", "{sub_prefix}"),
            {"nordic": "raw", "combine": "single", "nrep": "{nrep}"},
            "glmsingle-raw-single/{sub_dir}/{sub_prefix}_space-T1w_desc-Noiseceiling{nrep}rep_statmap.nii.gz",
        ),
        (
            "rois.mask",
            reg.get("rois.mask").subject_key("01", category="visual"),
            {"res": "1pt8", "label": "visuallyResponsive"},
            "rois/sub-01/visual/sub-01_space-T1w_res-1pt8_label-visuallyResponsive_mask.nii.gz",
        ),
        (
            "anatomy.xfm_to_template",
            reg.get("anatomy.xfm_to_template").subject_key("01", "images"),
            {},
            f"anat/sub-01/anat/sub-01_from-T1w_to-{reg.TEMPLATE}_mode-image_xfm.h5",
        ),
        ("comparison.json", reg.group_key("images"), {}, "comparison/recommended_variant.json"),
        ("report.html", reg.group_key(), {"subject": "07"}, "reports/sub-07.html"),
    ],
)
def test_paths(key, where, values, expected):
    assert str(reg.get(key).path(Path("/o"), where, space="T1w", **values)) == f"/o/{expected}"


def test_unknown_keys_and_folders_say_what_exists():
    with pytest.raises(KeyError, match="registered"):
        reg.get("glm.nope")
    with pytest.raises(KeyError, match="not a derivative folder"):
        reg.folder_kind("glmsingle")
    assert reg.folder_kind("combine-nordic") == "combine"
    assert reg.FOLDERS["glm"].name_of("glmsingle-raw-optcom").endswith("(glmsingle-raw-optcom)")


def _signatures(output: reg.Output) -> list[re.Pattern[str]]:
    """Ways an output's name could be re-declared outside the registry: its last literal entity
    with the suffix (``desc-SingletrialBetas_statmap``), an entity dict pair
    (``"desc": "SingletrialBetas"``), a fixed file name, the tool's own file name."""
    found = []
    literal = [(k, v) for k, v in output.entities.items() if "{" not in v]
    if literal:
        k, v = literal[-1]
        found.append(re.compile(rf"{k}-{re.escape(v)}_{output.suffix}\b"))
        found.append(re.compile(rf"""["']{k}["']\s*:\s*["']{re.escape(v)}["']"""))
    if output.filename and "{" not in output.filename:
        found.append(re.compile(re.escape(output.filename)))
    if output.tool_name:
        found.append(re.compile(re.escape(output.tool_name)))
    return found


def test_no_output_name_is_spelled_outside_the_registry():
    """Each derivative's name is defined once: the package, the rules and the Snakefile build
    names through the registry, never from literal entities or file names."""
    sources = _sources()
    problems = []
    for output in reg.OUTPUTS.values():
        for pattern in _signatures(output):
            for path, text in sources.items():
                for m in pattern.finditer(text):
                    line = text[: m.start()].count("\n") + 1
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)} ({output.key})")
    assert problems == []


def test_the_signature_check_finds_a_re_declared_name():
    """The check above can fail: a table entry written by hand is caught."""
    text = 'OUTPUTS = {"betas": ("statmap", {"stat": "effect", "desc": "SingletrialBetas"}, "")}'
    hits = [p for p in _signatures(reg.get("glm.betas")) if p.search(text)]
    assert hits


# --------------------------------------------------------------------------------------
# logs and benchmarks (echoprep.io.rule_logs)
# --------------------------------------------------------------------------------------


def _workflow_rules() -> set[str]:
    """Rule names of the rule files: ``rule NAME:``, the echo-count families
    (``PLAN.spec("nordic", _echoes)``) and ``use rule X as NAME`` (which inherits X's log)."""
    names: set[str] = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = _code(path)
        names |= set(re.findall(r"^\s*rule (\w+):", text, re.M))
        names |= set(re.findall(r'PLAN\.spec\(\s*"(\w+)", _echoes\)', text))
    return names


def test_every_rule_logs_under_a_unique_registry_name():
    from echoprep.io.rule_logs import RULE_LOGS, benchmark_path, log_name, log_path

    rules = _workflow_rules() - {"all"}  # rule all runs nothing
    assert rules == set(RULE_LOGS)
    names = [log_name(r) for r in RULE_LOGS]
    assert len(set(names)) == len(names)  # two rules never write one log
    assert log_name("nordic") == "nordic/{run_dir}/{run_prefix}"
    assert log_path("w", "glm") == Path(
        "w/logs/glmsingle-{nordic}-{combine}/{ses_dir}/{ses_prefix}_glm.log"
    )
    assert benchmark_path("w", "comparison") == Path("w/benchmarks/comparison/comparison.tsv")
    assert log_path("w", "config_snapshot") == Path("w/logs/config_snapshot.log")
    # the rule files take every log from their spec, which takes it from the table
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for directive in re.findall(r"^\s+(?:log|benchmark):\n\s+(.+)", _code(path), re.M):
            assert directive in ("_spec.log,", "_spec.benchmark"), (path, directive)


# --------------------------------------------------------------------------------------
# the names a stage run by hand writes (paths_in, path_in)
# --------------------------------------------------------------------------------------


def test_paths_in_gives_the_stage_folder_names(tmp_path):
    ses = reg.session_key("01", "01", "images")
    glm = reg.paths_in(tmp_path, "glm", ses, space="T1w")
    folder = tmp_path / "sub-01" / "ses-01" / "func"
    assert list(glm) == list(reg.stage_outputs("glm"))  # no keys: every output, registry order
    assert glm["betas"] == folder / (
        "sub-01_ses-01_task-images_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    )
    assert glm["trials"] == folder / "sub-01_ses-01_task-images_desc-SingletrialBetas_trials.tsv"
    # root is the stage's own folder: the same path as Output.path below output_dir
    out = tmp_path / "results"
    assert reg.paths_in(out / "glmsingle-raw-single", "glm", ses, space="T1w")["betas"] == (
        reg.get("glm.betas").path(out, ses, space="T1w", nordic="raw", combine="single")
    )
    anat = reg.paths_in(tmp_path, "anatomy", reg.subject_key("01", datatype="anat"))
    assert anat["preproc"] == tmp_path / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz"
    assert anat["xfm_to_template"].name == (f"sub-01_from-T1w_to-{reg.TEMPLATE}_mode-image_xfm.h5")
    optcom = reg.paths_in(tmp_path, "combine", reg.run_key(), variant="optcom", space="T1w")
    assert optcom["t2star"] == tmp_path / "{run_dir}" / "{run_prefix}_space-T1w_T2starmap.nii.gz"


def test_paths_in_keys_select_and_order(tmp_path):
    ses = reg.session_key("01", None, "images")
    paths = reg.paths_in(tmp_path, "glm", ses, keys=["summary", "betas"])
    assert list(paths) == ["summary", "betas"]
    assert paths["betas"] == tmp_path / "sub-01" / "func" / (
        "sub-01_task-images_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    )
    group = reg.paths_in(tmp_path, "comparison", reg.group_key("images"), keys=["json", "tsv"])
    assert group == {
        "json": tmp_path / "recommended_variant.json",
        "tsv": tmp_path / "task-images_desc-variants_comparison.tsv",
    }
    with pytest.raises(KeyError, match="no outputs \\['betaz'\\]"):
        reg.paths_in(tmp_path, "glm", ses, keys=["betas", "betaz"])


def test_path_in_gives_one_output(tmp_path):
    run = reg.run_key({"sub": "01", "ses": "01", "task": "images", "run": "01"})
    echo = reg.path_in(tmp_path, "preproc.bold", run, space="T1w", echo=2)
    assert echo == tmp_path / "sub-01" / "ses-01" / "func" / (
        "sub-01_ses-01_task-images_run-01_echo-2_space-T1w_desc-preproc_bold.nii.gz"
    )
    assert reg.path_in(tmp_path, "preproc.bold", reg.run_key(), echo="{echo}") == (
        tmp_path / "{run_dir}" / "{run_prefix}_echo-{echo}_desc-preproc_bold.nii.gz"
    )
    nc = reg.path_in(tmp_path, "noiseceiling.nc", reg.session_key("01", "02", "images"))
    assert nc.name == "sub-01_ses-02_task-images_desc-Noiseceiling_statmap.nii.gz"
    assert reg.path_in(tmp_path, "comparison.json", reg.group_key("images")) == (
        tmp_path / "recommended_variant.json"
    )

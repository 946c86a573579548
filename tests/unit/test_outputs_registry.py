"""The output registry (echoprep.io.outputs): every derivative declared once, names built in
BIDS entity order, and no output name or derivative folder name spelled anywhere else in the
package or the rules (output names only in the file table, io/output_files.py; folder names
only in the folder table, io/output_folders.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from echoprep.io import outputs as reg
from echoprep.io.output_files import _outputs
from echoprep.io.output_model import PLACEHOLDER

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workflow" / "echoprep"
#: The modules that spell output names (the file table) and folder names (the folder table).
FILE_TABLE = PACKAGE / "io" / "output_files.py"
FOLDER_TABLE = PACKAGE / "io" / "output_folders.py"


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


def _sources(*tables: Path) -> dict[Path, str]:
    """The code of the package, the rules and the Snakefile, without ``tables`` (the modules
    allowed to spell the names searched for)."""
    files = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "workflow" / "rules").glob("*.smk"),
        ROOT / "Snakefile",
    ]
    # the simulator writes the raw input dataset (BIDS names), not derivatives
    return {p: _code(p) for p in files if p not in tables and "simulate" not in p.parts}


def test_keys_are_unique_and_levels_known():
    outputs = _outputs()
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
    # the folder table's .bidsignore entries name files too (``*_desc-confounds_timeseries.*``)
    sources = _sources(FILE_TABLE, FOLDER_TABLE)
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
# derivative folder names: spelled once, in the folder table (echoprep.io.output_folders)
# --------------------------------------------------------------------------------------

#: Folder names the raw BIDS input also uses (``sub-01/anat/``): as a path part they may be
#: either, so only a table-like re-declaration (``"folder": "anat"``) is searched for.
BIDS_DATATYPES = frozenset({"anat", "func", "fmap", "dwi", "perf", "beh"})


def _common_words() -> set[str]:
    """Names that are also another word of the package: a stage or an output name (``"nordic"``,
    ``"rois"``, ``"comparison"``, which name config sections too): alone in quotes they are no
    evidence of a folder name, so only their use as a path part is searched for."""
    words = set()
    for o in reg.OUTPUTS.values():
        words |= {o.stage, o.name}
    return words


def _folder_signatures(folder: reg.Folder) -> list[re.Pattern[str]]:
    """Ways a derivative folder's name could be spelled outside the folder table.

    A template with a placeholder (``combine-{nordic}``, ``glmsingle-{nordic}-{combine}``): a
    string starting with its literal part and going on with a value or a wildcard
    (``f"combine-{n}"``, ``"preproc-raw"``, ``"glmsingle-analysis"``). A fixed name
    (``reports``): a table entry (``"folder": "reports"``, ``folder="reports"``); unless the
    raw input uses the name too (:data:`BIDS_DATATYPES`), a path join (``out / "reports"``) or
    a path starting with it (``"reports/sub-01.html"``, ``"(atlases/sub-01/..."``); unless the
    word means something else too (:func:`_common_words`, a BIDS datatype, or its own kind in
    the table: ``folder_name("atlases")``), the name alone.
    """
    template = folder.template
    literal = PLACEHOLDER.split(template)[0]
    if literal != template:
        return [re.compile(rf"""["']{re.escape(literal)}[{{A-Za-z0-9]""")]
    name = re.escape(template)
    found = [re.compile(rf"""\bfolder["']?\s*[:=]\s*["']{name}["']""")]
    if template not in BIDS_DATATYPES:
        found += [
            re.compile(rf"""/\s*["']{name}["']"""),
            re.compile(rf"""(?<![\w/.{{}}-]){name}/"""),
        ]
    if template not in _common_words() | BIDS_DATATYPES | set(reg.FOLDERS):
        found.append(re.compile(rf"""["']{name}["']"""))
    return found


def _folder_problems(sources: dict[Path, str]) -> list[str]:
    problems = []
    for kind, folder in reg.FOLDERS.items():
        for pattern in _folder_signatures(folder):
            for path, text in sources.items():
                for m in pattern.finditer(text):
                    line = text[: m.start()].count("\n") + 1
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)} ({kind})")
    return problems


def test_no_folder_name_is_spelled_outside_the_folder_table():
    """Each derivative folder's name is defined once, in FOLDERS: the file table, the log
    names, the plan's described folders, the report and the rules read it from there
    (``folder_name``, ``Folder.template``), never from a literal."""
    assert _folder_problems(_sources(FOLDER_TABLE)) == []


@pytest.mark.parametrize(
    "code",
    [
        'folders.append("reports")',
        'folders += [f"combine-{n}" for n in sides]',
        'log=("preproc-raw", RUN_KEY, ""),',
        'out / "glmsingle-analysis" / "sub-01"',
        'f"atlases/sub-{subject}/rois/{label}.nii.gz"',
        'Path(out) / "nordic"',
        'f"comparison/{name}"',
        'LAION_GLM = "glmsingle-tedana"',
        'f"names a ROI by its label ({{sub}}: atlases/sub-{subject}/rois/{label}.nii.gz)"',
        '{"folder": "anat", "level": "subject"}',
        'o("rois", "mask", folder="rois")',
    ],
)
def test_the_folder_check_finds_a_re_declared_name(code):
    """The check above can fail: a folder name written by hand is caught."""
    assert _folder_problems({ROOT / "probe.py": code})


@pytest.mark.parametrize(
    "code",
    [
        'self.options("nordic")',
        'stage_outputs("comparison")',
        'Path(sub_path) / "anat"',
        'f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz"',
        'tempfile.TemporaryDirectory(prefix="glmsingle-")',
        'folder_name("combine", nordic="raw")',
        'folder_name("atlases")',
        'FOLDERS["atlases"].template',
        'f"{root}/sub-{sub}/rois/{label}.nii.gz"',
    ],
)
def test_the_folder_check_passes_other_uses_of_the_words(code):
    """Stage and section names, the raw input's datatype folders and a folder read from the
    table are not folder names spelled by hand."""
    assert _folder_problems({ROOT / "probe.py": code}) == []


def test_folder_names_come_from_the_table():
    assert reg.folder_name("combine", nordic="raw") == "combine-raw"
    assert reg.folder_name("glm", nordic="nordic", combine="optcom") == "glmsingle-nordic-optcom"
    assert reg.folder_name("glm") == "glmsingle-{nordic}-{combine}"  # unfilled: a wildcard
    assert reg.folder_name("report") == "reports"
    assert (reg.LAION_GLM, reg.LAION_ATLASES) == (
        reg.folder_name("laion"),
        reg.folder_name("atlases"),
    )
    for kind, folder in reg.FOLDERS.items():
        filled = reg.folder_name(kind, nordic="raw", combine="single")
        assert reg.folder_kind(filled) == kind, (kind, filled)
        assert folder.pattern().fullmatch(filled)
    with pytest.raises(KeyError, match="no derivative folder kind 'glmsingle'"):
        reg.folder_name("glmsingle")


def _definitions() -> dict:
    """Every rule's definition (:class:`echoprep.plan.rule.RuleDef`): the ``RULES`` of each
    family class of :mod:`echoprep.plan.families`, by rule name."""
    import importlib
    import pkgutil

    import echoprep.plan.families as families
    from echoprep.plan.rule import Family

    found = {}
    for module in pkgutil.iter_modules(families.__path__):
        mod = importlib.import_module(f"{families.__name__}.{module.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Family) and obj.__module__ == mod.__name__:
                for defn in obj.RULES:
                    assert found.setdefault(defn.name, defn) is defn, defn.name
    return found


def test_every_log_folder_is_a_derivative_folder():
    """The log names' folders are derivative folder names (or their wildcard templates)."""
    templates = {f.template for f in reg.FOLDERS.values()}
    definitions = _definitions()
    assert definitions
    for rule, defn in definitions.items():
        folder, _key, _tag = defn.log
        if folder in ("", "{folder}"):  # the config snapshot; each folder's description
            continue
        assert folder in templates or reg.folder_kind(folder), rule


# --------------------------------------------------------------------------------------
# logs and benchmarks (echoprep.io.rule_logs)
# --------------------------------------------------------------------------------------


def test_every_rule_logs_under_a_unique_registry_name(tmp_path):
    import dataclasses

    from echoprep.io.rule_logs import benchmark_path, log_name, log_path
    from helpers.bidstree import make_bids_tree
    from helpers.plans import make_plan

    definitions = _definitions()
    plan = make_plan(make_bids_tree(tmp_path / "bids", data=False), tmp_path)
    # the workflow's rules (jobs.smk: one per spec) are the families' definitions
    assert set(plan.rule_names()) == set(definitions)
    names: dict[str, str] = {}
    for rule, defn in definitions.items():
        other = names.setdefault(log_name(defn.log), rule)
        # two rules never write one log, but for a definition used again under another name
        # (tedana_nordic: tedana's, for the other NORDIC variant: the jobs never meet)
        if other != rule:
            same = dataclasses.replace(definitions[other], name=rule, doc=defn.doc)
            assert same == defn, (rule, other)
    assert len(set(names)) == len(definitions) - 1  # tedana_nordic
    assert log_name(definitions["nordic"].log) == "nordic/{run_dir}/{run_prefix}"
    assert log_path("w", definitions["glm"].log) == Path(
        "w/logs/glmsingle-{nordic}-{combine}/{ses_dir}/{ses_prefix}_glm.log"
    )
    assert benchmark_path("w", definitions["comparison"].log) == Path(
        "w/benchmarks/comparison/comparison.tsv"
    )
    assert log_path("w", definitions["config_snapshot"].log) == Path("w/logs/config_snapshot.log")
    # every rule's spec takes its log (and benchmark) from its definition
    work = plan.config["work_dir"]
    for spec in plan.specs():
        defn = plan.definition(re.sub(r"_\d+echoes$", "", spec.name))
        assert spec.log == str(log_path(work, defn.log)), spec.name
        expected = None if defn.local else str(benchmark_path(work, defn.log))
        assert spec.benchmark == expected, spec.name
    # the rule files take every log from their spec
    directives = [
        (path, directive)
        for path in (ROOT / "workflow" / "rules").glob("*.smk")
        for directive in re.findall(r"^\s+(?:log|benchmark):\n\s+(.+)", _code(path), re.M)
    ]
    assert directives
    for path, directive in directives:
        assert re.fullmatch(r"_?spec\.(log,|benchmark)", directive), (path, directive)


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

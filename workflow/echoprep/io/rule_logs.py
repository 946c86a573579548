"""Where each rule's log and Snakemake benchmark go, beside the output registry.

Every rule writes its standard error to ``<work_dir>/logs/<name>.log`` and Snakemake's
benchmark record to ``<work_dir>/benchmarks/<name>.tsv``, with one ``<name>`` per job built from
:data:`RULE_LOGS`: the derivative folder of the rule's outputs (its name read from the folder
table, :func:`echoprep.io.outputs.folder_name`), the key of the job (the same wildcards as its
outputs: run, session, subject, ...) and a tag that tells the rules writing to one folder at
one key apart. One table, so that a new rule gets its log name here and the names stay unique
(``tests/unit/test_outputs_registry.py``).
"""

from __future__ import annotations

from pathlib import Path

from echoprep.io.outputs import folder_name, run_key

_GLM = folder_name("glm")
_COMBINE = folder_name("combine")
_ROIS = folder_name("rois")
_COMPARISON = folder_name("comparison")
_REPORTS = folder_name("report")
_LAION = folder_name("laion")
_RUN = run_key()
_SES = ("{ses_dir}", "{ses_prefix}")
_SUB_DIR = ("{sub_dir}", "{sub_prefix}")
_SUB = ("", "sub-{subject}")
_TOP = ("", "")

#: Rule (family: ``nordic`` also names ``nordic_<n>echoes``) -> (folder, (key folder, key
#: stem), tag): the job's name is ``<folder>/<key folder>/<key stem>_<tag>`` (empty parts
#: left out).
RULE_LOGS: dict[str, tuple[str, tuple[str, str], str]] = {
    "config_snapshot": ("", _TOP, "config_snapshot"),
    "dataset_description": ("{folder}", _TOP, "dataset_description"),
    "nordic": (folder_name("nordic"), _RUN, ""),
    "anatomy": (folder_name("anatomy"), _SUB, ""),
    "spatial_run": (folder_name("spatial"), _RUN, "run"),
    "spatial_subject": (folder_name("spatial"), _SUB, "subject"),
    "spatial_reference": (folder_name("spatial"), _SUB, "reference"),
    "spatial_resample": (folder_name("preproc", nordic="raw"), _RUN, ""),
    "confounds": (_COMBINE, _RUN, "confounds"),
    "single_echo": (_COMBINE, _RUN, "single"),
    "optcom": (_COMBINE, _RUN, "optcom"),
    "tedana": (_COMBINE, _RUN, "tedana"),
    "glm_analysis_mask": (folder_name("analysis-mask"), _SES, "mask"),
    "glm": (_GLM, _SES, "glm"),
    "glm_reference": (_GLM, _SES, "typeb"),
    "glm_heldout": (_GLM, _SES, "heldout"),
    "noiseceiling_session": (_GLM, _SES, "noiseceiling"),
    "noiseceiling_subject": (_GLM, _SUB_DIR, "noiseceiling"),
    "noiseceiling_repeats": (_GLM, _SUB_DIR, "nc{nrep}rep"),
    "roi_visual": (_ROIS, ("", "sub-{subject}_res-{roi_res}"), "visual"),
    "roi_mask": (_ROIS, ("", "sub-{subject}_{roi_category}_{roi_label}_res-{roi_res}"), ""),
    "roi_table": (_GLM, _SES, "rois"),
    "comparison_subject": (_COMPARISON, _SUB, "comparison"),
    "comparison": (_COMPARISON, _TOP, "comparison"),
    "nordic_diagnostics": (_REPORTS, _SUB, "diagnostics"),
    "subject_report": (_REPORTS, _SUB, ""),
    "publish_session": (_LAION, _SES, "publish"),
    "publish_subject": (_LAION, _SUB, "publish"),
    "publish_repeats": (_LAION, ("", "sub-{subject}_nc{nrep}rep"), "publish"),
    "publish_roi": (folder_name("atlases"), ("", "sub-{subject}_{laion_roi}"), "publish"),
}


def log_name(rule: str) -> str:
    """The job name pattern of a rule (``nordic/{run_dir}/{run_prefix}``); KeyError for a
    rule without an entry."""
    folder, (key_folder, stem), tag = RULE_LOGS[rule]
    name = "_".join(p for p in (stem, tag) if p)
    return "/".join(p for p in (folder, key_folder, name) if p)


def log_path(work_dir: str | Path, rule: str) -> Path:
    """``<work_dir>/logs/<name>.log`` of a rule (a wildcard pattern)."""
    return Path(work_dir) / "logs" / f"{log_name(rule)}.log"


def benchmark_path(work_dir: str | Path, rule: str) -> Path:
    """``<work_dir>/benchmarks/<name>.tsv`` of a rule (a wildcard pattern)."""
    return Path(work_dir) / "benchmarks" / f"{log_name(rule)}.tsv"


__all__ = ["RULE_LOGS", "benchmark_path", "log_name", "log_path"]

"""Where each rule's log and Snakemake benchmark go, beside the output registry.

Every rule writes its standard error to ``<work_dir>/logs/<name>.log`` and Snakemake's
benchmark record to ``<work_dir>/benchmarks/<name>.tsv``, with one ``<name>`` per job built from
:data:`RULE_LOGS`: the derivative folder of the rule's outputs (:mod:`echoprep.io.outputs`),
the key of the job (the same wildcards as its outputs: run, session, subject, ...) and a tag
that tells the rules writing to one folder at one key apart. One table, so that a new rule
gets its log name here and the names stay unique (``tests/unit/test_outputs_registry.py``).
"""

from __future__ import annotations

from pathlib import Path

from echoprep.io.outputs import LAION_ATLASES, LAION_GLM, run_key

_GLM = "glmsingle-{nordic}-{combine}"
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
    "nordic": ("nordic", _RUN, ""),
    "anatomy": ("anat", _SUB, ""),
    "spatial_run": ("spatial", _RUN, "run"),
    "spatial_subject": ("spatial", _SUB, "subject"),
    "spatial_reference": ("spatial", _SUB, "reference"),
    "spatial_resample": ("preproc-raw", _RUN, ""),
    "confounds": ("combine-{nordic}", _RUN, "confounds"),
    "single_echo": ("combine-{nordic}", _RUN, "single"),
    "optcom": ("combine-{nordic}", _RUN, "optcom"),
    "tedana": ("combine-{nordic}", _RUN, "tedana"),
    "glm_analysis_mask": ("glmsingle-analysis", _SES, "mask"),
    "glm": (_GLM, _SES, "glm"),
    "glm_reference": (_GLM, _SES, "typeb"),
    "glm_heldout": (_GLM, _SES, "heldout"),
    "noiseceiling_session": (_GLM, _SES, "noiseceiling"),
    "noiseceiling_subject": (_GLM, _SUB_DIR, "noiseceiling"),
    "noiseceiling_repeats": (_GLM, _SUB_DIR, "nc{nrep}rep"),
    "roi_visual": ("rois", ("", "sub-{subject}_res-{roi_res}"), "visual"),
    "roi_mask": ("rois", ("", "sub-{subject}_{roi_category}_{roi_label}_res-{roi_res}"), ""),
    "roi_table": (_GLM, _SES, "rois"),
    "comparison_subject": ("comparison", _SUB, "comparison"),
    "comparison": ("comparison", _TOP, "comparison"),
    "nordic_diagnostics": ("reports", _SUB, "diagnostics"),
    "subject_report": ("reports", _SUB, ""),
    "publish_session": (LAION_GLM, _SES, "publish"),
    "publish_subject": (LAION_GLM, _SUB, "publish"),
    "publish_repeats": (LAION_GLM, ("", "sub-{subject}_nc{nrep}rep"), "publish"),
    "publish_roi": (LAION_ATLASES, ("", "sub-{subject}_{laion_roi}"), "publish"),
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

"""The plan's base: construction, shared helpers, derivative folders, targets, resources."""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io import rule_logs
from echoprep.io.bids import Dataset, Run
from echoprep.io.bids_events import EventsRules
from echoprep.io.paths import run_prefix
from echoprep.options import options_json
from echoprep.variants import Variant

if TYPE_CHECKING:
    from echoprep.plan import Plan

Files = dict[str, str]


class PlanError(ValueError):
    """The config asks for something the dataset cannot give (message says what and the fix)."""


def _strip_label(label: object, prefix: str) -> str:
    text = str(label)
    return text[len(prefix) + 1 :] if text.startswith(f"{prefix}-") else text


def _events_rows(path: Path | None) -> int:
    """Rows (trials) of an events file (0 for None)."""
    if not path:
        return 0
    st = path.stat()
    return _count_rows(path, st.st_size, st.st_mtime_ns)


@functools.cache
def _count_rows(path: Path, size: int, mtime_ns: int) -> int:
    """Rows of a table below its header, counted once per file version and process (every
    session-level rule's resources ask for its runs' counts)."""
    with open(path) as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


def _words(args: Iterable[Any]) -> str:
    """Shell words: each argument quoted for the shell (``shlex.quote``), joined by spaces.
    The one quoting helper of every command-line argument the plan builds; a rule's own
    ``{input.x}``, ``{output.x}`` and ``{log}`` are quoted by Snakemake's ``:q``."""
    return " ".join(shlex.quote(str(a)) for a in args)


def discovery_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`echoprep.io.bids.discover` that a validated config
    decides: the selection (subjects, sessions, task, runs left out), what spatial
    preprocessing needs (a T1w per subject in T1w space, the fieldmaps) and how the GLM will
    read the events (checked at plan time with the same rules)."""
    spatial = config["spatial"]
    glm = config["glm"]
    return {
        "participant_label": config["participant_label"] or None,
        "exclude": config["exclude"],
        "sessions": config["sessions"] or None,
        "task": config["task"],
        "exclude_runs": config["exclude_runs"],
        "require_t1w": spatial["enabled"] and spatial["output_space"] == "T1w",
        "use_fieldmaps": spatial["enabled"]
        and spatial["fieldmap"]
        and spatial["sdc"] not in ("none", "phase-framewise"),
        "prefer_fieldmap": "epi" if spatial["sdc"] == "pepolar" else "gre",
        "fieldmap_time": spatial["fieldmap_time"],
        # the reference images (docs/registration.md): SBRefs and T2w looked for only if used
        "sbref_echo": spatial["reference_echo"]
        if spatial["enabled"] and spatial["motion_reference"] != "bold"
        else None,
        "require_sbref": spatial["enabled"] and spatial["motion_reference"] == "sbref",
        "registration_target": spatial["registration_target"]
        if spatial["enabled"] and spatial["output_space"] == "T1w"
        else "T1w",
        "events_rules": EventsRules(
            label_column=glm["label_column"],
            blank_trial_types=tuple(glm["blank_trial_types"]),
            onset_tolerance=glm["onset_tolerance"],
            dropped_volumes=int(config["nordic"]["noise_volumes"]),
            series_tr=spatial["tr_out"]
            if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]
            else None,
        ),
    }


class BasePlan:
    """Jobs, targets and inputs of one workflow invocation.

    Parameters
    ----------
    config
        The validated config (:func:`echoprep.config.validate_config`: every default filled).
    dataset
        The discovered dataset (:func:`echoprep.io.bids.discover`).
    """

    def __init__(self, config: Mapping[str, Any], dataset: Dataset) -> None:
        self.config = config
        self.dataset = dataset
        self.out = Path(config["output_dir"])
        self.runs: dict[str, Run] = {run_prefix(r.entities): r for r in dataset.runs}
        # memos of _run_key (by the id of a run of self.dataset, which outlives the plan's use),
        # _files and _file
        self._run_keys: dict[int, tuple[str, str]] = {}
        self._files_memo: dict[tuple[Any, ...], Files] = {}
        self._file_memo: dict[tuple[Any, ...], str] = {}
        #: NORDIC variants: "raw" = NORDIC off, "nordic" = on (config nordic.enabled).
        self.nordic_variants = ["raw", "nordic"] if config["nordic"]["enabled"] else ["raw"]

    # -----------------------------------------------------------------------------------------
    # basics

    def run_of(self, wc: Any) -> Run:
        """The discovered run a job's wildcards refer to."""
        return self.runs[wc.run_prefix]

    def _run_key(self, run: Run | None) -> tuple[str, str]:
        """``(run_dir, run_prefix)`` of a run (built once per run), or the wildcard pattern."""
        if run is None:
            return reg.run_key(None)
        key = self._run_keys.get(id(run))
        if key is None:
            key = self._run_keys[id(run)] = reg.run_key(run.entities)
        return key

    def task(self) -> str:
        return self.dataset.runs[0].task

    def space(self) -> str | None:
        """Space label of the resampled echoes and everything fitted on them: "T1w", or None
        (spatial preprocessing off, or native grid)."""
        spatial = self.config["spatial"]
        return "T1w" if spatial["enabled"] and spatial["output_space"] == "T1w" else None

    def _files(
        self, stage: str, key: tuple[str, str], variant: str | None = None, **values: Any
    ) -> Files:
        """Every output of a stage (variant) at ``key``, with sidecars (built once per
        argument set: input functions ask for the same files many times)."""
        memo = (stage, key, variant, tuple(sorted(values.items())))
        found = self._files_memo.get(memo)
        if found is None:
            found = self._files_memo[memo] = self._paths(
                reg.stage_outputs(stage, variant), key, **values
            )
        return dict(found)

    def _paths(
        self, outputs: Mapping[str, reg.Output], key: tuple[str, str], **values: Any
    ) -> Files:
        """``name -> path`` of the given outputs at ``key`` (in this config's space), plus
        ``name_json -> sidecar`` for those that have one."""
        paths = {n: o.path(self.out, key, space=self.space(), **values) for n, o in outputs.items()}
        return reg.with_sidecars(paths, outputs)

    def _file(self, output: str, key: tuple[str, str], **values: Any) -> str:
        memo = (output, key, tuple(sorted(values.items())))
        found = self._file_memo.get(memo)
        if found is None:
            found = str(reg.get(output).path(self.out, key, space=self.space(), **values))
            self._file_memo[memo] = found
        return found

    def log(self, rule: str) -> str:
        """A rule's log (``work_dir/logs/...``, named by :mod:`echoprep.io.rule_logs`)."""
        return str(rule_logs.log_path(self.config["work_dir"], rule))

    def benchmark(self, rule: str) -> str:
        """A rule's Snakemake benchmark record (``work_dir/benchmarks/...``)."""
        return str(rule_logs.benchmark_path(self.config["work_dir"], rule))

    def options(self, section: str, **overrides: Any) -> str:
        """A config section (with overrides) as the JSON a rule passes to ``--options-json``.
        The GLM's condition column is the one discovery chose for the whole dataset when the
        config leaves it open (``glm.label_column: null``)."""
        values = {**self.config[section], **overrides}
        if section == "glm" and values.get("label_column") is None:
            values["label_column"] = self.dataset.label_column
        return options_json(values)

    def config_json(self) -> str:
        """The validated config as sorted JSON (recorded in ``dataset_description.json``)."""
        return json.dumps(self.config, sort_keys=True)

    def config_file(self) -> str:
        """``<work_dir>/config/config.json``: :meth:`config_json` as a file (rule
        ``config_snapshot``, rewritten when the config changes). Description and report jobs
        read it (``--config-file``): the JSON stays off their command lines, ``ps`` and logs."""
        return str(Path(self.config["work_dir"]) / "config" / "config.json")

    def source(self) -> str:
        """The raw dataset, as an absolute path."""
        return str(Path(self.config["bids_dir"]).resolve())

    def _plan(self) -> Plan:
        """This object as the whole :class:`echoprep.plan.Plan`, the one class built on
        BasePlan: folders, targets and resources span every level."""
        return cast("Plan", self)

    # -----------------------------------------------------------------------------------------
    # derivative folders

    def description(self, folder: str = "{folder}") -> str:
        """A derivative folder's ``dataset_description.json``."""
        return str(self.out / folder / "dataset_description.json")

    def folder_pattern(self) -> str:
        """Wildcard constraint of the ``dataset_description`` rule's ``folder``."""
        return "|".join(spec.pattern().pattern for spec in reg.FOLDERS.values())

    def described_folders(self) -> list[str]:
        """The derivative folders this config writes (each gets a dataset description)."""
        plan = self._plan()
        name = reg.folder_name
        folders = []
        if "nordic" in self.nordic_variants:
            folders.append(name("nordic"))
        folders += [name("combine", nordic=n) for n in self.nordic_variants]
        if self.config["spatial"]["enabled"]:
            folders.append(name("spatial"))
            folders += [name("preproc", nordic=n) for n in self.nordic_variants]
            if self.space():
                folders.append(name("anatomy"))
        fitted = plan.glm_variant_sessions()
        if fitted:
            folders.append(name("analysis-mask"))
            for variant in map(Variant, fitted):
                folders.append(name("glm", nordic=variant.nordic, combine=variant.combine))
        if plan.rois_enabled():
            folders.append(name("rois"))
        if self.config["report"]["enabled"]:
            folders.append(name("report"))
            if plan.rois_enabled() and plan.comparison_entries():
                folders.append(name("comparison"))
        folders += plan.publish_folders()
        return folders

    # -----------------------------------------------------------------------------------------
    # everything

    def targets(self) -> list[str]:
        """Every file ``rule all`` asks for: each stage's targets and the dataset description
        of every derivative folder written."""
        plan = self._plan()
        found = [self.description(f) for f in self.described_folders()]
        for part in (
            plan.combine_targets(),
            plan.spatial_targets(),
            plan.glm_targets(),
            plan.roi_targets(),
            plan.report_targets(),
            plan.publish_targets(),
        ):
            found.extend(part)
        return list(dict.fromkeys(found))

    # -----------------------------------------------------------------------------------------
    # resources (models in echoprep.resources)

    def sdc_method(self, run: Run) -> str:
        """The distortion correction of a run under ``spatial.sdc`` (docs/distortion.md):
        ``"fieldmap"`` (GRE phasediff or Hz map), ``"pepolar"`` (reversed phase-encoding
        pair), ``"phase-framewise"`` (a field per volume from the multi-echo phase) or
        ``"none"`` (off, or the run lacks what the method needs)."""
        spatial = self.config["spatial"]
        choice = spatial["sdc"]
        if not spatial["enabled"] or choice == "none":
            return "none"
        if choice == "phase-framewise":
            with_phase = [e for e in run.echoes if e.phase is not None]
            usable = len(with_phase) >= 2 and run.pe_direction and run.total_readout_time
            return "phase-framewise" if usable else "none"
        if run.fieldmap is None or not spatial["fieldmap"]:
            return "none"
        kind = "pepolar" if run.fieldmap.kind == "epi" else "fieldmap"
        return kind if choice in ("auto", kind) else "none"

    def _run_size(self, run: Run) -> res.RunSize:
        nvox = run.shape[0] * run.shape[1] * run.shape[2]
        return res.RunSize(voxels=nvox, volumes=run.n_volumes, echoes=len(run.echoes))

    @staticmethod
    def _runs_size(runs: list[Run]) -> res.SessionSize:
        nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
        return res.SessionSize(
            voxels=nvox,
            volumes=tuple(r.n_volumes for r in runs),
            trials=sum(_events_rows(r.events) for r in runs if r.events),
        )

    def _job_run(self, wc: Any) -> Run:
        """The run a run-level step of a job works on: its run, or for a job of a subject
        (``spatial_reference``) the subject's reference run."""
        if getattr(wc, "run_prefix", None):
            return self.run_of(wc)
        return self._plan().reference_run(wc.subject)

    def _memory(self, rule: str, wc: Any, attempt: int) -> int:
        plan = self._plan()
        if rule in res.FIXED_MB:
            return res.fixed_mb(rule, attempt)
        if rule == "nordic":
            return res.nordic_mb(self._run_size(self._job_run(wc)), attempt)
        if rule in res.RUN_COPIES:
            return res.combine_mb(rule, self._run_size(self._job_run(wc)), attempt)
        if rule == "spatial_run" and self.sdc_method(self._job_run(wc)) == "phase-framewise":
            return res.framewise_mb(self._run_size(self._job_run(wc)), attempt)
        if rule in ("spatial_run", "spatial_resample"):
            return res.spatial_mb(self._run_size(self._job_run(wc)), attempt)
        if rule == "glm_analysis_mask":
            size = self._runs_size(plan.session_runs(wc))
            return res.analysis_mask_mb(
                size, len(plan.session_variants(*plan.session_of(wc))), attempt
            )
        if rule in ("glm", "glm_reference", "glm_heldout"):
            size = self._runs_size(plan.session_runs(wc))
            return res.glm_mb(size, self.config["glm"]["chunklen"], attempt)
        if rule == "noiseceiling_session":
            return res.betas_mb(self._runs_size(plan.session_runs(wc)), 3, 500, attempt)
        if rule == "noiseceiling_subject":
            sub = plan.subject_of(wc)
            return res.betas_mb(self._runs_size(self.dataset.subject_runs(sub)), 3, 500, attempt)
        if rule == "roi_visual":
            _, _, session = plan.visual_source(wc.subject)
            runs = self.dataset.runs_of(wc.subject, session)
            return res.betas_mb(self._runs_size(runs), 4.5, 500, attempt)
        if rule == "comparison_subject":
            ses = plan.report_session(wc.subject)
            runs = self.dataset.runs_of(wc.subject, ses)
            # one variant's betas and held-out image means (4 per image) at a time
            return res.betas_mb(self._runs_size(runs), 5, 1000, attempt)
        if rule == "nordic_diagnostics":
            sessions = {ses for ses, _ in plan.diagnostics_pairs(wc.subject)}
            runs = [r for ses in sessions for r in self.dataset.runs_of(wc.subject, ses)]
            return res.diagnostics_mb(self._runs_size(runs) if runs else None, attempt)
        if rule == "subject_report":
            runs = self.dataset.runs_of(wc.subject, plan.report_session(wc.subject))
            return res.report_mb(self._run_size(runs[0]), attempt)
        raise KeyError(f"no memory model for rule {rule!r} (echoprep.resources)")

    def mem_mb(self, rule: str) -> Callable[[Any, int], int]:
        """The ``mem_mb`` resource of a rule: a function of (wildcards, attempt); for a job that
        runs several steps one after another (a per-run chain, :mod:`echoprep.plan.chains`),
        the most of one step."""
        steps = self._plan().rule_steps(rule)

        def mem(wc: Any, attempt: int) -> int:
            return max(self._memory(step, wc, attempt) for step in steps)

        return mem

    def runtime(self, rule: str) -> Callable[[Any, int], int]:
        """The ``runtime`` resource (min) of a rule: a function of (wildcards, attempt); the
        minutes measured at LAION-fMRI size, scaled up for larger data (never down), times
        the run's echoes for the rules whose jobs treat them one after another
        (:data:`echoprep.resources.ECHO_RULES`); for a job that runs several steps one after
        another (a per-run chain), the sum over its steps."""
        steps = self._plan().rule_steps(rule)

        def minutes(wc: Any, attempt: int) -> int:
            total = 0
            for step in steps:
                echoes = len(self._job_run(wc).echoes) if step in res.ECHO_RULES else 1
                total += res.minutes(step, attempt, self._work_scale(step, wc), echoes)
            return total

        return minutes

    def _work_scale(self, rule: str, wc: Any) -> float:
        """Voxel-volumes a job reads relative to the LAION-fMRI run or session of
        :mod:`echoprep.resources` (1 for rules whose work does not grow with the data)."""
        plan = self._plan()
        if rule in res.RUN_RULES:
            size = self._run_size(self._job_run(wc))
            return size.voxels * size.volumes / res.LAION_RUN.voxel_volumes
        if rule in res.SESSION_RULES:
            ses = self._runs_size(plan.session_runs(wc))
            return ses.voxels * ses.total_volumes / res.LAION_SESSION_VOXEL_VOLUMES
        if rule == "noiseceiling_subject":
            sub = plan.subject_of(wc)
            ses = self._runs_size(self.dataset.subject_runs(sub))
            return ses.voxels * ses.total_volumes / res.LAION_SESSION_VOXEL_VOLUMES
        return 1.0

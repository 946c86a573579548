"""One spec per rule: everything a rule file takes from the plan, in one place.

A rule file (``workflow/rules/*.smk``) asks the plan for its rule's :class:`RuleSpec` once
(``PLAN.spec("glm")``) and fills its ``input:``, ``output:``, ``params:``, ``log:``,
``benchmark:``, ``resources:``, ``group:`` and ``wildcard_constraints:`` from it; the rule file
itself keeps what says *how* the job runs: its shell command, threads, conda env and message.
(Snakemake evaluates a ``shell:`` expression again when the job runs, after every rule file
has been read: a shell line must not read the rule file's ``_spec`` variable, which by then
holds the last rule's spec.)
Each rule's spec is one ``_spec_<rule>`` method below, which reads like the rule's table of
files and arguments; the level classes (``runs.py``, ``chains.py``, ``sessions.py``,
``subjects.py``, ``publish.py``) hold the private input functions and path helpers these call.
Adding a rule means one method here (``docs/architecture.md``, "Adding a stage").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from echoprep import resources as res
from echoprep.io.bids import Dataset
from echoprep.plan._base import Files, PlanError
from echoprep.plan.chains import CHAIN_RULES
from echoprep.plan.publish import PublishPlan

#: A run's file stem (run entities only): keeps subject-level names such as
#: ``sub-01_space-T1w_boldref`` from matching the per-run patterns of the spatial rules.
RUN_STEM_PATTERN = (
    r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+"
    r"(_(acq|ce|rec|dir|run)-[A-Za-z0-9]+)*"
)


def _no_groups() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class RuleHooks:
    """What the plan needs from the running Snakemake to fill a spec.

    Attributes
    ----------
    temp
        Snakemake's ``temp`` (marks an output removed once its consumers ran); None marks
        nothing (unit tests).
    groups
        Returns the cluster profile's rule -> group table when called (Snakemake's
        ``workflow.group_settings.overwrite_groups``, not yet set while rules are parsed).
    """

    temp: Callable[[str], Any] | None = None
    groups: Callable[[], Mapping[str, str]] = _no_groups


@dataclass(frozen=True)
class RuleSpec:
    """What one rule takes from the plan.

    Attributes
    ----------
    name
        The rule's name: the key it was asked for, or for a per-run chain of runs with a
        given echo count its family member (``nordic_4echoes`` when echo counts differ).
    input
        An input function (wildcards -> ``{name: path or paths}``; the rule file passes it
        through ``unpack``) or a ``{name: path, pattern or input function}`` mapping
        (passed as keywords).
    output
        ``{name: pattern}`` (sidecars included, keys ``<name>_json``).
    params
        ``{name: value or function}`` (functions of ``wildcards``, ``input``, ``output``).
    log
        The log (``work_dir/logs/...``, :mod:`echoprep.io.rule_logs`).
    benchmark
        Snakemake's benchmark record, or None (local rules keep none).
    resources
        ``mem_mb`` and ``runtime`` (functions of wildcards and attempt); empty for rules that
        run inside the Snakemake process.
    group
        The job group under a cluster profile (wildcards -> name or None), or None (no
        ``group:``).
    wildcard_constraints
        The rule's own constraints (beside the workflow's in ``common.smk``).
    conda
        The env file of a rule whose env depends on the config (a chain), else None (the
        rule file names its env).
    message
        The console line of a rule whose line depends on the config (a chain), else None.
    """

    name: str
    input: Callable[[Any], dict[str, Any]] | Mapping[str, Any]
    output: Mapping[str, Any]
    params: Mapping[str, Any]
    log: str
    benchmark: str | None
    resources: Mapping[str, Callable[[Any, int], int]]
    group: Callable[[Any], str | None] | None = None
    wildcard_constraints: Mapping[str, str] = field(default_factory=dict)
    conda: str | None = None
    message: str | None = None
    threads: int = 1


class SpecPlan(PublishPlan):
    """The rule specs of :class:`echoprep.plan.Plan` (module docstring)."""

    def __init__(
        self, config: Mapping[str, Any], dataset: Dataset, hooks: RuleHooks | None = None
    ) -> None:
        super().__init__(config, dataset)
        self.hooks = hooks or RuleHooks()

    def spec(self, rule: str, echoes: int | None = None) -> RuleSpec:
        """The spec of ``rule``; for a per-run chain (``nordic``, ``spatial_resample``) that of
        its rule for runs with ``echoes`` echoes (:meth:`echo_counts`).

        Raises
        ------
        KeyError
            No rule of that name.
        PlanError
            A per-run chain asked for without its echo count.
        """
        builder = self.SPECS.get(rule)
        if builder is None:
            raise KeyError(f"no rule spec {rule!r} (echoprep.plan.specs.SpecPlan.SPECS)")
        if rule in CHAIN_RULES.values():
            if echoes is None:
                raise PlanError(f"rule {rule}: expected an echo count (PLAN.echo_counts())")
            return builder(self, echoes)
        return builder(self)

    def _rule(
        self,
        rule: str,
        input: Callable[[Any], dict[str, Any]] | Mapping[str, Any],
        output: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        *,
        local: bool = False,
        grouped: str | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> RuleSpec:
        """A spec with the log, benchmark (none for a ``local`` rule), resources and threads
        of ``rule`` (the threads also as ``params.threads``, what a command passes to
        ``--threads``: fixed per rule, not scaled down to ``--cores``); ``grouped``: the rule
        whose profile group the jobs take."""
        group = None
        if grouped is not None:
            groups = self.hooks.groups

            def group(wc: Any) -> str | None:
                return groups().get(grouped)

        threads = res.THREADS.get(rule, 1)
        return RuleSpec(
            name=name or rule,
            input=input,
            output=output,
            params={**(params or {}), "threads": threads},
            threads=threads,
            log=self.log(rule),
            benchmark=None if local else self.benchmark(rule),
            resources={"mem_mb": self.mem_mb(rule), "runtime": self.runtime(rule)},
            group=group,
            **fields,
        )

    def _seed(self) -> int:
        return int(self.config["seed"])

    # -----------------------------------------------------------------------------------------
    # describe.smk

    def _spec_config_snapshot(self) -> RuleSpec:
        return RuleSpec(
            name="config_snapshot",
            input={},
            output={"config": self.config_file()},
            params={"config": self.config_json()},
            log=self.log("config_snapshot"),
            benchmark=None,
            resources={},
        )

    def _spec_dataset_description(self) -> RuleSpec:
        return RuleSpec(
            name="dataset_description",
            input={"config": self.config_file()},
            output={"description": self.description()},
            params={"source": self.source(), "folders": " ".join(self.described_folders())},
            log=self.log("dataset_description"),
            benchmark=None,
            resources={},
        )

    # -----------------------------------------------------------------------------------------
    # per-run chains (nordic.smk, spatial.smk) and the steps with rules of their own

    def _chain_spec(self, rule: str, side: str, echoes: int) -> RuleSpec:
        return self._rule(
            rule,
            self._chain_inputs(side),
            self._chain_outputs(side, echoes, self.hooks.temp),
            self._chain_params(side),
            grouped=rule,
            name=self._echo_rule(rule, echoes),
            wildcard_constraints=self._echo_constraints(echoes, RUN_STEM_PATTERN),
            conda=self._chain_env(side),
            message=self._chain_message(side, echoes),
        )

    def _spec_nordic(self, echoes: int) -> RuleSpec:
        spec = self._chain_spec("nordic", "nordic", echoes)
        if self.config["nordic"]["device"] != "cuda":
            return spec
        # the patch algebra on a GPU (docs/nordic.md, "GPU"): the SLURM plugin's --gpus=1
        return replace(spec, resources={**spec.resources, "gpu": 1})

    def _spec_spatial_resample(self, echoes: int) -> RuleSpec:
        return self._chain_spec("spatial_resample", "raw", echoes)

    def _spec_spatial_run(self) -> RuleSpec:
        # only when no chain hosts the geometry (spatial_host is None); its jobs go with the
        # run's resampling job under a profile that groups it
        return self._rule(
            "spatial_run",
            self._geometry_step_inputs,
            self._geometry_step_outputs(),
            self._geometry_step_params(),
            grouped="spatial_resample",
            wildcard_constraints={"run_prefix": RUN_STEM_PATTERN},
        )

    def _combine_step_spec(self, rule: str, combine: str) -> RuleSpec:
        return self._rule(
            rule,
            {"echoes": self._echo_inputs},
            self._combine_step_outputs(combine),
            self._combine_rule_params(combine),
            wildcard_constraints={"nordic": "|".join(self.separate_combine_sides(combine))},
        )

    def _spec_single_echo(self) -> RuleSpec:
        return self._combine_step_spec("single_echo", "single")

    def _spec_optcom(self) -> RuleSpec:
        return self._combine_step_spec("optcom", "optcom")

    # -----------------------------------------------------------------------------------------
    # anatomy.smk, spatial.smk

    def _spec_anatomy(self) -> RuleSpec:
        return self._rule(
            "anatomy",
            self._anat_inputs,
            self.anat_outputs(),
            {
                "options": self.options("anatomy"),
                "seed": self._seed(),
                "out": self._anat_out_args,
                "args": self._anat_params,
            },
        )

    def _spec_spatial_reference(self) -> RuleSpec:
        return self._rule(
            "spatial_reference",
            self._spatial_reference_inputs,
            self.spatial_reference_outputs(),
            {"args": self._spatial_reference_params, "options": self.options("spatial")},
            grouped="spatial_reference",
        )

    def _spec_confounds(self) -> RuleSpec:
        # a local copy written inside the Snakemake process: no benchmark, no resources
        spatial = self.spatial_run_outputs()
        return RuleSpec(
            name="confounds",
            input={"confounds": spatial["confounds"], "sidecar": spatial["confounds_json"]},
            output=self.confounds_outputs(),
            params={},
            log=self.log("confounds"),
            benchmark=None,
            resources={},
            wildcard_constraints={"run_prefix": RUN_STEM_PATTERN},
        )

    def _spec_spatial_subject(self) -> RuleSpec:
        return self._rule(
            "spatial_subject",
            self._spatial_subject_inputs,
            self.spatial_subject_outputs(),
            {
                "options": self.options("spatial"),
                "seed": self._seed(),
                "args": self._spatial_subject_params,
            },
        )

    # -----------------------------------------------------------------------------------------
    # combine.smk: tedana's ICA (the NORDIC runs' rule is the same, ``use rule``)

    def _spec_tedana(self) -> RuleSpec:
        return self._rule(
            "tedana",
            self._tedana_inputs,
            self.combine_outputs("denoised"),
            {
                "args": self._combine_params,
                "options": self._tedana_options,
                "nordic": self._tedana_params,
                "seed": self._seed(),
                "work": lambda wc: self.combine_work_dir(wc.nordic),
            },
            wildcard_constraints={"nordic": "raw"},
        )

    # -----------------------------------------------------------------------------------------
    # glm.smk

    def _spec_glm_analysis_mask(self) -> RuleSpec:
        return self._rule(
            "glm_analysis_mask",
            self._analysis_mask_inputs,
            self._analysis_mask_outputs(),
            {"args": self._analysis_mask_params, "options": self.options("glm")},
        )

    def _glm_fit_spec(self, spec: RuleSpec) -> RuleSpec:
        """A fitting rule's spec (glm, glm_reference, glm_heldout), asking for one GPU when
        our engine runs its heavy steps there (``glm.device: cuda``; docs/glm.md §14, "GPU"):
        the SLURM plugin's --gpus=1. Its conda env is glm.smk's (:func:`echoprep.preflight
        .glm_env`)."""
        glm = self.config["glm"]
        if glm["device"] != "cuda" or glm["engine"] != "echoprep":
            return spec
        return replace(spec, resources={**spec.resources, "gpu": 1})

    def _spec_glm(self) -> RuleSpec:
        return self._glm_fit_spec(
            self._rule(
                "glm",
                self._glm_inputs,
                self.glm_outputs(),
                {
                    "session": self._glm_params,
                    "options": self.options("glm"),
                    "seed": self._seed(),
                    "out": self._glm_out_args,
                },
            )
        )

    def _spec_glm_reference(self) -> RuleSpec:
        return self._glm_fit_spec(
            self._rule(
                "glm_reference",
                self._glm_inputs,
                self.reference_outputs(),
                {"session": self._glm_params, "options": self.options("glm"), "seed": self._seed()},
            )
        )

    def _spec_glm_heldout(self) -> RuleSpec:
        return self._glm_fit_spec(
            self._rule(
                "glm_heldout",
                self._glm_inputs,
                self.heldout_outputs(),
                {
                    "session": self._heldout_params,
                    "options": self.options("glm"),
                    "seed": self._seed(),
                },
            )
        )

    def _spec_noiseceiling_session(self) -> RuleSpec:
        glm = self.glm_outputs()
        return self._rule(
            "noiseceiling_session",
            {k: glm[k] for k in ("betas", "trials", "mask")},
            self.nc_session_outputs(),
            {"space": self._space_args},
        )

    def _spec_noiseceiling_subject(self) -> RuleSpec:
        return self._rule(
            "noiseceiling_subject",
            self._nc_subject_inputs,
            self.nc_subject_outputs(),
            {"space": self._space_args},
        )

    def _spec_noiseceiling_repeats(self) -> RuleSpec:
        return self._rule(
            "noiseceiling_repeats",
            {"ncsnr": self.nc_subject_outputs()["ncsnr"]},
            self.nc_repeats_output(),
            {"space": self._space_args},
            local=True,
        )

    # -----------------------------------------------------------------------------------------
    # rois.smk

    def _spec_roi_visual(self) -> RuleSpec:
        return self._rule(
            "roi_visual",
            self._visual_roi_inputs,
            self.roi_mask_outputs(visual=True),
            {"options": self.options("rois"), "variant": self._visual_roi_variant},
        )

    def _spec_roi_mask(self) -> RuleSpec:
        return self._rule(
            "roi_mask",
            self._user_roi_inputs,
            self.roi_mask_outputs(),
            {"args": self._user_roi_params},
            # the visual ROI's label is reserved (roi_visual writes it)
            wildcard_constraints={
                "roi_label": r"(?!visuallyResponsive(?![A-Za-z0-9]))[A-Za-z0-9]+"
            },
        )

    def _spec_roi_table(self) -> RuleSpec:
        return self._rule(
            "roi_table",
            self._roi_table_inputs,
            self.roi_table_path(),
            {"variant": lambda wc: f"{wc.nordic}-{wc.combine}"},
            local=True,
        )

    # -----------------------------------------------------------------------------------------
    # report.smk

    def _spec_comparison_subject(self) -> RuleSpec:
        return self._rule(
            "comparison_subject",
            self._comparison_subject_inputs,
            self.comparison_subject_paths(),
            {
                "entries": self._comparison_subject_args,
                "options": self.options("comparison"),
                "seed": self._seed(),
            },
        )

    def _spec_comparison(self) -> RuleSpec:
        return self._rule(
            "comparison",
            self._comparison_inputs,
            self.comparison_paths(),
            {"options": self.options("comparison")},
            local=True,
        )

    def _spec_nordic_diagnostics(self) -> RuleSpec:
        return self._rule(
            "nordic_diagnostics",
            self._diagnostics_inputs,
            self.diagnostics_outputs(),
            {"args": self._diagnostics_args},
        )

    def _spec_subject_report(self) -> RuleSpec:
        config = self.config_file()

        def inputs(wc: Any) -> dict[str, Any]:
            return {**self._report_inputs(wc), "config": config}

        return self._rule(
            "subject_report",
            inputs,
            {"html": self.report_path()},
            {"args": self._report_args, "options": self.options("report")},
        )

    # -----------------------------------------------------------------------------------------
    # publish.smk (the LAION-fMRI layout): one command, four job levels

    def _publish_spec(
        self, rule: str, inputs: Callable[[Any], Files], output: Files, **fields: Any
    ) -> RuleSpec:
        params = {"args": self._publish_args, "options": self.options("publish")}
        return self._rule(rule, inputs, output, params, local=True, **fields)

    def _spec_publish_session(self) -> RuleSpec:
        return self._publish_spec(
            "publish_session", self._publish_session_inputs, self.publish_session_outputs()
        )

    def _spec_publish_subject(self) -> RuleSpec:
        return self._publish_spec(
            "publish_subject", self._publish_subject_inputs, self.publish_subject_outputs()
        )

    def _spec_publish_repeats(self) -> RuleSpec:
        return self._publish_spec(
            "publish_repeats", self._publish_repeats_inputs, self.publish_repeats_output()
        )

    def _spec_publish_roi(self) -> RuleSpec:
        return self._publish_spec(
            "publish_roi",
            self._publish_roi_inputs,
            self.publish_roi_output(),
            wildcard_constraints={"laion_roi": r"[A-Za-z0-9]+"},
        )

    #: Rule -> the method that builds its spec (a chain's takes the echo count).
    SPECS: ClassVar[dict[str, Callable[..., RuleSpec]]] = {
        "config_snapshot": _spec_config_snapshot,
        "dataset_description": _spec_dataset_description,
        "nordic": _spec_nordic,
        "spatial_resample": _spec_spatial_resample,
        "spatial_run": _spec_spatial_run,
        "single_echo": _spec_single_echo,
        "optcom": _spec_optcom,
        "anatomy": _spec_anatomy,
        "spatial_reference": _spec_spatial_reference,
        "spatial_subject": _spec_spatial_subject,
        "confounds": _spec_confounds,
        "tedana": _spec_tedana,
        "glm_analysis_mask": _spec_glm_analysis_mask,
        "glm": _spec_glm,
        "glm_reference": _spec_glm_reference,
        "glm_heldout": _spec_glm_heldout,
        "noiseceiling_session": _spec_noiseceiling_session,
        "noiseceiling_subject": _spec_noiseceiling_subject,
        "noiseceiling_repeats": _spec_noiseceiling_repeats,
        "roi_visual": _spec_roi_visual,
        "roi_mask": _spec_roi_mask,
        "roi_table": _spec_roi_table,
        "comparison_subject": _spec_comparison_subject,
        "comparison": _spec_comparison,
        "nordic_diagnostics": _spec_nordic_diagnostics,
        "subject_report": _spec_subject_report,
        "publish_session": _spec_publish_session,
        "publish_subject": _spec_publish_subject,
        "publish_repeats": _spec_publish_repeats,
        "publish_roi": _spec_publish_roi,
    }


__all__ = ["RUN_STEM_PATTERN", "RuleHooks", "RuleSpec", "SpecPlan"]

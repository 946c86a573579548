"""The GLM per session (:mod:`echoprep.stages.glm`): the analysis mask
(``analysis_mask``), the single-trial fit (``glm``), the type-B betas the visual ROI's
run-level test reads (``glm_reference``) and the comparison's held-out fits
(``glm_heldout``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SESSION_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles
from echoprep.variants import Variant

_GLM = folder_name("glm")


def fit_env(config: Mapping[str, Any]) -> str:
    """The conda env (under ``envs/``) of the fitting rules for ``glm.engine`` and
    ``glm.device``: the engine's own (``echoprep``, ``glmsingle``), or ``gpu`` (tedana's env
    plus torch) for our engine on a GPU."""
    glm = config.get("glm") or {}
    engine = str(glm.get("engine") or "echoprep")
    if engine == "echoprep" and glm.get("device") == "cuda":
        return "gpu"
    return engine


def fit_mb(family: Any, wc: Any, attempt: int) -> int:
    """Memory of a session's fit (:func:`echoprep.resources.glm_mb`)."""
    size = family.ctx.runs_size(family.ctx.session_runs(wc))
    return res.glm_mb(size, family.config["glm"]["chunklen"], attempt)


def mask_mb(family: Any, wc: Any, attempt: int) -> int:
    """Memory of a session's analysis mask (:func:`echoprep.resources.analysis_mask_mb`)."""
    size = family.ctx.runs_size(family.ctx.session_runs(wc))
    variants = family.fitted.session_variants(*family.ctx.session_of(wc))
    return res.analysis_mask_mb(size, len(variants), attempt)


ANALYSIS_MASK = RuleDef(
    name="analysis_mask",
    doc=(
        "A session's analysis mask: brain voxels with valid data in every run of every variant "
        "fitted there"
    ),
    level="session",
    log=(folder_name("analysis-mask"), SESSION_KEY, "mask"),
    command=(
        "python -m echoprep analysis-mask {params.args} --options-json {params.options:q}"
        " --out mask={output.mask:q}"
    ),
    message="GLM analysis mask {wildcards.ses_prefix}",
    memory=mask_mb,
    minutes=20,
    scale="session",
)
#: The session's files and labels, in the three fitting rules' commands.
_SESSION = (
    " --bold {input.bold:q} --events {input.events:q} --run-labels {params.run_labels}"
    " {params.session} --mask {input.mask:q} {params.space}"
)
_FIT = "python -m echoprep glm" + _SESSION
GLM = RuleDef(
    name="glm",
    doc="GLMsingle single-trial betas (FITHRF_GLMDENOISE_RR) of one session and variant",
    level="session",
    log=(_GLM, SESSION_KEY, "glm"),
    command=(
        f"{_FIT} --options-json {{params.options:q}} --seed {{params.seed}}"
        " --threads {params.threads} --out {params.out}"
    ),
    message="GLMsingle {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=fit_mb,
    minutes=20,
    threads=2,
    scale="session",
)
GLM_REFERENCE = RuleDef(
    name="glm_reference",
    doc="Type-B betas (assumed HRF, least squares) of the visual ROI's source variant",
    level="session",
    log=(_GLM, SESSION_KEY, "typeb"),
    command=(
        f"{_FIT} --options-json {{params.options:q}} --seed {{params.seed}}"
        " --threads {params.threads} --stop-at typeb --out betas_typeb={output.betas_typeb:q}"
    ),
    message="GLM type-B betas {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=fit_mb,
    minutes=20,
    threads=2,
    scale="session",
)
GLM_HELDOUT = RuleDef(
    name="glm_heldout",
    doc="The comparison's held-out fits: each half of every split of a session's runs, per variant",
    level="session",
    log=(_GLM, SESSION_KEY, "heldout"),
    command=(
        "python -m echoprep glm-heldout" + _SESSION + " --splits {params.splits}"
        " --options-json {params.options:q} --seed {params.seed}"
        " --threads {params.threads} --out means={output.means:q} volumes={output.volumes:q}"
    ),
    message=(
        "GLMsingle held-out fits {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    ),
    memory=fit_mb,
    # every half of 2 splits: about two full fits
    minutes=40,
    threads=2,
    scale="session",
)


class GlmRules(Family):
    """The GLM rules, their files and the fitted sessions' targets (module docstring)."""

    RULES = (ANALYSIS_MASK, GLM, GLM_REFERENCE, GLM_HELDOUT)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        combine: CombineRules,
        spatial: SpatialRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.combine = combine
        self.spatial = spatial

    def folders(self) -> list[str]:
        """The analysis masks' folder and ``glmsingle-<variant>/`` of each fitted variant."""
        fitted = self.fitted.glm_variant_sessions()
        if not fitted:
            return []
        name = reg.folder_name
        variants = [Variant(v) for v in fitted]
        return [
            name("analysis-mask"),
            *(name("glm", nordic=v.nordic, combine=v.combine) for v in variants),
        ]

    # -----------------------------------------------------------------------------------------
    # rules

    def analysis_mask(self) -> RuleFiles:
        return RuleFiles(
            self._mask_inputs,
            self.ctx.files("analysis_mask", self.ctx.session_key(None, None)),
            {"args": self._mask_params, "options": self.ctx.options("glm")},
        )

    def _fit(self, output: Files, params: dict[str, Any]) -> RuleFiles:
        """A fitting rule's files, in the env of ``glm.engine`` (:func:`fit_env`), asking for
        one GPU when our engine runs its heavy steps there (``glm.device: cuda``; docs/glm.md
        §14, "GPU"): the SLURM plugin's --gpus=1."""
        session = {
            "run_labels": self._run_labels_param,
            "session": self._session_param,
            "space": words(["--space", self.ctx.space()]) if self.ctx.space() else "",
        }
        files = RuleFiles(
            self._fit_inputs,
            output,
            {**session, **params, "options": self.ctx.options("glm"), "seed": self.ctx.seed()},
            env=fit_env(self.config),
        )
        glm = self.config["glm"]
        if glm["device"] != "cuda" or glm["engine"] != "echoprep":
            return files
        return replace(files, resources={"gpu": 1})

    def glm(self) -> RuleFiles:
        return self._fit(self.outputs(), {"out": self._out_args})

    def glm_reference(self) -> RuleFiles:
        return self._fit(self.reference_outputs(), {})

    def glm_heldout(self) -> RuleFiles:
        splits = int(self.config["comparison"]["splits"])
        return self._fit(self.heldout_outputs(), {"splits": splits})

    # -----------------------------------------------------------------------------------------
    # outputs

    def outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """GLMsingle outputs (and sidecars) of one session, as patterns or for a session."""
        outs = reg.stage_outputs("glm")
        keys = [k for k in outs if k not in ("model", "betas_typeb")]
        if self.config["glm"]["hdf5"]:
            keys.append("model")
        key = self.ctx.session_key(subject, session)
        return self.ctx.paths({k: outs[k] for k in keys}, key, nordic=nordic, combine=combine)

    def reference_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The type-B betas (and sidecar) of a session, as patterns or for one: the visual
        ROI's run-level test reads those of its source variant."""
        outs = {"betas_typeb": reg.get("glm.betas_typeb")}
        key = self.ctx.session_key(subject, session)
        return self.ctx.paths(outs, key, nordic=nordic, combine=combine)

    def heldout_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The held-out image means (each half of the runs fitted apart) and their volume
        table, with sidecars, as patterns or for a session."""
        key = self.ctx.session_key(subject, session)
        return self.ctx.files("glm_heldout", key, nordic=nordic, combine=combine)

    def mask_path(self, subject: str | None = None, session: str | None = None) -> str:
        """The analysis mask of a session (brain voxels with valid data in every run of every
        variant fitted there), as a pattern or for a session. Per session, not per subject: a
        new session leaves the masks (and fits) of the others alone."""
        return self.ctx.file("analysis_mask.mask", self.ctx.session_key(subject, session))

    def _out_args(self, wc: Any, output: Any) -> str:
        """``KEY=PATH`` words of the glm rule's ``--out`` (no sidecars: the stage writes them)."""
        return words(f"{k}={v}" for k, v in output.items() if not k.endswith("_json"))

    # -----------------------------------------------------------------------------------------
    # inputs and arguments

    def _fit_inputs(self, wc: Any) -> dict[str, Any]:
        """The session's preprocessed BOLD (one per run), events and its analysis mask."""
        runs = self.ctx.session_runs(wc)
        sub, ses = self.ctx.session_of(wc)
        return {
            "bold": [self.combine.outputs(wc.combine, r, wc.nordic)["bold"] for r in runs],
            "events": [str(r.events) for r in runs],
            "mask": self.mask_path(sub, ses),
        }

    def _mask_inputs(self, wc: Any) -> dict[str, Any]:
        """Every fitted variant's echo-handling output of every run of the session, and the
        brain mask when spatial preprocessing provides one."""
        sub, ses = self.ctx.session_of(wc)
        runs = self.dataset.runs_of(sub, ses)
        files: dict[str, Any] = {}
        for variant in self.fitted.session_variants(sub, ses):
            nordic, combine = Variant(variant).parts()
            files[variant] = [self.combine.outputs(combine, r, nordic)["bold"] for r in runs]
        brain = self.spatial.func_brain_mask(sub)
        if brain:
            files["brain"] = brain
        return files

    @staticmethod
    def _run_labels(runs: list[Run]) -> list[str]:
        return [r.label or str(i + 1) for i, r in enumerate(runs)]

    def _mask_params(self, wc: Any, input: Any) -> str:
        """``--bold VARIANT RUN...`` per variant, run labels, brain mask and space."""
        sub, ses = self.ctx.session_of(wc)
        args: list[Any] = []
        for variant in self.fitted.session_variants(sub, ses):
            args += ["--bold", variant, *input[variant]]
        args += ["--run-labels", *self._run_labels(self.dataset.runs_of(sub, ses))]
        if "brain" in input.keys():
            args += ["--brain-mask", input.brain]
        if self.ctx.space():
            args += ["--space", self.ctx.space()]
        return words(args)

    def _run_labels_param(self, wc: Any) -> str:
        """The labels of the session's runs (``--run-labels``), in the order of ``--bold``."""
        return words(self._run_labels(self.ctx.session_runs(wc)))

    def _session_param(self, wc: Any) -> str:
        """``--session`` with the session's label; empty for a dataset without sessions."""
        _, ses = self.ctx.session_of(wc)
        return words(["--session", ses]) if ses else ""

    # -----------------------------------------------------------------------------------------
    # targets

    def heldout_targets(self) -> list[str]:
        """The held-out fits of every variant of every comparison session (none when the
        report, and with it the comparison, is off)."""
        if not self.config["report"]["enabled"]:
            return []
        fitted = self.fitted.glm_variant_sessions()
        targets: list[str] = []
        for sub in self.dataset.subjects():
            for ses in self.fitted.heldout_sessions(sub):
                for variant in self.fitted.glm_variants():
                    if (sub, ses) in fitted.get(variant, []):
                        nordic, combine = Variant(variant).parts()
                        outs = self.heldout_outputs(nordic, combine, sub, ses)
                        targets.extend(outs.values())
        return targets


__all__ = ["ANALYSIS_MASK", "GLM", "GLM_HELDOUT", "GLM_REFERENCE", "GlmRules"]

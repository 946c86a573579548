"""Anatomy (rule ``anatomy``): per subject, bias correction, brain mask, tissue classes and
template registration of the T1w (:mod:`echoprep.stages.anatomy`)."""

from __future__ import annotations

import json
from typing import Any

from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SUBJECT_KEY
from echoprep.plan.context import Files, PlanContext, PlanError, words
from echoprep.plan.gradients import Gradients
from echoprep.plan.rule import Family, RuleDef, RuleFiles, fixed_mb

ANATOMY = RuleDef(
    name="anatomy",
    doc=(
        "A subject's T1w: N4 bias correction, brain mask, tissue classes, registration to "
        "MNI152NLin2009aSym"
    ),
    level="subject",
    log=(folder_name("anatomy"), SUBJECT_KEY, ""),
    command=(
        "python -m echoprep anatomy --t1w {input.t1w:q} {params.args}"
        " --options-json {params.options:q} --seed {params.seed} --threads {params.threads}"
        " --out {params.out}"
    ),
    message=(
        "Anatomy sub-{wildcards.subject}: bias correction, brain mask, tissues, template"
        " registration"
    ),
    # measured 2.19 GiB at LAION size with a 1 mm T1w (benchmarks/laion_session.json)
    memory=fixed_mb(5000),
    minutes=25,
    threads=2,
    env="spatial",
)


class AnatomyRules(Family):
    """The anatomy rule and the paths of its outputs."""

    RULES = (ANATOMY,)

    def __init__(self, ctx: PlanContext, gradients: Gradients) -> None:
        super().__init__(ctx)
        self.gradients = gradients

    def folders(self) -> list[str]:
        """``anat/`` with spatial preprocessing to the T1w."""
        return [folder_name("anatomy")] if self.ctx.space() else []

    def anatomy(self) -> RuleFiles:
        return RuleFiles(
            self._inputs,
            self.outputs(),
            {
                "options": self.ctx.options("anatomy"),
                "seed": self.ctx.seed(),
                "out": self._out_args,
                "args": self._params,
            },
        )

    def outputs(self, subject: str = "{subject}") -> Files:
        """Anatomy outputs (and sidecars) of a subject, as patterns or for a subject; the QC
        image in template space is not a workflow output."""
        return self.ctx.subject_files("anatomy", subject, skip=("template_preproc",))

    def _out_args(self, wc: Any, output: Any) -> str:
        """``KEY=PATH`` words of the anatomy rule's ``--out``."""
        keys = [k for k in self.outputs() if not k.endswith("_json")]
        return words(f"{k}={output[k]}" for k in keys)

    def _inputs(self, wc: Any) -> Files:
        """The subject's T1w and, when it is corrected for gradient nonlinearity, its
        scanner's coefficient file (``gradient``: a changed file reruns the job)."""
        files = {"t1w": self.t1w(wc)}
        gradient = self.gradients.image_choice(files["t1w"]).coefficients
        if gradient is not None:  # docs/gradients.md, "Anatomy and SBRefs"
            files["gradient"] = gradient
        return files

    def _params(self, wc: Any, input: Any) -> str:
        """``--gradient-json`` when the T1w is corrected (``input.gradient``)."""
        if "gradient" not in input.keys():
            return ""
        spec = self.gradients.image_choice(self.t1w(wc)).spec()
        return words(["--gradient-json", json.dumps(spec, sort_keys=True)])

    def t1w(self, wc: Any) -> str:
        """The subject's T1w (any session's anat/)."""
        try:
            return str(self.dataset.t1w[wc.subject])
        except KeyError:
            raise PlanError(
                f"sub-{wc.subject}: no T1w image found; add one (sub-X/anat/ or sub-X/ses-Y/anat/) "
                "or set spatial.output_space: native"
            ) from None


__all__ = ["ANATOMY", "AnatomyRules"]

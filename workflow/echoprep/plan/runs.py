"""Per-run jobs: NORDIC, echo handling, anatomy and spatial preprocessing."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import EchoFiles, Run
from echoprep.io.bids_fmap import RULES
from echoprep.io.paths import run_prefix
from echoprep.options import options_json
from echoprep.plan import gradients as grad
from echoprep.plan._base import BasePlan, Files, PlanError, _words
from echoprep.variants import Variant

#: How the summary line names each fieldmap matching rule (:data:`echoprep.io.bids_fmap.RULES`).
RULE_LABELS = dict(
    zip(
        RULES,
        (
            "by IntendedFor",
            "by acquisition time, interpolated",
            "by acquisition time, nearest",
            "by run entity",
            "as the session's only fieldmap",
        ),
        strict=True,
    )
)


def _per_echo(files: Mapping[int, Files]) -> Files:
    """One job's files of several echoes: ``{echo: {key: path}}`` as ``echo<E>_<key>``."""
    return {f"echo{e}_{k}": path for e, per in files.items() for k, path in per.items()}


def _echo_out_words(
    output: Any, run: Run, outputs: Mapping[str, reg.Output], prefix: str = ""
) -> str:
    """``KEY=PATH`` words for ``--out``: every output key (sidecars are written with their
    image) of every echo of ``run`` in its order, from a job's ``output`` (keys
    ``<prefix>echo<E>_<key>``)."""
    return _words(f"{k}={output[f'{prefix}echo{e.echo}_{k}']}" for e in run.echoes for k in outputs)


class RunPlan(BasePlan):
    """The run-level part of :class:`echoprep.plan.Plan`: NORDIC, echo handling, spatial."""

    # -----------------------------------------------------------------------------------------
    # rules with one job per run for all its echoes (nordic, spatial_resample)

    def echo_counts(self) -> list[int]:
        """The numbers of echoes of the dataset's runs, ascending (usually just one).

        ``nordic`` and ``spatial_resample`` run one job per run (and NORDIC variant) for all
        its echoes and list their outputs per echo; as Snakemake outputs cannot depend on
        wildcards, the rule files define one such rule per echo count (:meth:`_echo_rule`,
        :meth:`_echo_constraints`). Discovery (``check_echo_counts``) gives every run of a
        subject the same echoes, numbered 1..n; subjects may differ.

        Raises
        ------
        PlanError
            A run whose echoes are not numbered 1..n (discovery refuses such runs).
        """
        return list(self._echo_counts)

    @cached_property
    def _echo_counts(self) -> tuple[int, ...]:
        """:meth:`echo_counts`, computed once (the rule files ask for it per rule)."""
        counts = set()
        for run in self.dataset.runs:
            labels = sorted(int(e.echo) for e in run.echoes)
            if labels != list(range(1, len(labels) + 1)):
                raise PlanError(
                    f"{run_prefix(run.entities)}: expected echoes numbered 1 to {len(labels)}; "
                    f"found echo(es) {labels}. Fix: name the run's echo files echo-1, echo-2, "
                    "... in the order of their echo times"
                )
            counts.add(len(labels))
        return tuple(sorted(counts))

    def _echo_rule(self, rule: str, echoes: int) -> str:
        """Name of the ``rule`` (``nordic``, ``spatial_resample``) for runs with ``echoes``
        echoes: ``rule`` itself when every run has the same number of echoes, else
        ``<rule>_<echoes>echoes``."""
        return rule if len(self.echo_counts()) == 1 else f"{rule}_{echoes}echoes"

    def _echo_constraints(self, echoes: int, run_prefix_pattern: str) -> dict[str, str]:
        """Wildcard constraints of the rule for runs with ``echoes`` echoes.

        ``run_prefix`` matches ``run_prefix_pattern``; when runs differ in their number of
        echoes, only the runs with ``echoes`` of them: those of the subjects whose runs all
        have that many (a look-ahead on ``sub-<label>_``) and, by their exact prefix, such
        runs of other subjects (which discovery does not let happen).
        """
        if len(self.echo_counts()) == 1:
            return {"run_prefix": run_prefix_pattern}
        by_subject: dict[str, set[int]] = {}
        for run in self.dataset.runs:
            by_subject.setdefault(run.subject, set()).add(len(run.echoes))
        whole = sorted(s for s, counts in by_subject.items() if counts == {echoes})
        alternatives = []
        if whole:
            labels = "|".join(re.escape(s) for s in whole)
            alternatives.append(f"(?=sub-(?:{labels})_){run_prefix_pattern}")
        alternatives += [
            re.escape(run_prefix(r.entities))
            for r in self.dataset.runs
            if len(r.echoes) == echoes and len(by_subject[r.subject]) > 1
        ]
        return {"run_prefix": "|".join(f"(?:{a})" for a in alternatives)}

    # -----------------------------------------------------------------------------------------
    # NORDIC (nordic.smk): one job per run, its echoes one after another

    def nordic_outputs(self, run: Run | None = None, echo: Any = "{echo}") -> Files:
        """NORDIC outputs (and sidecars) of one echo, as patterns or for a run."""
        return self._files("nordic", self._run_key(run), echo=echo)

    def nordic_run_outputs(self, echoes: int) -> Files:
        """Outputs of the NORDIC job of a run with ``echoes`` echoes, as patterns: every
        echo's :meth:`nordic_outputs`, keys prefixed ``echo<E>_`` (``echo2_bold``)."""
        return _per_echo({e: self.nordic_outputs(None, e) for e in range(1, echoes + 1)})

    def _nordic_inputs(self, wc: Any) -> dict[str, list[str]]:
        """Magnitude of every echo of the run (echo-time order) and, unless
        ``nordic.magnitude_only``, their phase (discovery: every echo has one, or none)."""
        echoes = self.run_of(wc).echoes
        files = {"mag": [str(e.mag) for e in echoes]}
        phases = [e.phase for e in echoes]
        if not self.config["nordic"]["magnitude_only"] and any(p is not None for p in phases):
            if any(p is None for p in phases):
                raise PlanError(
                    f"{wc.run_prefix}: expected a part-phase image for every echo or for none; "
                    "found some. Fix: add the missing phase images, or remove all of the "
                    "run's phase images to process it magnitude-only"
                )
            files["phase"] = [str(p) for p in phases]
        return files

    def _nordic_params(self, wc: Any, input: Any) -> str:
        """``--phase`` (when given), ``--te`` per echo and ``--tr`` of a NORDIC job."""
        run = self.run_of(wc)
        args = ["--phase", *input.phase] if "phase" in input.keys() else []
        args += ["--te", *run.echo_times, "--tr", run.repetition_time]
        return _words(args)

    def _nordic_out_args(self, wc: Any, output: Any) -> str:
        """``--out`` words of a NORDIC job: ``bold=… gfactor=… removed=…`` per echo, in the
        order of ``--mag`` (the run's echoes by echo time)."""
        return _echo_out_words(output, self.run_of(wc), reg.stage_outputs("nordic"))

    # -----------------------------------------------------------------------------------------
    # echo handling (combine.smk)

    def combine_outputs(
        self, variant: str, run: Run | None = None, nordic: str = "{nordic}"
    ) -> Files:
        """Outputs (and sidecars) of a combine variant, as patterns or for a run."""
        return self._files("combine", self._run_key(run), variant, nordic=nordic)

    def _echo_inputs(self, wc: Any) -> list[str]:
        """Magnitude image per echo of the run (echo-time order) for the NORDIC variant."""
        run = self.run_of(wc)
        if self.config["spatial"]["enabled"]:  # the spatially preprocessed echoes
            return [self.preproc_echo(run, e.echo, wc.nordic) for e in run.echoes]
        if wc.nordic == "raw":
            return [str(e.mag) for e in run.echoes]
        return [self.nordic_outputs(run, str(e.echo))["bold"] for e in run.echoes]

    def noise_volumes_to_drop(self, wc: Any) -> int:
        """Trailing noise volumes the combine stage drops (NORDIC removes its own by default;
        with spatial preprocessing the spatial stage dropped them)."""
        if self.config["spatial"]["enabled"]:
            return 0
        return self.spatial_noise_volumes(wc.nordic)

    def _combine_params(self, wc: Any) -> str:
        """``--te``, ``--tr`` and ``--drop-volumes`` of an echo-handling job."""
        run = self.run_of(wc)
        spatial = self.config["spatial"]
        tr = run.repetition_time
        if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]:
            tr = spatial["tr_out"]  # the echoes were resampled in time
        te = [f"{t:.6g}" for t in run.echo_times]
        return _words(["--te", *te, "--tr", tr, "--drop-volumes", self.noise_volumes_to_drop(wc)])

    def _tedana_inputs(self, wc: Any) -> dict[str, Any]:
        """Echoes of the ICA-denoised job; on NORDIC runs with ``tedana.nordic_tedpca: raw_run``
        also the sidecar of the same run's NORDIC-off ICA, whose component count it uses."""
        files: dict[str, Any] = {"echoes": self._echo_inputs(wc)}
        if wc.nordic == "nordic" and self.config["tedana"]["nordic_tedpca"] == "raw_run":
            raw = self.combine_outputs("denoised", self.run_of(wc), "raw")
            files["raw_components"] = raw["mixing_json"]
        return files

    def _tedana_options(self, wc: Any) -> str:
        """The tedana section, without nordic_tedpca for NORDIC-off runs (changing it reruns
        only the NORDIC runs' jobs)."""
        opts = dict(self.config["tedana"])
        if wc.nordic != "nordic":
            opts.pop("nordic_tedpca", None)
        return options_json(opts)

    def _tedana_params(self, wc: Any, input: Any) -> str:
        """``--nordic`` on NORDIC runs, with the NORDIC-off run's ICA sidecar whose component
        count they use (``tedana.nordic_tedpca: raw_run``)."""
        if wc.nordic != "nordic":
            return ""
        args = ["--nordic"]
        if "raw_components" in input.keys():
            args += ["--raw-components", input.raw_components]
        return _words(args)

    def combine_targets(self) -> list[str]:
        """Every echo-handling output the config asks for: with ``variants.sessions: fitted``
        a run's outputs of the variants fitted for its session (their upstream jobs are pulled
        in by those), with ``all`` every configured variant of every run."""
        every = self.config["variants"]["sessions"] == "all"
        fitted = self._plan().session_variants
        targets: list[str] = []
        for nordic in self.nordic_variants:
            for run in self.dataset.runs:
                wanted = None if every else fitted(run.subject, run.session)
                combines = [
                    c
                    for c in self.config["variants"]["combine"]
                    if wanted is None or Variant.of(nordic, c) in wanted
                ]
                for combine in combines:
                    targets.extend(self.combine_outputs(combine, run, nordic).values())
                if combines and self.config["spatial"]["enabled"]:
                    targets.extend(self.confounds_outputs(run, nordic).values())
        return targets

    def confounds_outputs(self, run: Run | None = None, nordic: str = "{nordic}") -> Files:
        """The run's confounds (and sidecars) beside its series of a NORDIC variant, as
        patterns or for a run: in ``combine-<nordic>/``, and in ``preproc-<nordic>/`` when the
        resampled echoes are kept (rule ``confounds``, :mod:`echoprep.io.confounds`)."""
        files = self._files("confounds", self._run_key(run), nordic=nordic)
        if not self.config["spatial"]["keep_echoes"]:
            files = {k: v for k, v in files.items() if not k.startswith("preproc")}
        return files

    # -----------------------------------------------------------------------------------------
    # anatomy and spatial preprocessing (anatomy.smk, spatial.smk)

    def anat_outputs(self, subject: str = "{subject}") -> Files:
        """Anatomy outputs (and sidecars) of a subject, as patterns or for a subject; the QC
        image in template space is not a workflow output."""
        outs = {n: o for n, o in reg.stage_outputs("anatomy").items() if n != "template_preproc"}
        paths = {n: o.path(self.out, o.subject_key(subject)) for n, o in outs.items()}
        return reg.with_sidecars(paths, outs)

    def _anat_out_args(self, wc: Any, output: Any) -> str:
        """``KEY=PATH`` words of the anatomy rule's ``--out``."""
        keys = [k for k in self.anat_outputs() if not k.endswith("_json")]
        return _words(f"{k}={output[k]}" for k in keys)

    def _anat_inputs(self, wc: Any) -> Files:
        """The subject's T1w and, when it is corrected for gradient nonlinearity, its
        scanner's coefficient file (``gradient``: a changed file reruns the job)."""
        files = {"t1w": self._anat_t1w(wc)}
        gradient = self.image_gradient_choice(files["t1w"]).coefficients
        if gradient is not None:  # docs/gradients.md, "Anatomy and SBRefs"
            files["gradient"] = gradient
        return files

    def _anat_params(self, wc: Any, input: Any) -> str:
        """``--gradient-json`` when the T1w is corrected (``input.gradient``)."""
        if "gradient" not in input.keys():
            return ""
        spec = self.image_gradient_choice(self._anat_t1w(wc)).spec()
        return _words(["--gradient-json", json.dumps(spec, sort_keys=True)])

    def _anat_t1w(self, wc: Any) -> str:
        """The subject's T1w (any session's anat/)."""
        try:
            return str(self.dataset.t1w[wc.subject])
        except KeyError:
            raise PlanError(
                f"sub-{wc.subject}: no T1w image found; add one (sub-X/anat/ or sub-X/ses-Y/anat/) "
                "or set spatial.output_space: native"
            ) from None

    def reference_run(self, subject: str) -> Run:
        """The subject's reference run (first run of its first session): runs and sessions are
        aligned to it."""
        return self.dataset.first_run(subject)

    def spatial_run_outputs(self, run: Run | None = None) -> Files:
        """Per-run geometry outputs (and sidecars), as patterns or for a run."""
        return self._files("spatial", self._run_key(run))

    def spatial_subject_outputs(self, subject: str = "{subject}") -> Files:
        """Per-subject grid outputs (and sidecars), as patterns or for a subject."""
        memo = ("spatial_grid", subject)
        if memo not in self._files_memo:
            outs = reg.stage_outputs("spatial_grid")
            paths = {n: o.path(self.out, o.subject_key(subject)) for n, o in outs.items()}
            self._files_memo[memo] = reg.with_sidecars(paths, outs)
        return dict(self._files_memo[memo])

    def preproc_echo(
        self, run: Run | None = None, echo: Any = "{echo}", nordic: str = "{nordic}"
    ) -> str:
        """A resampled echo of a run (preproc-<nordic>/), as a pattern or for a run."""
        return self._file("preproc.bold", self._run_key(run), echo=echo, nordic=nordic)

    def preproc_run_outputs(self, echoes: int, nordic: str = "{nordic}") -> Files:
        """The resampled echoes of a run with ``echoes`` echoes in a NORDIC variant, as
        patterns: every echo's series (and sidecar), keys prefixed ``echo<E>_`` (a chain job
        marks them temporary unless spatial.keep_echoes, :mod:`echoprep.plan.chains`)."""
        key = self._run_key(None)
        return _per_echo(
            {e: self._files("preproc", key, echo=e, nordic=nordic) for e in range(1, echoes + 1)}
        )

    def func_grid(self, subject: str) -> str | None:
        """The subject's functional grid image (space-T1w boldref), or None (spatial disabled
        or native output)."""
        return self.spatial_subject_outputs(subject)["boldref"] if self.space() else None

    def func_brain_mask(self, subject: str) -> str | None:
        """The anatomy brain mask on the subject's functional grid, or None."""
        return self.spatial_subject_outputs(subject)["brain_mask"] if self.space() else None

    def _spatial_reference_echo(self, run: Run) -> EchoFiles:
        n = self.config["spatial"]["reference_echo"]
        if n > len(run.echoes):
            raise PlanError(
                f"{run_prefix(run.entities)}: spatial.reference_echo is {n} but the run has "
                f"{len(run.echoes)} echoes; set spatial.reference_echo to 1..{len(run.echoes)}"
            )
        return run.echoes[n - 1]

    def spatial_noise_volumes(self, nordic: str) -> int:
        """Trailing noise volumes dropped from the echoes of a NORDIC variant (NORDIC removes
        its own unless keep_noise_volumes)."""
        n = self.config["nordic"]["noise_volumes"]
        return n if nordic == "raw" or self.config["nordic"]["keep_noise_volumes"] else 0

    def sdc_summary(self) -> str | None:
        """One line saying how the runs' susceptibility distortion is corrected: how many runs
        by which method (``spatial.sdc``; counts when methods are mixed) and, for fieldmaps,
        by which matching rule (IntendedFor, acquisition time, run entity, the session's only
        fieldmap; a run that fell back for want of an acquisition time says so), which runs
        are not corrected, or that correction is off; None without spatial preprocessing.
        Printed once per invocation (common.smk); each run's sidecars record what its
        resampling used."""
        spatial = self.config["spatial"]
        if not spatial["enabled"]:
            return None
        runs = self.dataset.runs
        choice = spatial["sdc"]
        if choice == "none" or (not spatial["fieldmap"] and choice != "phase-framewise"):
            why = "spatial.sdc: none" if choice == "none" else "spatial.fieldmap: false"
            return f"Distortion correction: none of the {len(runs)} run(s) ({why})."
        labels = [self._sdc_label(r) for r in runs]
        methods = Counter(labels)
        without = [run_prefix(r.entities) for r, m in zip(runs, labels, strict=True) if m == "none"]
        kinds = sorted(k for k in methods if k != "none")
        if len(kinds) > 1:
            which = " (" + ", ".join(f"{methods[k]} {k}" for k in kinds) + ")"
        else:
            which = f" ({kinds[0]})" if kinds else ""
        source = "their fieldmap" if choice in ("auto", "fieldmap", "pepolar") else "their phase"
        if choice != "auto":  # one method: the option says which
            which = f" (spatial.sdc: {choice})"
        rules = Counter(
            RULE_LABELS.get(r.fieldmap.rule, r.fieldmap.rule)
            + (f" ({r.fieldmap.note})" if r.fieldmap.note else "")
            for r, m in zip(runs, labels, strict=True)
            if m != "none" and r.fieldmap is not None and self.sdc_method(r) != "phase-framewise"
        )
        if which and rules:
            order = {label: i for i, label in enumerate(RULE_LABELS.values())}
            ranked = sorted(rules, key=lambda k: (order.get(k.split(" (")[0], len(order)), k))
            which = which[:-1] + "; " + ", ".join(f"{rules[k]} {k}" for k in ranked) + ")"
        line = (
            f"Distortion correction: {len(runs) - len(without)} of {len(runs)} run(s) with "
            f"{source}{which}"
        )
        if not without:
            return line + "."
        more = f" and {len(without) - 3} more" if len(without) > 3 else ""
        lacking = {
            "auto": "without a fieldmap",
            "fieldmap": "without a GRE or Hz fieldmap",
            "pepolar": "without a reversed phase-encoding pair",
            "phase-framewise": "without phase for 2 or more echoes (or without "
            "PhaseEncodingDirection and TotalReadoutTime)",
        }[choice]
        line += f"; {len(without)} {lacking}, not corrected: {', '.join(without[:3])}{more}"
        noted: dict[str, list[str]] = {}
        for r, m in zip(runs, labels, strict=True):
            if m == "none" and r.fieldmap_note:
                noted.setdefault(r.fieldmap_note, []).append(run_prefix(r.entities))
        if noted:
            line += " (" + "; ".join(f"{k}: {len(v)}" for k, v in noted.items()) + ")"
        if kinds:
            line += (
                ". Corrected and uncorrected runs differ in geometry: give every run what "
                "the method needs, choose another spatial.sdc, or set spatial.sdc: none to "
                "correct none"
            )
        return line + "."

    def _gradient_files(self) -> Mapping[str, str]:
        """``spatial.gradient_coefficients`` ({} when empty).

        Raises
        ------
        PlanError
            A configured coefficient file does not exist (the key, the path and the fix).
        """
        files = self.config["spatial"].get("gradient_coefficients") or {}
        problem = grad.check_files(files)
        if problem:
            raise PlanError(problem)
        return files

    def gradient_choice(self, run: Run) -> grad.GradientChoice:
        """The gradient-nonlinearity correction of a run (:mod:`echoprep.plan.gradients`).

        Raises
        ------
        PlanError
            A configured coefficient file does not exist (the key, the path and the fix).
        """
        files = self._gradient_files()
        if not files:
            return grad.GradientChoice(None, reason="spatial.gradient_coefficients is empty")
        return grad.choose(files, run)

    def image_gradient_choice(self, image: str | Path) -> grad.GradientChoice:
        """The gradient-nonlinearity correction of an anatomical image (the T1w, the T2w),
        decided from its own sidecar: an anatomy from another scanner gets that scanner's
        coefficient file.

        Raises
        ------
        PlanError
            A configured coefficient file does not exist.
        """
        files = self._gradient_files()
        if not files:
            return grad.GradientChoice(None, reason="spatial.gradient_coefficients is empty")
        return grad.choose_image(files, image)

    def anatomy_images(self) -> list[Path]:
        """The raw anatomical images the workflow uses, subject by subject: the T1w (the
        anatomy stage, with outputs in T1w space) and the T2w (the registration target; found
        only when ``spatial.registration_target`` uses it)."""
        if not self.space():
            return []
        images = []
        for sub in self.dataset.subjects():
            images += [d[sub] for d in (self.dataset.t1w, self.dataset.t2w) if sub in d]
        return images

    def gradient_summary(self) -> str | None:
        """One line on the gradient-nonlinearity correction of the runs and the anatomical
        images (printed once, like :meth:`sdc_summary`); None without spatial preprocessing.

        Raises
        ------
        PlanError
            A configured coefficient file does not exist.
        """
        if not self.config["spatial"]["enabled"]:
            return None
        files = self._gradient_files()
        return grad.summary(files, self.dataset.runs, self.anatomy_images())

    def _sdc_label(self, run: Run) -> str:
        """The method of a run as the summary names it: the fieldmap's kind (phasediff or
        fieldmap) for a GRE or Hz fieldmap, else the method."""
        method = self.sdc_method(run)
        return run.fieldmap.kind if method == "fieldmap" and run.fieldmap else method

    def spatial_reference_outputs(self, subject: str = "{subject}") -> Files:
        """The subject's reference boldref (and sidecar): the reference run's motion
        reference, the target every run (the reference run too) and the grid are aligned to,
        as a pattern or for a subject."""
        key = reg.get("spatial_reference.boldref").subject_key(subject)
        return self._files("spatial_reference", key)

    def _spatial_run_inputs(self, wc: Any) -> dict[str, Any]:
        """Raw reference echo, the fieldmap files and (every run but the reference run) the
        subject's reference boldref; keys ``echo``, ``fieldmap``, ``reference``."""
        return self._geometry_inputs(self.run_of(wc))

    def _geometry_inputs(self, run: Run, reference: bool = True) -> dict[str, Any]:
        files: dict[str, Any] = {"echo": str(self._spatial_reference_echo(run).mag)}
        if run.sbref is not None:  # found only when spatial.motion_reference uses it
            files["sbref"] = str(run.sbref)
        method = self.sdc_method(run)
        if method in ("fieldmap", "pepolar") and run.fieldmap is not None:
            files["fieldmap"] = [str(p) for p in run.fieldmap.files]
        elif method == "phase-framewise":
            files["framewise"] = [
                str(p) for e in run.echoes if e.phase is not None for p in (e.mag, e.phase)
            ]
        if reference and self.reference_run(run.subject) is not run:
            files["reference"] = self.spatial_reference_outputs(run.subject)["boldref"]
        gradient = self.gradient_choice(run).coefficients
        if gradient is not None:
            files["gradient"] = gradient
        return files

    def _spatial_run_params(self, wc: Any, input: Any, prefix: str) -> str:
        """Command-line arguments of a run's geometry step that depend on the run (the
        reference boldref from ``input.<prefix>reference``)."""
        return self._geometry_args(self.run_of(wc), input.get(prefix + "reference"))

    def _geometry_args(self, run: Run, reference: str | None) -> str:
        args: list[Any] = ["--tr", str(run.repetition_time)]
        args += ["--drop-volumes", str(self.config["nordic"]["noise_volumes"])]
        if run.slice_timing:
            args += ["--slice-timing", *[f"{t:.6g}" for t in run.slice_timing]]
        method = self.sdc_method(run)
        if method in ("fieldmap", "pepolar") and run.fieldmap is not None:
            args += ["--fieldmap-json", json.dumps(run.fieldmap.as_spec(), sort_keys=True)]
        elif method == "phase-framewise":
            echoes = [
                [str(e.mag), str(e.phase), e.echo_time] for e in run.echoes if e.phase is not None
            ]
            args += ["--framewise-json", json.dumps(echoes)]
        if method != "none":  # every method turns its field into shifts along the PE axis
            if run.pe_direction:
                args += ["--pe-direction", run.pe_direction]
            if run.total_readout_time:
                args += ["--readout-time", f"{run.total_readout_time:.8g}"]
        if reference:
            args += ["--reference-boldref", reference]
        gradient = self.gradient_choice(run).spec()
        if gradient is not None:  # docs/gradients.md
            args += ["--gradient-json", json.dumps(gradient, sort_keys=True)]
        if run.sbref is not None:  # the motion reference (docs/registration.md)
            args += ["--sbref", str(run.sbref)]
        return _words(args)

    def _spatial_reference_inputs(self, wc: Any) -> dict[str, Any]:
        """The reference run's raw reference echo and fieldmap files."""
        return self._geometry_inputs(self.reference_run(wc.subject), reference=False)

    def _spatial_reference_params(self, wc: Any) -> str:
        """The geometry arguments of the subject's reference run."""
        return self._geometry_args(self.reference_run(wc.subject), None)

    def _spatial_subject_inputs(self, wc: Any) -> Files:
        """The subject's reference boldref, the anatomy's T1w and brain mask and, when it is the
        registration target, the subject's raw T2w (and, when the T2w is corrected for
        gradient nonlinearity, its scanner's coefficient file, ``t2w_gradient``)."""
        anat = self.anat_outputs(wc.subject)
        files = {
            "boldref": self.spatial_reference_outputs(wc.subject)["boldref"],
            "t1w": anat["preproc"],
            "mask": anat["brain_mask"],
        }
        t2w = self.dataset.t2w.get(wc.subject)  # found only when registration_target uses it
        if t2w is not None:
            files["t2w"] = str(t2w)
            gradient = self.image_gradient_choice(t2w).coefficients
            if gradient is not None:
                files["t2w_gradient"] = gradient
        return files

    def _spatial_subject_params(self, wc: Any, input: Any) -> str:
        """``--t2w`` when the subject's T2w is the registration target, and
        ``--t2w-gradient-json`` when it is corrected (``input.t2w_gradient``)."""
        if "t2w" not in input.keys():
            return ""
        args = ["--t2w", input.t2w]
        if "t2w_gradient" in input.keys():
            spec = self.image_gradient_choice(input.t2w).spec()
            args += ["--t2w-gradient-json", json.dumps(spec, sort_keys=True)]
        return _words(args)

    def resample_sources(self, run: Run, nordic: str) -> list[str]:
        """The echoes the resampling reads for a NORDIC variant (echo-time order): the raw
        magnitudes, or NORDIC's outputs."""
        if nordic == "raw":
            return [str(e.mag) for e in run.echoes]
        return [self.nordic_outputs(run, e.echo)["bold"] for e in run.echoes]

    def resample_grid_inputs(self, run: Run) -> dict[str, Any]:
        """What the resampling of a run reads besides its echoes: the run's geometry, the
        output grid (+ its transform)."""
        files: dict[str, Any] = {"geometry": self.spatial_run_outputs(run)["xfm"]}
        if self.space():
            grid = self.spatial_subject_outputs(run.subject)
            files["grid"] = grid["boldref"]
            files["xfm"] = grid["xfm"]
        else:
            files["grid"] = self.spatial_reference_outputs(run.subject)["boldref"]
        return files

    def _spatial_resample_params(self, wc: Any, input: Any) -> str:
        """Command-line arguments of spatial_resample that depend on the job: the echo times,
        the noise volumes to drop, the grid's transform."""
        args: list[Any] = ["--te", *[f"{t:.6g}" for t in self.run_of(wc).echo_times]]
        args += ["--drop-volumes", str(self.spatial_noise_volumes(wc.nordic))]
        if "xfm" in input.keys():
            args += ["--ref-xfm", input.xfm]
        return _words(args)

    def _spatial_resample_out_args(self, wc: Any, output: Any, prefix: str = "") -> str:
        """``--out`` words of a resampling step: ``bold=…`` per echo, in the order of
        ``--echo`` (the run's echoes by echo time); output keys ``<prefix>echo<E>_bold``."""
        return _echo_out_words(output, self.run_of(wc), reg.stage_outputs("preproc"), prefix)

    def spatial_targets(self) -> list[str]:
        """Anatomy and spatial outputs that are targets by themselves (the echoes are pulled
        in by the echo-handling rules)."""
        if not self.config["spatial"]["enabled"]:
            return []
        targets: list[str] = []
        for sub in self.dataset.subjects():
            targets.extend(self.spatial_reference_outputs(sub).values())
            if self.space():
                targets.extend(self.anat_outputs(sub).values())
                targets.extend(self.spatial_subject_outputs(sub).values())
        for run in self.dataset.runs:
            targets.extend(self.spatial_run_outputs(run).values())
        return sorted(set(targets))

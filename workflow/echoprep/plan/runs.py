"""Per-run jobs: NORDIC, echo handling, anatomy and spatial preprocessing."""

from __future__ import annotations

import json
import shlex
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import EchoFiles, Run
from echoprep.io.paths import run_prefix
from echoprep.options import options_json
from echoprep.plan._base import Files, PlanError, _words


class RunPlan:
    """Methods of :class:`echoprep.plan.Plan` (mixed in)."""

    # -----------------------------------------------------------------------------------------
    # NORDIC (nordic.smk)

    def nordic_outputs(self, run: Run | None = None, echo: str = "{echo}") -> Files:
        """NORDIC outputs (and sidecars) of one echo, as patterns or for a run."""
        return self._files("nordic", self._run_key(run), echo=echo)

    def nordic_inputs(self, wc: Any) -> Files:
        """Magnitude (+ phase when the run has it and magnitude_only is off) of one echo."""
        e = self.echo_of(wc)
        files = {"mag": str(e.mag)}
        if e.phase is not None and not self.config["nordic"]["magnitude_only"]:
            files["phase"] = str(e.phase)
        return files

    def nordic_params(self, wc: Any, input: Any) -> str:
        """``--phase`` (when given), ``--te`` and ``--tr`` of a NORDIC job."""
        args = ["--phase", input.phase] if "phase" in input.keys() else []
        args += ["--te", self.echo_of(wc).echo_time, "--tr", self.run_of(wc).repetition_time]
        return _words(args)

    # -----------------------------------------------------------------------------------------
    # echo handling (combine.smk)

    def combine_outputs(
        self, variant: str, run: Run | None = None, nordic: str = "{nordic}"
    ) -> Files:
        """Outputs (and sidecars) of a combine variant, as patterns or for a run."""
        return self._files("combine", self._run_key(run), variant, nordic=nordic)

    def echo_inputs(self, wc: Any) -> list[str]:
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

    def combine_params(self, wc: Any) -> str:
        """``--te``, ``--tr`` and ``--drop-volumes`` of an echo-handling job."""
        run = self.run_of(wc)
        spatial = self.config["spatial"]
        tr = run.repetition_time
        if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]:
            tr = spatial["tr_out"]  # the echoes were resampled in time
        te = [f"{t:.6g}" for t in run.echo_times]
        return _words(["--te", *te, "--tr", tr, "--drop-volumes", self.noise_volumes_to_drop(wc)])

    def tedana_inputs(self, wc: Any) -> dict[str, Any]:
        """Echoes of the ICA-denoised job; on NORDIC runs with ``tedana.nordic_tedpca: raw_run``
        also the sidecar of the same run's NORDIC-off ICA, whose component count it uses."""
        files: dict[str, Any] = {"echoes": self.echo_inputs(wc)}
        if wc.nordic == "nordic" and self.config["tedana"]["nordic_tedpca"] == "raw_run":
            raw = self.combine_outputs("denoised", self.run_of(wc), "raw")
            files["raw_components"] = raw["mixing_json"]
        elif self._capped_criterion():
            optcom = self.combine_outputs("optcom", self.run_of(wc), wc.nordic)
            files["optcom"] = [optcom["bold"], optcom["mask"]]
        return files

    def _capped_criterion(self) -> bool:
        """tedana estimates the count with aic/kic/mdl and ``tedana.max_components`` caps it:
        the job needs the run's optimally combined series (the optcom job's output)."""
        tedana = self.config["tedana"]
        return str(tedana["tedpca"]) in ("aic", "kic", "mdl") and (
            tedana.get("max_components") is not None
        )

    def tedana_options(self, wc: Any) -> str:
        """The tedana section, without nordic_tedpca for NORDIC-off runs (changing it reruns
        only the NORDIC runs' jobs)."""
        opts = dict(self.config["tedana"])
        if wc.nordic != "nordic":
            opts.pop("nordic_tedpca", None)
        return options_json(opts)

    def tedana_params(self, wc: Any, input: Any) -> str:
        """``--nordic`` on NORDIC runs, with the NORDIC-off run's ICA sidecar whose component
        count they use (``tedana.nordic_tedpca: raw_run``)."""
        args = []
        if "optcom" in input.keys():
            args += ["--optcom", *input.optcom]
        if wc.nordic != "nordic":
            return _words(args)
        args.append("--nordic")
        if "raw_components" in input.keys():
            args += ["--raw-components", input.raw_components]
        return _words(args)

    def combine_targets(self) -> list[str]:
        """Every echo-handling output the config asks for."""
        targets = []
        for nordic in self.nordic_variants:
            for run in self.dataset.runs:
                for variant in self.config["variants"]["combine"]:
                    targets.extend(self.combine_outputs(variant, run, nordic).values())
        return targets

    # -----------------------------------------------------------------------------------------
    # anatomy and spatial preprocessing (anatomy.smk, spatial.smk)

    def anat_outputs(self, subject: str = "{subject}") -> Files:
        """Anatomy outputs (and sidecars) of a subject, as patterns or for a subject; the QC
        image in template space is not a workflow output."""
        outs = {n: o for n, o in reg.stage_outputs("anatomy").items() if n != "template_preproc"}
        paths = {n: o.path(self.out, o.subject_key(subject)) for n, o in outs.items()}
        return reg.with_sidecars(paths, outs)

    def anat_out_args(self, wc: Any, output: Any) -> str:
        """``KEY=PATH`` words of the anatomy rule's ``--out``."""
        keys = [k for k in self.anat_outputs() if not k.endswith("_json")]
        return " ".join(f"{k}={shlex.quote(str(output[k]))}" for k in keys)

    def anat_t1w(self, wc: Any) -> str:
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
        return next(r for r in self.dataset.runs if r.subject == subject)

    def spatial_run_outputs(self, run: Run | None = None) -> Files:
        """Per-run geometry outputs (and sidecars), as patterns or for a run."""
        return self._files("spatial", self._run_key(run))

    def spatial_subject_outputs(self, subject: str = "{subject}") -> Files:
        """Per-subject grid outputs (and sidecars), as patterns or for a subject."""
        outs = reg.stage_outputs("spatial_grid")
        paths = {n: o.path(self.out, o.subject_key(subject)) for n, o in outs.items()}
        return reg.with_sidecars(paths, outs)

    def preproc_echo(
        self, run: Run | None = None, echo: Any = "{echo}", nordic: str = "{nordic}"
    ) -> str:
        """A resampled echo of a run (preproc-<nordic>/), as a pattern or for a run."""
        return self._file("preproc.bold", self._run_key(run), echo=echo, nordic=nordic)

    def preproc_echo_outputs(self) -> Files:
        """The resample rule's outputs (the rule marks them temporary unless
        spatial.keep_echoes)."""
        return self._files("preproc", self._run_key(None), echo="{echo}", nordic="{nordic}")

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

    def _use_fieldmap(self, run: Run) -> bool:
        return run.fieldmap is not None and self.config["spatial"]["fieldmap"]

    def spatial_run_inputs(self, wc: Any) -> dict[str, Any]:
        """Raw reference echo, the fieldmap files, the reference run's boldref (other runs)."""
        run = self.run_of(wc)
        files: dict[str, Any] = {"echo": str(self._spatial_reference_echo(run).mag)}
        if self._use_fieldmap(run):
            files["fieldmap"] = [str(p) for p in run.fieldmap.files]
        ref = self.reference_run(run.subject)
        if ref is not run:
            files["reference"] = self.spatial_run_outputs(ref)["boldref"]
        return files

    def spatial_run_params(self, wc: Any, input: Any) -> str:
        """Command-line arguments of spatial_run that depend on the run."""
        run = self.run_of(wc)
        args: list[Any] = ["--tr", str(run.repetition_time)]
        args += ["--drop-volumes", str(self.config["nordic"]["noise_volumes"])]
        if run.slice_timing:
            args += ["--slice-timing", *[f"{t:.6g}" for t in run.slice_timing]]
        if self._use_fieldmap(run):
            args += ["--fieldmap-json", json.dumps(run.fieldmap.as_spec(), sort_keys=True)]
            if run.pe_direction:
                args += ["--pe-direction", run.pe_direction]
            if run.total_readout_time:
                args += ["--readout-time", f"{run.total_readout_time:.8g}"]
        if "reference" in input.keys():
            args += ["--reference-boldref", input.reference]
        return _words(args)

    def spatial_subject_inputs(self, wc: Any) -> Files:
        """The reference run's boldref and the anatomy's T1w and brain mask."""
        anat = self.anat_outputs(wc.subject)
        ref = self.reference_run(wc.subject)
        return {
            "boldref": self.spatial_run_outputs(ref)["boldref"],
            "t1w": anat["preproc"],
            "mask": anat["brain_mask"],
        }

    def spatial_resample_inputs(self, wc: Any) -> Files:
        """One echo of a variant, the run's geometry, the output grid (+ its transform)."""
        run = self.run_of(wc)
        e = self.echo_of(wc)
        source = str(e.mag) if wc.nordic == "raw" else self.nordic_outputs(run, str(e.echo))["bold"]
        files = {"echo": source, "geometry": self.spatial_run_outputs(run)["xfm"]}
        if self.space():
            grid = self.spatial_subject_outputs(run.subject)
            files["grid"] = grid["boldref"]
            files["xfm"] = grid["xfm"]
        else:
            files["grid"] = self.spatial_run_outputs(self.reference_run(run.subject))["boldref"]
        return files

    def spatial_resample_params(self, wc: Any, input: Any) -> str:
        """Command-line arguments of spatial_resample that depend on the job."""
        args: list[Any] = ["--te", f"{self.echo_of(wc).echo_time:.6g}"]
        args += ["--drop-volumes", str(self.spatial_noise_volumes(wc.nordic))]
        if "xfm" in input.keys():
            args += ["--ref-xfm", input.xfm]
        return _words(args)

    def spatial_targets(self) -> list[str]:
        """Anatomy and spatial outputs that are targets by themselves (the echoes are pulled
        in by the echo-handling rules)."""
        if not self.config["spatial"]["enabled"]:
            return []
        targets = []
        for sub in self.dataset.subjects():
            if self.space():
                targets.extend(self.anat_outputs(sub).values())
                targets.extend(self.spatial_subject_outputs(sub).values())
        for run in self.dataset.runs:
            targets.extend(self.spatial_run_outputs(run).values())
        return sorted(set(targets))

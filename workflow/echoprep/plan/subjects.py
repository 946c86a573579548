"""Per-subject and group jobs: ROIs, the comparison, NORDIC diagnostics and the reports."""

from __future__ import annotations

from typing import Any, cast

from echoprep.io import outputs as reg
from echoprep.io.arguments import entry_words
from echoprep.io.rois import VISUAL_CATEGORY, VISUAL_LABEL, find_roi_files, res_label
from echoprep.plan._base import Files, PlanError, _strip_label, _words
from echoprep.plan.sessions import SessionPlan
from echoprep.variants import Variant


class SubjectPlan(SessionPlan):
    """The per-subject level of :class:`echoprep.plan.Plan`, on the per-session level."""

    # -----------------------------------------------------------------------------------------
    # ROIs (rois.smk)

    def rois_enabled(self) -> bool:
        """ROIs, ROI tables and the comparison need the GLM and noise-ceiling stages."""
        return bool(self.glm_variant_sessions())

    def visual_source(self, subject: str) -> tuple[str, str, str | None]:
        """(nordic, combine, session) whose GLM outputs define the subject's visual ROI."""
        produced = self.glm_variants()
        variant = self.config["rois"]["visual"]["variant"] or next(iter(produced), None)
        if variant not in produced:
            raise PlanError(
                f"rois.visual.variant: expected a variant this config produces "
                f"({', '.join(produced)}); found {variant!r}. Fix: choose one of them (the "
                "default raw-single needs nordic-off outputs and the single-echo variant)."
            )
        wanted = self.config["rois"]["visual"]["session"]
        sessions = self.comparison_sessions(subject) or self.dataset.sessions(subject)
        session = _strip_label(wanted, "ses") if wanted else sessions[0]
        if session not in self.dataset.sessions(subject):
            raise PlanError(
                f"rois.visual.session: sub-{subject} has no session {wanted!r}; it has "
                f"{self.dataset.sessions(subject)}"
            )
        if (subject, session) not in self.glm_variant_sessions().get(variant, []):
            raise PlanError(
                f"rois.visual: {variant} is not fitted for sub-{subject} ses-{session}. Fix: use "
                "a comparison session (comparison.sessions) or add the variant to "
                "glm.all_sessions_variants."
            )
        nordic, combine = Variant(variant).parts()
        return nordic, combine, session

    def visual_glm(self, subject: str) -> Files:
        """The GLM outputs the visual ROI of a subject is computed from."""
        nordic, combine, session = self.visual_source(subject)
        return self.glm_outputs(nordic, combine, subject, session)

    def _visual_roi_variant(self, wc: Any) -> str:
        nordic, combine, _ = self.visual_source(wc.subject)
        return Variant.of(nordic, combine)

    def roi_grid(self, subject: str) -> str:
        """The functional grid of a subject: spatial's T1w-aligned reference, else the GLM
        mask the visual ROI comes from (same grid as every GLM output)."""
        return self.func_grid(subject) or self.visual_glm(subject)["mask"]

    def roi_brain_mask(self, subject: str) -> str:
        """Brain mask on the functional grid (d' outside = brain - ROI): spatial's, else the
        GLM mask of the visual ROI's source."""
        return self.func_brain_mask(subject) or self.visual_glm(subject)["mask"]

    def roi_res(self, subject: str) -> str:
        """res label of the subject's ROI masks: rois.res, else the functional voxel size
        (spatial.voxel_size for a T1w-aligned grid when set, else the raw BOLD's)."""
        if self.config["rois"]["res"]:
            return self.config["rois"]["res"]
        size = self.config["spatial"]["voxel_size"] if self.func_grid(subject) else None
        if size is None:
            import nibabel
            from nibabel.spatialimages import SpatialImage

            run = self.dataset.first_run(subject)
            bold = cast(SpatialImage, nibabel.load(run.echoes[0].mag))  # NIfTI (discovery)
            size = bold.header.get_zooms()[:3]
        return res_label(size)

    def user_rois(self, subject: str) -> dict[tuple[str, str], Any]:
        """The user ROI files of a subject (rois.dir), by (category, label)."""
        try:
            found = find_roi_files(self.config["rois"]["dir"], subject)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        return {(f.category, f.label): f for f in found}

    def roi_mask_path(
        self,
        subject: str = "{subject}",
        category: str = "{roi_category}",
        label: str = "{roi_label}",
        res: str = "{roi_res}",
    ) -> str:
        """A ROI mask on the functional grid, as a pattern or for a subject and ROI."""
        o = reg.get("rois.mask")
        key = o.subject_key(subject, category=category)
        return str(o.path(self.out, key, space=self.space(), res=res, label=label))

    def roi_mask_outputs(self, visual: bool = False) -> Files:
        """The outputs (mask and sidecar) of the roi_mask / roi_visual rule."""
        path = (
            self.roi_mask_path(category=VISUAL_CATEGORY, label=VISUAL_LABEL)
            if visual
            else self.roi_mask_path()
        )
        files = reg.with_sidecars({"mask": path}, {"mask": reg.get("rois.mask")})
        return {"mask": files["mask"], "json": files["mask_json"]}

    def roi_masks(self, subject: str) -> list[str]:
        """Every ROI mask of a subject on its functional grid (visual ROI first)."""
        res = self.roi_res(subject)
        masks = [self.roi_mask_path(subject, VISUAL_CATEGORY, VISUAL_LABEL, res)]
        for category, label in self.user_rois(subject):
            masks.append(self.roi_mask_path(subject, category, label, res))
        return masks

    def visual_roi(self, subject: str) -> str:
        return self.roi_masks(subject)[0]

    def _user_roi_inputs(self, wc: Any) -> Files:
        found = self.user_rois(wc.subject).get((wc.roi_category, wc.roi_label))
        if found is None:
            raise PlanError(
                f"no ROI {wc.roi_category}/{wc.roi_label} for sub-{wc.subject} in rois.dir "
                f"({self.config['rois']['dir']})"
            )
        files = {"mask": str(found.path), "reference": self.roi_grid(wc.subject)}
        if found.space != "T1w":
            files["xfm"] = self.anat_outputs(wc.subject)["xfm_from_template"]
        return files

    def _user_roi_params(self, wc: Any, input: Any) -> str:
        found = self.user_rois(wc.subject)[(wc.roi_category, wc.roi_label)]
        args = ["--space", found.space, "--category", wc.roi_category]
        args += ["--grid-space", self.space() or "native"]
        if "xfm" in input.keys():
            args += ["--xfm-from-template", input.xfm]
        return _words(args)

    def _visual_roi_inputs(self, wc: Any) -> Files:
        glm = self.visual_glm(wc.subject)
        files = {k: glm[k] for k in ("betas", "trials", "summary", "onoff_r2")}
        nordic, combine, session = self.visual_source(wc.subject)
        if self.config["rois"]["visual"]["method"] != "blank_trials":
            # the run-level test needs least-squares betas (type D's ridge and autoscale
            # offset make the runs look alike): the type-B betas of the source
            files["betas"] = self.reference_outputs(nordic, combine, wc.subject, session)[
                "betas_typeb"
            ]
        files["mask"] = self.roi_brain_mask(wc.subject)
        # the ROI lies inside the analysis mask of its source session
        files["analysis"] = self.analysis_mask(wc.subject, session)
        return files

    def roi_table_path(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The ROI table (and sidecar) of a session and variant, as patterns or for one."""
        key = self._session_key(subject, session)
        files = self._paths({"tsv": reg.get("rois.table")}, key, nordic=nordic, combine=combine)
        return {"tsv": files["tsv"], "json": files["tsv_json"]}

    def _roi_table_inputs(self, wc: Any) -> dict[str, Any]:
        sub, ses = self.session_of(wc)
        return {
            "nc": self.nc_session_outputs(wc.nordic, wc.combine, sub, ses)["nc"],
            "r2": self.glm_outputs(wc.nordic, wc.combine, sub, ses)["r2"],
            "masks": self.roi_masks(sub),
        }

    def roi_targets(self) -> list[str]:
        """ROI masks of every subject and the ROI table of every fitted session and variant."""
        if not self.rois_enabled():
            return []
        targets = []
        for sub in self.dataset.subjects():
            targets.extend(self.roi_masks(sub))
        for variant, pairs in self.glm_variant_sessions().items():
            nordic, combine = Variant(variant).parts()
            for sub, ses in pairs:
                targets.extend(self.roi_table_path(nordic, combine, sub, ses).values())
        return targets

    # -----------------------------------------------------------------------------------------
    # comparison, diagnostics, reports (report.smk)

    def comparison_paths(self) -> Files:
        """The group comparison outputs (tsv, png, svg, json)."""
        key = reg.group_key(self.task())
        return {
            n: str(o.path(self.out, key))
            for n, o in reg.stage_outputs("comparison").items()
            if o.level == "group"
        }

    def comparison_subject_paths(self, subject: str = "{subject}") -> Files:
        """One subject's comparison table and bootstrap replicates."""
        outs = reg.stage_outputs("comparison")
        return {
            "tsv": str(
                outs["subject_table"].path(
                    self.out, outs["subject_table"].subject_key(subject, self.task())
                )
            ),
            "bootstrap": str(
                outs["subject_bootstrap"].path(
                    self.out, outs["subject_bootstrap"].subject_key(subject, self.task())
                )
            ),
        }

    def comparison_entries(self, subject: str | None = None) -> list[dict[str, Any]]:
        """One dict per comparison session and variant (of one subject when given): its NC map,
        visual ROI, brain mask, fit mask, betas and trials, and its held-out fits (sessions of
        at least 2 runs)."""
        entries = []
        fitted = self.glm_variant_sessions()
        for sub in [subject] if subject else self.dataset.subjects():
            split = set(self.heldout_sessions(sub))
            for ses in self.comparison_sessions(sub):
                for variant in self.glm_variants():
                    if (sub, ses) not in fitted.get(variant, []):
                        continue
                    nordic, combine = Variant(variant).parts()
                    glm = self.glm_outputs(nordic, combine, sub, ses)
                    heldout = (
                        self.heldout_outputs(nordic, combine, sub, ses) if ses in split else {}
                    )
                    entries.append(
                        {
                            "subject": sub,
                            "session": ses or "n/a",
                            "variant": variant,
                            "nc": self.nc_session_outputs(nordic, combine, sub, ses)["nc"],
                            "roi": self.visual_roi(sub),
                            "brain": self.roi_brain_mask(sub),
                            "mask": glm["mask"],
                            "betas": glm["betas"],
                            "trials": glm["trials"],
                            "heldout": heldout.get("means"),
                            "heldout_volumes": heldout.get("volumes"),
                        }
                    )
        return entries

    def comparison_subjects(self) -> list[str]:
        """Subjects with at least one comparison session that the GLM fits."""
        return [sub for sub in self.dataset.subjects() if self.comparison_entries(sub)]

    def _comparison_subject_inputs(self, wc: Any) -> dict[str, list[str]]:
        entries = self.comparison_entries(wc.subject)
        keys = ("nc", "roi", "brain", "mask", "betas", "trials", "heldout", "heldout_volumes")
        return {k: sorted({str(e[k]) for e in entries if e[k]}) for k in keys}

    def _comparison_subject_args(self, wc: Any) -> str:
        """``--entry key=value ...`` per comparison entry of the subject."""
        entries = self.comparison_entries(wc.subject)
        return _words([w for e in entries for w in ("--entry", *entry_words(e))])

    def _comparison_inputs(self, wc: Any) -> dict[str, list[str]]:
        subjects = self.comparison_subjects()
        return {
            "tables": [self.comparison_subject_paths(s)["tsv"] for s in subjects],
            "bootstraps": [self.comparison_subject_paths(s)["bootstrap"] for s in subjects],
        }

    def diagnostics_pairs(self, subject: str) -> list[tuple[str | None, str]]:
        """(session, combine) of the subject's comparison sessions where both the NORDIC-off
        and the NORDIC-on GLM of that echo handling are fitted (empty: no diagnostics)."""
        if "nordic" not in self.nordic_variants or not self.rois_enabled():
            return []
        fitted = self.glm_variant_sessions()
        return [
            (ses, combine)
            for ses in self.comparison_sessions(subject)
            for combine in self.config["variants"]["combine"]
            if all(
                (subject, ses) in fitted.get(Variant.of(n, combine), [])
                for n in self.nordic_variants
            )
        ]

    def diagnostics_outputs(self, subject: str = "{subject}") -> Files:
        """The NORDIC diagnostics table of a subject (and its sidecar)."""
        o = reg.get("diagnostics.tsv")
        files = self._paths({"tsv": o}, o.subject_key(subject, self.task()))
        return {"tsv": files["tsv"], "json": files["tsv_json"]}

    def _diagnostics_items(self, subject: str) -> tuple[list, list, list]:
        """(tsnr, glm, nordic_json) argument tuples of a subject's diagnostics."""
        tsnr, glm, sidecars = [], [], []
        pairs = self.diagnostics_pairs(subject)
        for ses, combine in pairs:
            label = ses or "n/a"
            for run in self.dataset.runs_of(subject, ses):
                raw, nordic = (
                    self.combine_outputs(combine, run, n)["bold"] for n in self.nordic_variants
                )
                tsnr.append((label, combine, raw, nordic))
            for n in self.nordic_variants:
                g = self.glm_outputs(n, combine, subject, ses)
                glm.append((label, combine, n, g["betas"], g["trials"], g["mask"]))
        for ses in sorted({s for s, _ in pairs}, key=lambda s: s or ""):
            for run in self.dataset.runs_of(subject, ses):
                for e in run.echoes:
                    sidecars.append(
                        (ses or "n/a", self.nordic_outputs(run, str(e.echo))["bold_json"])
                    )
        return tsnr, glm, sidecars

    def _diagnostics_inputs(self, wc: Any) -> dict[str, Any]:
        """Echo-handling outputs with NORDIC off and on, their GLM fits, the NORDIC sidecars
        and the subject's visual ROI and brain mask."""
        tsnr, glm, sidecars = self._diagnostics_items(wc.subject)
        return {
            "roi": self.visual_roi(wc.subject),
            "brain": self.roi_brain_mask(wc.subject),
            "bold": [p for item in tsnr for p in item[2:]],
            "glm": [p for item in glm for p in item[3:]],
            "nordic_json": [item[1] for item in sidecars],
        }

    def _diagnostics_args(self, wc: Any, input: Any) -> str:
        """``--tsnr``, ``--glm`` and ``--nordic-json`` arguments of the subject's diagnostics."""
        tsnr, glm, sidecars = self._diagnostics_items(wc.subject)
        args: list[Any] = [w for t in tsnr for w in ("--tsnr", *t)]
        args += [w for g in glm for w in ("--glm", *g)]
        args += [w for j in sidecars for w in ("--nordic-json", *j)]
        return _words(args)

    def report_session(self, subject: str) -> str | None:
        return (self.comparison_sessions(subject) or self.dataset.sessions(subject))[0]

    def report_path(self, subject: str = "{subject}") -> str:
        """A subject's HTML report."""
        return str(reg.get("report.html").path(self.out, reg.group_key(), subject=subject))

    def _report_variants(self, subject: str) -> tuple[list[str], str | None]:
        """The variants the report shows for the subject's report session, and the one whose
        R² map it shows (NORDIC optcom when fitted, LAION-fMRI's choice)."""
        ses = self.report_session(subject)
        fitted = self.glm_variant_sessions()
        shown = [v for v in self.glm_variants() if (subject, ses) in fitted.get(v, [])]
        top = ("nordic-optcom" if "nordic-optcom" in shown else shown[-1]) if shown else None
        return shown, top

    def _report_inputs(self, wc: Any) -> dict[str, Any]:
        """Every input the subject's report shows that this config produces."""
        sub = wc.subject
        ses = self.report_session(sub)
        runs = self.dataset.runs_of(sub, ses)
        combines = self.config["variants"]["combine"]
        files: dict[str, Any] = {}
        if "nordic" in self.nordic_variants:
            shown = "single" if "single" in combines else combines[0]
            files["bold_raw"] = self.combine_outputs(shown, runs[0], "raw")["bold"]
            files["bold_nordic"] = self.combine_outputs(shown, runs[0], "nordic")["bold"]
        if "optcom" in combines:
            files["t2star"] = self.combine_outputs("optcom", runs[0], self.nordic_variants[-1])[
                "t2star"
            ]
        if self.config["spatial"]["enabled"]:  # motion is estimated for T1w and native output
            files["confounds"] = [self.spatial_run_outputs(r)["confounds"] for r in runs]
            geometry = self.spatial_run_outputs(runs[0])
            files["sdc_run"] = [
                str(self._spatial_reference_echo(runs[0]).mag),
                geometry["boldref"],
                geometry["xfm"],
            ]
        grid = self.func_grid(sub)
        if grid:
            files["underlay"] = (
                self.anat_outputs(sub)["preproc"] if sub in self.dataset.t1w else grid
            )
        shown, top = self._report_variants(sub)
        if top is not None:  # some variant is shown
            nordic, combine = Variant(top).parts()
            files["r2"] = self.glm_outputs(nordic, combine, sub, ses)["r2"]
            pairs = [Variant(v).parts() for v in shown]
            files["nc"] = [self.nc_session_outputs(n, c, sub, ses)["nc"] for n, c in pairs]
            files["roi_tables"] = [self.roi_table_path(n, c, sub, ses)["tsv"] for n, c in pairs]
            # the subject's own comparison (a new subject must not rerun the others' reports)
            if self.comparison_entries(sub):
                own = self.comparison_subject_paths(sub)
                files["comparison_table"] = own["tsv"]
                files["comparison_bootstrap"] = own["bootstrap"]
        if self.diagnostics_pairs(sub):
            files["diagnostics"] = self.diagnostics_outputs(sub)["tsv"]
        return files

    def _report_args(self, wc: Any, input: Any) -> str:
        """Command-line arguments for the report inputs present."""
        sub = wc.subject
        ses = self.report_session(sub)
        shown, top = self._report_variants(sub)
        keys = input.keys()
        args: list[Any] = ["--subject", sub] + (["--session", ses] if ses else [])
        for key, flag in (
            ("bold_raw", "--bold-raw"),
            ("bold_nordic", "--bold-nordic"),
            ("t2star", "--t2star"),
            ("underlay", "--underlay"),
            ("r2", "--r2"),
        ):
            if key in keys:
                args += [flag, input[key]]
        if "underlay" in keys:
            args += [
                "--underlay-kind",
                "T1w" if sub in self.dataset.t1w else "functional reference",
            ]
        if "confounds" in keys:
            args += ["--confounds", *input.confounds]
        if "sdc_run" in keys:
            args += ["--sdc-run", *input.sdc_run]
        if "r2" in keys:
            args += ["--r2-variant", top]
        if "nc" in keys:
            args += ["--nc", *(f"{v}={p}" for v, p in zip(shown, input.nc, strict=True))]
            args += [
                "--roi-table",
                *(f"{v}={p}" for v, p in zip(shown, input.roi_tables, strict=True)),
            ]
        if "comparison_table" in keys:
            args += ["--comparison-table", input.comparison_table]
            args += ["--comparison-bootstrap", input.comparison_bootstrap]
            args += ["--rank-by", self.config["comparison"]["rank_by"]]
        if "diagnostics" in keys:
            args += ["--diagnostics", input.diagnostics]
        return _words(args)

    def report_targets(self) -> list[str]:
        """The comparison outputs and one HTML report per subject, with the diagnostics."""
        if not self.config["report"]["enabled"]:
            return []
        targets = [self.report_path(sub) for sub in self.dataset.subjects()]
        for sub in self.dataset.subjects():
            if self.diagnostics_pairs(sub):
                targets.extend(self.diagnostics_outputs(sub).values())
        if self.rois_enabled() and self.comparison_entries():
            targets.extend(self.comparison_paths().values())
        return targets

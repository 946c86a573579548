"""Per-session jobs: which GLMs are fitted, their outputs, the analysis mask, the held-out
fits of the comparison and the noise ceilings."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.events import mixed_repeat_counts, stimulus_counts
from echoprep.plan._base import Files, PlanError, _strip_label, _words
from echoprep.plan.chains import ChainPlan
from echoprep.variants import ALL_VARIANTS, Variant


class SessionPlan(ChainPlan):
    """The per-session level of :class:`echoprep.plan.Plan`, on the per-run level."""

    # -----------------------------------------------------------------------------------------
    # which GLMs are fitted (glm.smk)

    def glm_variants(self) -> list[str]:
        """The variants this config produces (NORDIC side enabled, echo handling configured)."""
        combines = self.config["variants"]["combine"]
        return [
            v for v in ALL_VARIANTS if v.nordic in self.nordic_variants and v.combine in combines
        ]

    def comparison_sessions(self, subject: str) -> list[str | None]:
        """Sessions of a subject in the 2x3 comparison: comparison.sessions (labels, with or
        without "ses-") that the subject has; empty = its first session."""
        wanted = [_strip_label(s, "ses") for s in self.config["comparison"]["sessions"] or []]
        sessions = self.dataset.sessions(subject)
        if not wanted:
            return sessions[:1]
        return [s for s in sessions if s in wanted]

    @cached_property
    def _variant_sessions(self) -> dict[str, list[tuple[str, str | None]]]:
        everywhere = set(self.config["glm"]["all_sessions_variants"])
        out = {}
        for variant in self.glm_variants():
            pairs = []
            for sub in self.dataset.subjects():
                chosen = self.comparison_sessions(sub)
                for ses in self.dataset.sessions(sub):
                    if variant in everywhere or ses in chosen:
                        pairs.append((sub, ses))
            if pairs:
                out[variant] = pairs
        return out

    def glm_variant_sessions(self) -> dict[str, list[tuple[str, str | None]]]:
        """Variant -> (subject, session) pairs that get a GLMsingle fit: every variant for the
        comparison sessions, glm.all_sessions_variants for every session."""
        return self._variant_sessions

    def sessions_warning(self) -> str | None:
        """Why sessions outside the comparison get no echo handling and no GLM (with
        ``variants.sessions: fitted``, when glm.all_sessions_variants names no variant this
        config produces, e.g. NORDIC off with the default nordic-optcom), or None."""
        if self.config["variants"]["sessions"] == "all":
            return None
        produced = self.glm_variants()
        everywhere = list(self.config["glm"]["all_sessions_variants"])
        if any(v in produced for v in everywhere):
            return None
        others = [
            f"sub-{sub}_ses-{ses}"
            for sub in self.dataset.subjects()
            for ses in self.dataset.sessions(sub)
            if ses not in self.comparison_sessions(sub)
        ]
        if not others:
            return None
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return (
            f"glm.all_sessions_variants: none of {everywhere} is produced by this config "
            f"({', '.join(produced) or 'no variant'}), so the {len(others)} session(s) outside "
            f"the comparison ({shown}) get head motion and distortion only: no echo handling, "
            "GLM or noise ceiling. Fix: add a produced variant to glm.all_sessions_variants "
            "(e.g. raw-optcom), or set variants.sessions: all to make every variant of every "
            "run without fitting it."
        )

    def session_variants(self, subject: str, session: str | None) -> list[str]:
        """The variants fitted for a (subject, session), in glm_variants() order."""
        return self._variants_by_session.get((subject, session), [])

    @cached_property
    def _variants_by_session(self) -> dict[tuple[str, str | None], list[str]]:
        out: dict[tuple[str, str | None], list[str]] = {}
        for v, pairs in self.glm_variant_sessions().items():
            for pair in pairs:
                out.setdefault(pair, []).append(v)
        return out

    @cached_property
    def _sessions_by_stem(self) -> dict[str, tuple[str, str | None]]:
        return {
            reg.session_key(sub, ses, self.task())[1]: (sub, ses)
            for sub in self.dataset.subjects()
            for ses in self.dataset.sessions(sub)
        }

    def session_of(self, wc: Any) -> tuple[str, str | None]:
        """(subject, session) of a session-level job."""
        return self._sessions_by_stem[wc.ses_prefix]

    def session_runs(self, wc: Any) -> list[Run]:
        """The runs a session's GLM fits: every run with a trial to model (discovery warned
        about the others, which are preprocessed all the same)."""
        return self.session_runs_of(*self.session_of(wc))

    def _session_key(self, subject: str | None, session: str | None) -> tuple[str, str]:
        return reg.session_key(subject, session, self.task())

    def subject_of(self, wc: Any) -> str:
        """Subject of a subject-level GLM job (from ``sub_prefix``)."""
        return _strip_label(wc.sub_prefix.split("_")[0], "sub")

    # -----------------------------------------------------------------------------------------
    # GLM outputs, analysis mask, reference, noise ceilings (glm.smk)

    def glm_outputs(
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
        key = self._session_key(subject, session)
        return self._paths({k: outs[k] for k in keys}, key, nordic=nordic, combine=combine)

    def _glm_out_args(self, wc: Any, output: Any) -> str:
        """``KEY=PATH`` words of the glm rule's ``--out`` (no sidecars: the stage writes them)."""
        return _words(f"{k}={v}" for k, v in output.items() if not k.endswith("_json"))

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
        key = self._session_key(subject, session)
        return self._paths(outs, key, nordic=nordic, combine=combine)

    def analysis_mask(self, subject: str | None = None, session: str | None = None) -> str:
        """The analysis mask of a session (brain voxels with valid data in every run of every
        variant fitted there), as a pattern or for a session. Per session, not per subject: a
        new session leaves the masks (and fits) of the others alone."""
        return self._file("glm_mask.mask", self._session_key(subject, session))

    def _analysis_mask_outputs(self) -> Files:
        return self._files("glm_mask", self._session_key(None, None))

    def _glm_inputs(self, wc: Any) -> dict[str, Any]:
        """The session's preprocessed BOLD (one per run), events and its analysis mask."""
        runs = self.session_runs(wc)
        sub, ses = self.session_of(wc)
        return {
            "bold": [self.combine_outputs(wc.combine, r, wc.nordic)["bold"] for r in runs],
            "events": [str(r.events) for r in runs],
            "mask": self.analysis_mask(sub, ses),
        }

    def _analysis_mask_inputs(self, wc: Any) -> dict[str, Any]:
        """Every fitted variant's echo-handling output of every run of the session, and the
        brain mask when spatial preprocessing provides one."""
        sub, ses = self.session_of(wc)
        runs = self.dataset.runs_of(sub, ses)
        files: dict[str, Any] = {}
        for variant in self.session_variants(sub, ses):
            nordic, combine = Variant(variant).parts()
            files[variant] = [self.combine_outputs(combine, r, nordic)["bold"] for r in runs]
        brain = self.func_brain_mask(sub)
        if brain:
            files["brain"] = brain
        return files

    def _run_labels(self, runs: list[Run]) -> list[str]:
        return [r.run or str(i + 1) for i, r in enumerate(runs)]

    def _analysis_mask_params(self, wc: Any, input: Any) -> str:
        """``--bold VARIANT RUN...`` per variant, run labels, brain mask and space."""
        sub, ses = self.session_of(wc)
        args: list[Any] = []
        for variant in self.session_variants(sub, ses):
            args += ["--bold", variant, *input[variant]]
        args += ["--run-labels", *self._run_labels(self.dataset.runs_of(sub, ses))]
        if "brain" in input.keys():
            args += ["--brain-mask", input.brain]
        if self.space():
            args += ["--space", self.space()]
        return _words(args)

    def _glm_params(self, wc: Any, input: Any) -> str:
        """Command-line arguments of the glm rules that depend on the session."""
        _, ses = self.session_of(wc)
        args = ["--run-labels", *self._run_labels(self.session_runs(wc))]
        if ses:
            args += ["--session", ses]
        if "mask" in input.keys():
            args += ["--mask", input.mask]
        space = self.space()
        if space:
            args += ["--space", space]
        return _words(args)

    def reference_note(self) -> str | None:
        """A note when the config sets comparison.reference, which is no longer used (every
        variant is judged against the others), or None."""
        given = self.config["comparison"].get("reference")
        if not given:
            return None
        return (
            f"comparison.reference: {given!r} is no longer used: the held-out measures judge "
            "every variant against every other variant, never against itself "
            "(docs/comparison.md). Fix: remove comparison.reference from your config."
        )

    def heldout_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The held-out image means (each half of the runs fitted apart) and their volume
        table, with sidecars, as patterns or for a session."""
        key = self._session_key(subject, session)
        return self._files("heldout", key, nordic=nordic, combine=combine)

    def _heldout_params(self, wc: Any, input: Any) -> str:
        """The glm rule's session arguments and ``--splits``."""
        splits = int(self.config["comparison"]["splits"])
        return f"{self._glm_params(wc, input)} --splits {splits}"

    def heldout_sessions(self, subject: str) -> list[str | None]:
        """The subject's comparison sessions with at least 2 runs to fit apart (a session of
        one run has no held-out fidelity: the comparison says so)."""
        fitted = self.glm_variant_sessions()
        return [
            ses
            for ses in self.comparison_sessions(subject)
            if len(self.session_runs_of(subject, ses)) >= 2
            and any((subject, ses) in pairs for pairs in fitted.values())
        ]

    def session_runs_of(self, subject: str, session: str | None) -> list[Run]:
        """The runs a session's GLM fits (:meth:`session_runs` by labels)."""
        return [r for r in self.dataset.runs_of(subject, session) if r.n_trials != 0]

    def heldout_targets(self) -> list[str]:
        """The held-out fits of every variant of every comparison session (none when the
        report, and with it the comparison, is off)."""
        if not self.config["report"]["enabled"]:
            return []
        fitted = self.glm_variant_sessions()
        targets: list[str] = []
        for sub in self.dataset.subjects():
            for ses in self.heldout_sessions(sub):
                for variant in self.glm_variants():
                    if (sub, ses) in fitted.get(variant, []):
                        nordic, combine = Variant(variant).parts()
                        outs = self.heldout_outputs(nordic, combine, sub, ses)
                        targets.extend(outs.values())
        return targets

    def nc_session_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The session noise-ceiling map (and sidecar), as a pattern or for a session."""
        outs = {"nc": reg.get("noiseceiling.nc")}
        key = self._session_key(subject, session)
        return self._paths(outs, key, nordic=nordic, combine=combine)

    def _subject_glm_key(self, subject: str | None) -> tuple[str, str]:
        if subject is None:
            return "{sub_dir}", "{sub_prefix}"
        return reg.subject_key(subject, self.task())

    def nc_subject_outputs(
        self, nordic: str = "{nordic}", combine: str = "{combine}", subject: str | None = None
    ) -> Files:
        """A subject's cross-session maps (allrep, r2mean, ncsnr), as patterns or for one."""
        outs = {n: reg.get(f"noiseceiling.{n}") for n in ("allrep", "r2mean", "ncsnr")}
        key = self._subject_glm_key(subject)
        return self._paths(outs, key, nordic=nordic, combine=combine)

    def nc_repeats_output(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        n: Any = "{nrep}",
    ) -> Files:
        """The ceiling map for an average of n repeats (and sidecar) of a subject."""
        outs = {"nc": reg.get("noiseceiling.nrep")}
        nrep = n if n == "{nrep}" else int(n)
        key = self._subject_glm_key(subject)
        return self._paths(outs, key, nordic=nordic, combine=combine, nrep=nrep)

    def _nc_subject_inputs(self, wc: Any) -> dict[str, list[str]]:
        """Betas, trials, masks and R² of every session of the subject for the variant."""
        sub = self.subject_of(wc)
        outs = [
            self.glm_outputs(wc.nordic, wc.combine, sub, ses) for ses in self.dataset.sessions(sub)
        ]
        return {k: [o[k] for o in outs] for k in ("betas", "trials", "mask", "r2")}

    def _space_args(self, wc: Any = None) -> str:
        """``--space <label>`` when the functional grid has a space, else nothing."""
        return _words(["--space", self.space()]) if self.space() else ""

    @cached_property
    def _repeat_counts(self) -> dict[str, list[int]]:
        return {}

    def subject_repeat_counts(self, subject: str) -> list[int]:
        """Distinct repeat counts (>= 2) of the subject's stimuli over its sessions, when they
        are mixed (else []). Reads every events file of the subject once per plan."""
        if subject not in self._repeat_counts:
            self._repeat_counts[subject] = self._read_repeat_counts(subject)
        return self._repeat_counts[subject]

    def _read_repeat_counts(self, subject: str) -> list[int]:
        events = [r.events for r in self.dataset.subject_runs(subject) if r.events]
        try:
            counts = stimulus_counts(
                events,
                label_column=self.config["glm"]["label_column"] or self.dataset.label_column,
                blank_trial_types=self.config["glm"]["blank_trial_types"],
            )
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        return mixed_repeat_counts(counts)

    def glm_targets(self) -> list[str]:
        """Every GLMsingle output and noise-ceiling map the config asks for, the analysis masks
        of the fitted sessions and the comparison's held-out fits."""
        targets: list[str] = []
        everywhere = set(self.config["glm"]["all_sessions_variants"])
        fitted = sorted(
            {p for pairs in self.glm_variant_sessions().values() for p in pairs}, key=str
        )
        for sub, ses in fitted:
            targets.extend(self._files("glm_mask", self._session_key(sub, ses)).values())
        targets.extend(self.heldout_targets())
        for variant, pairs in self.glm_variant_sessions().items():
            nordic, combine = Variant(variant).parts()
            for sub, ses in pairs:
                targets.extend(self.glm_outputs(nordic, combine, sub, ses).values())
                targets.extend(self.nc_session_outputs(nordic, combine, sub, ses).values())
            if variant not in everywhere:
                continue
            for sub in sorted({s for s, _ in pairs}):
                targets.extend(self.nc_subject_outputs(nordic, combine, sub).values())
                for n in self.subject_repeat_counts(sub):
                    targets.extend(self.nc_repeats_output(nordic, combine, sub, n).values())
        return targets

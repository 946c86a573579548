"""Which variants each session fits: the decisions every family downstream of the echoes reads.

A variant (``raw-single`` ... ``nordic-denoised``, :mod:`echoprep.variants`) is fitted for
every session when it is in ``glm.all_sessions_variants``, else only for the subject's
comparison sessions (``comparison.sessions``; empty: its first two sessions, so that each can
take its planted responses from the other; docs/comparison.md).
"""

from __future__ import annotations

from functools import cached_property

from echoprep.io.bids_checks import fmt_list
from echoprep.plan.context import PlanContext, strip_label
from echoprep.variants import ALL_VARIANTS

Pairs = list[tuple[str, str | None]]


class FittedVariants:
    """The variants of the config and the sessions that fit each (module docstring)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.dataset = ctx.dataset

    def glm_variants(self) -> list[str]:
        """The variants this config produces (NORDIC side enabled, echo handling configured)."""
        combines = self.config["variants"]["combine"]
        return [
            v
            for v in ALL_VARIANTS
            if v.nordic in self.ctx.nordic_variants and v.combine in combines
        ]

    def comparison_sessions(self, subject: str) -> list[str | None]:
        """Sessions of a subject in the 2x3 comparison: comparison.sessions (labels, with or
        without "ses-") that the subject has; empty = its first two sessions (its only one
        where it has one)."""
        wanted = [strip_label(s, "ses") for s in self.config["comparison"]["sessions"] or []]
        sessions = self.dataset.sessions(subject)
        if not wanted:
            return sessions[:2]
        return [s for s in sessions if s in wanted]

    @cached_property
    def _variant_sessions(self) -> dict[str, Pairs]:
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

    def glm_variant_sessions(self) -> dict[str, Pairs]:
        """Variant -> (subject, session) pairs that get a GLMsingle fit: every variant for the
        comparison sessions, glm.all_sessions_variants for every session."""
        return self._variant_sessions

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

    def heldout_sessions(self, subject: str) -> list[str | None]:
        """The subject's comparison sessions with at least 2 runs to fit apart (a session of
        one run has no held-out fidelity: the comparison says so)."""
        fitted = self.glm_variant_sessions()
        return [
            ses
            for ses in self.comparison_sessions(subject)
            if len(self.ctx.session_runs_of(subject, ses)) >= 2
            and any((subject, ses) in pairs for pairs in fitted.values())
        ]

    def report_session(self, subject: str) -> str | None:
        """The session a subject's report and comparison memory are sized on: its first
        comparison session, else its first session."""
        return (self.comparison_sessions(subject) or self.dataset.sessions(subject))[0]

    def rois_enabled(self) -> bool:
        """ROIs, ROI tables and the comparison need the GLM and noise-ceiling stages."""
        return bool(self.glm_variant_sessions())

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
        shown = fmt_list(others, 3)
        return (
            f"glm.all_sessions_variants: none of {everywhere} is produced by this config "
            f"({', '.join(produced) or 'no variant'}), so the {len(others)} session(s) outside "
            f"the comparison ({shown}) get head motion and distortion only: no echo handling, "
            "GLM or noise ceiling. Fix: add a produced variant to glm.all_sessions_variants "
            "(e.g. raw-optcom), or set variants.sessions: all to make every variant of every "
            "run without fitting it."
        )


__all__ = ["FittedVariants", "Pairs"]

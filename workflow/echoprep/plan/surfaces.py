"""Which subjects get surface outputs, from which FreeSurfer folder, on which template
(config ``surface``; docs/surface.md).

A subject gets surface outputs when ``surface.enabled``, the functional grid is aligned to the
T1w (``spatial.output_space: T1w``) and a FreeSurfer subject is found for it
(:func:`echoprep.io.freesurfer.freesurfer_roots`). A subject without one simply gets none; a
folder with missing or inconsistent files is a plan error naming the files and the fix. The
template (``surface.fsaverage``) is looked for in the subjects folders and
``$FREESURFER_HOME/subjects``; when it is not found, nilearn's packaged fsaverage5 serves
(``space-fsaverage5``), and the plan line says so. Only the folders' existence and the
surfaces' headers are read, once per plan, when a target or the line is first asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from echoprep.io.freesurfer import (
    HEMIS,
    FreeSurferError,
    FreeSurferSubject,
    check_subject,
    find_fsaverage,
    find_subject_folder,
    freesurfer_roots,
    nilearn_fsaverage5,
)
from echoprep.plan.context import PlanContext, PlanError

#: The template nilearn ships (offline): the fallback when the configured one is not found.
PACKAGED_TEMPLATE = "fsaverage5"


@dataclass(frozen=True)
class Template:
    """The template the fsnative maps are resampled to: its space label and its sphere per
    hemisphere (``L``/``R``), and where it was found."""

    space: str
    spheres: dict[str, str]
    source: str


class Surfaces:
    """The surface decisions of one plan (module docstring)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self.options = ctx.config["surface"]

    def requested(self) -> bool:
        """``surface.enabled`` and a T1w-aligned functional grid."""
        return bool(self.options["enabled"]) and self.ctx.space() == "T1w"

    def roots(self) -> list[Path]:
        """The subjects folders searched."""
        return freesurfer_roots(self.ctx.config["bids_dir"], self.options["freesurfer_dir"])

    @cached_property
    def subjects(self) -> dict[str, FreeSurferSubject]:
        """The FreeSurfer subject of every participant that has one (none unless
        :meth:`requested`).

        Raises
        ------
        PlanError
            Every problem of every folder found, at once.
        """
        if not self.requested():
            return {}
        roots = self.roots()
        found: dict[str, FreeSurferSubject] = {}
        problems: list[str] = []
        for subject in self.ctx.dataset.subjects():
            place = find_subject_folder(subject, roots)
            if place is None:
                continue
            try:
                found[subject] = check_subject(subject, *place)
            except FreeSurferError as exc:
                problems.append(str(exc))
        if problems:
            raise PlanError("\n".join(problems))
        return found

    def has(self, subject: str) -> bool:
        """The subject gets surface outputs."""
        return subject in self.subjects

    def subject_pattern(self) -> str | None:
        """A regular expression of the subjects with surfaces (None: no subject)."""
        labels = sorted(self.subjects)
        return "|".join(labels) if labels else None

    @cached_property
    def template(self) -> Template | None:
        """The template of the resampled maps, or None (``surface.fsaverage: null``)."""
        name = self.options["fsaverage"]
        if name is None or not self.subjects:
            return None
        roots = [s.root for s in self.subjects.values()] + self.roots()
        folder = find_fsaverage(name, dict.fromkeys(roots), os.environ.get("FREESURFER_HOME"))
        if folder is not None:
            spheres = {h: str(folder / "surf" / f"{p}.sphere.reg") for h, p in HEMIS.items()}
            return Template(name, spheres, str(folder))
        spheres = {h: str(nilearn_fsaverage5("sphere", h)) for h in HEMIS}
        return Template(PACKAGED_TEMPLATE, spheres, "nilearn")

    def spaces(self) -> list[str]:
        """``fsnative`` and the template's space label, if any."""
        return ["fsnative", *([self.template.space] if self.template else [])]

    def summary(self) -> str | None:
        """The plan's line about the surfaces: who has them, from where, on which template;
        None when surfaces are off or no subject has a FreeSurfer folder and none was asked
        for by a configured folder."""
        if not self.options["enabled"]:
            return None
        subjects = self.ctx.dataset.subjects()
        if self.ctx.space() != "T1w":
            roots = self.roots()
            found = [s for s in subjects if find_subject_folder(s, roots) is not None]
            if not found:
                return None
            return (
                f"Surfaces: the FreeSurfer folders of {', '.join('sub-' + s for s in found)} are "
                "not used: surface outputs need the functional grid aligned to the T1w "
                "(spatial.enabled: true, spatial.output_space: T1w)."
            )
        if not self.subjects:
            if not self.options["freesurfer_dir"]:
                return None
            return (
                f"Surfaces: no FreeSurfer subject found in {self.options['freesurfer_dir']} for "
                f"{', '.join('sub-' + s for s in subjects)}; no surface outputs (expected "
                "<freesurfer_dir>/sub-<label>/ with mri/orig.mgz and surf/)."
            )
        lines = [f"Surfaces ({', '.join(self.spaces())}):"]
        for sub in subjects:
            fs = self.subjects.get(sub)
            if fs is None:
                lines.append(f"  sub-{sub}: no FreeSurfer folder: no surface outputs")
            else:
                counts = "/".join(str(fs.vertices[h]) for h in HEMIS)
                lines.append(f"  sub-{sub}: {fs.path} ({counts} vertices L/R)")
        template = self.template
        wanted = self.options["fsaverage"]
        if template is not None and template.space != wanted:
            lines.append(
                f"  {wanted} not found in the subjects folders or $FREESURFER_HOME/subjects: "
                f"resampled to nilearn's {PACKAGED_TEMPLATE} (space-{PACKAGED_TEMPLATE}). Fix: "
                f"put {wanted} (FreeSurfer's subjects/{wanted}) beside the subjects, or set "
                f"surface.fsaverage: {PACKAGED_TEMPLATE}."
            )
        return "\n".join(lines)


__all__ = ["PACKAGED_TEMPLATE", "Surfaces", "Template"]

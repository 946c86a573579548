"""Which runs and anatomical images get the gradient-nonlinearity correction
(``spatial.gradient_coefficients``).

An image is corrected when the config names a coefficient file for its scanner (its own
sidecar's ``ManufacturersModelName``, or ``"*"`` for any scanner) and its sidecar does not say
it was corrected on the scanner (``NonlinearGradientCorrection: true``, or ``ImageType``
holding ``DIS3D`` or ``DIS2D``: not corrected twice). For a run the sidecar is the BOLD one
next to its first echo; the subject's T1w and T2w are decided from their own sidecars
(:func:`choose_image`), so an anatomy from another scanner gets its own scanner's file. The
job of a corrected image gets ``{"coefficients", "patient_position"}`` (``--gradient-json``;
the geometry step of a run, :func:`echoprep.stages.spatial.run.run_geometry`, the anatomy
stage for the T1w, the spatial subject step for the T2w). docs/gradients.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoprep.io.bids import Run
from echoprep.io.bids_checks import fmt_list
from echoprep.io.paths import run_prefix, sidecar_path
from echoprep.plan.context import PlanContext, PlanError

#: Why a run is not corrected, as the plan line says it.
SCANNER_CORRECTED = "NonlinearGradientCorrection true (corrected on the scanner)"
#: ... when the sidecar's ``ImageType`` (the DICOM's, as dcm2niix copies it) says so: Siemens
#: marks an image distortion-corrected on the scanner ``DIS3D`` (in 3D) or ``DIS2D`` (in the
#: slice plane only: a correction here would apply the in-plane part twice), ``ND`` when not.
IMAGE_TYPE_CORRECTED = {
    "DIS3D": "ImageType DIS3D (corrected in 3D on the scanner)",
    "DIS2D": "ImageType DIS2D (corrected in-plane on the scanner; the through-plane part is left)",
}
NO_FILE = "no coefficient file for their scanner"


@dataclass(frozen=True)
class GradientChoice:
    """The decision for one run: ``coefficients`` (None: not corrected, ``reason`` says why)
    and the patient position of its BOLD sidecar (default HFS)."""

    coefficients: str | None
    patient_position: str = "HFS"
    reason: str = ""

    def spec(self) -> dict[str, str] | None:
        """The geometry step's ``gradient`` argument, or None."""
        if self.coefficients is None:
            return None
        return {"coefficients": self.coefficients, "patient_position": self.patient_position}


def image_metadata(image: str | Path) -> dict[str, Any]:
    """The JSON sidecar next to an image ({} when absent or unreadable; no BIDS inheritance)."""
    try:
        content = json.loads(Path(sidecar_path(image)).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def bold_metadata(run: Run) -> dict[str, Any]:
    """The JSON sidecar next to the run's first echo magnitude ({} when absent or unreadable)."""
    return image_metadata(run.echoes[0].mag)


def choose(files: Mapping[str, str], run: Run) -> GradientChoice:
    """The gradient correction of one run under ``spatial.gradient_coefficients``."""
    return choose_metadata(files, bold_metadata(run))


def choose_image(files: Mapping[str, str], image: str | Path) -> GradientChoice:
    """The gradient correction of one anatomical image (T1w, T2w), from its own sidecar."""
    return choose_metadata(files, image_metadata(image))


def choose_metadata(files: Mapping[str, str], meta: Mapping[str, Any]) -> GradientChoice:
    """The gradient correction of an image whose sidecar is ``meta``: skipped when the
    sidecar says ``NonlinearGradientCorrection: true`` or its ``ImageType`` holds ``DIS3D``
    or ``DIS2D`` (:data:`IMAGE_TYPE_CORRECTED`), else the file of its
    ``ManufacturersModelName`` or of ``"*"`` (none: skipped)."""
    position = str(meta.get("PatientPosition") or "HFS")
    if meta.get("NonlinearGradientCorrection") is True:
        return GradientChoice(None, position, SCANNER_CORRECTED)
    image_type = meta.get("ImageType")
    if isinstance(image_type, list):
        marks = {str(v).upper() for v in image_type}
        for mark, reason in IMAGE_TYPE_CORRECTED.items():
            if mark in marks:
                return GradientChoice(None, position, reason)
    model = meta.get("ManufacturersModelName")
    path = files.get(str(model)) if model is not None else None
    if path is None:
        path = files.get("*")
    if path is None:
        return GradientChoice(None, position, NO_FILE)
    return GradientChoice(str(path), position)


def check_files(files: Mapping[str, str]) -> str | None:
    """A message naming the key, the path and the fix for the first configured coefficient
    file that does not exist, or None."""
    for scanner, path in files.items():
        if not Path(path).is_file():
            return (
                f"spatial.gradient_coefficients[{scanner!r}]: expected a Siemens .grad "
                f"coefficient file; found no file at {path}. Fix: give the path of the coil's "
                f".grad file (docs/gradients.md), or remove the {scanner!r} entry to leave "
                "its runs uncorrected."
            )
    return None


def _skipped(names: Sequence[str], choices: Sequence[GradientChoice]) -> list[str]:
    """``"<n> skipped, <reason>: <first 3 names>[ and <k> more]"`` per reason."""
    skipped: dict[str, list[str]] = {}
    for name, c in zip(names, choices, strict=True):
        if c.coefficients is None:
            skipped.setdefault(c.reason, []).append(name)
    parts = []
    for reason, found in skipped.items():
        parts.append(f"{len(found)} skipped, {reason}: {fmt_list(found, 3)}")
    return parts


def summary(
    files: Mapping[str, str], runs: Sequence[Run], anatomy: Sequence[str | Path] = ()
) -> str:
    """The plan line: not corrected (no file configured), or how many runs are corrected and
    which are skipped and why, then the same for the anatomical images ``anatomy`` (the T1w
    and T2w files the workflow uses; none: nothing said of them)."""
    if not files:
        return "Gradient nonlinearity: not corrected (spatial.gradient_coefficients is empty)."
    choices = [choose(files, r) for r in runs]
    done = sum(c.coefficients is not None for c in choices)
    parts = [f"Gradient nonlinearity: {done} of {len(runs)} run(s) corrected"]
    parts += _skipped([run_prefix(r.entities) for r in runs], choices)
    if anatomy:
        images = [choose_image(files, a) for a in anatomy]
        done = sum(c.coefficients is not None for c in images)
        parts.append(f"{done} of {len(images)} anatomical image(s) corrected")
        names = [Path(a).name.split(".nii")[0] for a in anatomy]
        parts += _skipped(names, images)
    return "; ".join(parts) + "."


class Gradients:
    """The gradient-nonlinearity decisions of a config and dataset (module docstring)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx

    def files(self) -> Mapping[str, str]:
        """``spatial.gradient_coefficients`` ({} when empty).

        Raises
        ------
        PlanError
            A configured coefficient file does not exist (the key, the path and the fix).
        """
        files = self.ctx.config["spatial"].get("gradient_coefficients") or {}
        problem = check_files(files)
        if problem:
            raise PlanError(problem)
        return files

    def choice(self, run: Run) -> GradientChoice:
        """The gradient-nonlinearity correction of a run.

        Raises
        ------
        PlanError
            A configured coefficient file does not exist (the key, the path and the fix).
        """
        files = self.files()
        if not files:
            return GradientChoice(None, reason="spatial.gradient_coefficients is empty")
        return choose(files, run)

    def image_choice(self, image: str | Path) -> GradientChoice:
        """The gradient-nonlinearity correction of an anatomical image (the T1w, the T2w),
        decided from its own sidecar: an anatomy from another scanner gets that scanner's
        coefficient file.

        Raises
        ------
        PlanError
            A configured coefficient file does not exist.
        """
        files = self.files()
        if not files:
            return GradientChoice(None, reason="spatial.gradient_coefficients is empty")
        return choose_image(files, image)

    def anatomy_images(self) -> list[Path]:
        """The raw anatomical images the workflow uses, subject by subject: the T1w (the
        anatomy stage, with outputs in T1w space) and the T2w (the registration target; found
        only when ``spatial.registration_target`` uses it)."""
        if not self.ctx.space():
            return []
        dataset = self.ctx.dataset
        images = []
        for sub in dataset.subjects():
            images += [d[sub] for d in (dataset.t1w, dataset.t2w) if sub in d]
        return images

    def summary(self) -> str | None:
        """One line on the gradient-nonlinearity correction of the runs and the anatomical
        images (printed once, like the distortion line); None without spatial preprocessing.

        Raises
        ------
        PlanError
            A configured coefficient file does not exist.
        """
        if not self.ctx.config["spatial"]["enabled"]:
            return None
        return summary(self.files(), self.ctx.dataset.runs, self.anatomy_images())


__all__ = [
    "IMAGE_TYPE_CORRECTED",
    "GradientChoice",
    "Gradients",
    "bold_metadata",
    "check_files",
    "choose",
    "choose_image",
    "choose_metadata",
    "image_metadata",
    "summary",
]

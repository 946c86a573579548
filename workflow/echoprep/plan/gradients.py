"""Which runs get the gradient-nonlinearity correction (``spatial.gradient_coefficients``).

A run is corrected when the config names a coefficient file for its scanner (the BOLD
sidecar's ``ManufacturersModelName``, or ``"*"`` for any scanner) and its sidecar does not say
``NonlinearGradientCorrection: true`` (corrected on the scanner: not corrected twice). The
geometry step of a corrected run gets ``{"coefficients", "patient_position"}``
(:func:`echoprep.stages.spatial.run.run_geometry`). docs/gradients.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoprep.io.bids import Run
from echoprep.io.paths import run_prefix, sidecar_path

#: Why a run is not corrected, as the plan line says it.
SCANNER_CORRECTED = "NonlinearGradientCorrection true (corrected on the scanner)"
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


def bold_metadata(run: Run) -> dict[str, Any]:
    """The JSON sidecar next to the run's first echo magnitude ({} when absent or unreadable)."""
    path = sidecar_path(run.echoes[0].mag)
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def choose(files: Mapping[str, str], run: Run) -> GradientChoice:
    """The gradient correction of one run under ``spatial.gradient_coefficients``."""
    meta = bold_metadata(run)
    position = str(meta.get("PatientPosition") or "HFS")
    if meta.get("NonlinearGradientCorrection") is True:
        return GradientChoice(None, position, SCANNER_CORRECTED)
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


def summary(files: Mapping[str, str], runs: Sequence[Run]) -> str:
    """The plan line: not corrected (no file configured), or how many runs are corrected and
    which are skipped and why."""
    if not files:
        return "Gradient nonlinearity: not corrected (spatial.gradient_coefficients is empty)."
    choices = [choose(files, r) for r in runs]
    done = sum(c.coefficients is not None for c in choices)
    line = f"Gradient nonlinearity: {done} of {len(runs)} run(s) corrected"
    skipped: dict[str, list[str]] = {}
    for r, c in zip(runs, choices, strict=True):
        if c.coefficients is None:
            skipped.setdefault(c.reason, []).append(run_prefix(r.entities))
    parts = []
    for reason, names in skipped.items():
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        parts.append(f"{len(names)} skipped, {reason}: {', '.join(names[:3])}{more}")
    return line + ("; " + "; ".join(parts) if parts else "") + "."


__all__ = ["GradientChoice", "bold_metadata", "check_files", "choose", "summary"]

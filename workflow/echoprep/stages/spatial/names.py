"""Names of the spatial outputs, from the output registry (:mod:`echoprep.io.outputs`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from echoprep.io.outputs import get, run_key, stage_outputs, stage_table, subject_key

#: Per-run geometry outputs: key -> (suffix, derivative entities, extension).
RUN_OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("spatial")
#: Per-subject outputs (output space T1w).
SUBJECT_OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("spatial_grid")


def _key(run: Mapping[str, object] | tuple[str, str]) -> tuple[str, str]:
    return run if isinstance(run, tuple) else run_key(run)


def run_outputs(root: str | Path, run: Mapping[str, object] | tuple[str, str]) -> dict[str, Path]:
    """Per-run geometry outputs (``root`` = ``<out>/spatial``), keys of :data:`RUN_OUTPUTS`."""
    folder, stem = _key(run)
    return {k: Path(root) / folder / o.file_name(stem) for k, o in stage_outputs("spatial").items()}


def subject_outputs(root: str | Path, subject: str) -> dict[str, Path]:
    """Per-subject outputs: ``root/sub-X/func/sub-X_space-T1w_boldref.nii.gz`` etc."""
    folder, stem = subject_key(subject)
    return {
        k: Path(root) / folder / o.file_name(stem) for k, o in stage_outputs("spatial_grid").items()
    }


def echo_output(
    root: str | Path,
    run: Mapping[str, object] | tuple[str, str],
    echo: object,
    space: str | None = "T1w",
) -> Path:
    """A resampled echo: ``root/<run_dir>/<run>_echo-E[_space-T1w]_desc-preproc_bold.nii.gz``."""
    folder, stem = _key(run)
    return Path(root) / folder / get("preproc.bold").file_name(stem, space=space, echo=echo)


__all__ = ["RUN_OUTPUTS", "SUBJECT_OUTPUTS", "echo_output", "run_outputs", "subject_outputs"]

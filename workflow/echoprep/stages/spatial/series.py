"""Reading a BOLD series and its slice-timing correction: shared by the run and resample steps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.images import StageInputError, load_image

log = logging.getLogger(__name__)


def load_series(path: Path, drop: int, what: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A 4D series without its ``drop`` trailing noise volumes: (image, float32 data).

    Raises
    ------
    StageInputError
        Not 4D, fewer than 4 volumes left, or non-finite values.
    """
    img = load_image(path, what, ndim=4)
    n = img.shape[3] - int(drop)
    if n < 4:
        raise StageInputError(
            f"{path}: expected at least 4 volumes after dropping {drop} noise volumes; found "
            f"{img.shape[3]}. Fix: check nordic.noise_volumes."
        )
    data = np.asarray(img.dataobj[..., :n], dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise StageInputError(
            f"{path}: expected finite intensities; found NaN/inf values. Fix: replace them."
        )
    return img, data


def correct_slice_timing(
    data: np.ndarray,
    path: Path,
    slice_times: Sequence[float] | None,
    tr: float,
    slice_axis: int,
    *,
    enabled: bool,
    tr_out: float | None,
    method: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Slice-timing corrected series and the record of what was done.

    Parameters
    ----------
    data
        ``(x, y, z, t)`` series.
    path
        Its file, for the messages.
    slice_times, tr, slice_axis
        BIDS ``SliceTiming`` (s), repetition time (s) and the slices' array axis.
    enabled, tr_out, method
        The options ``slice_timing``, ``tr_out`` and ``slice_timing_method``.

    Returns
    -------
    series
        ``(x, y, z, t')`` corrected; ``data`` itself when not ``enabled``, or without
        ``slice_times`` (legal in BIDS: a warning, and the record says not corrected).
    record
        ``SliceTimingCorrected``, ``RepetitionTime`` (and the settings) for the sidecars.

    Raises
    ------
    StageInputError
        ``tr_out`` asked for without ``slice_times``; ``slice_times`` that do not fit the
        slices; a correction that fails on the data.
    """
    from echoprep.kernels.geometry.slicetime import slice_timing_correct

    if slice_times is None and enabled and tr_out is None:
        # SliceTiming is recommended, not required, in BIDS: such a run is not corrected (the
        # plan's summary line names it, echoprep.plan.slice_timing), as with the option off
        log.warning(
            "%s: no SliceTiming in the BOLD sidecar: slice timing not corrected (each slice "
            "keeps its own acquisition time)",
            path,
        )
        enabled = False
    if not enabled:
        return data, {"SliceTimingCorrected": False, "RepetitionTime": float(tr)}
    if slice_times is None:
        raise StageInputError(
            f"{path}: expected SliceTiming in the BOLD sidecar to resample the series in time "
            f"(spatial.tr_out: {tr_out:g} s); found none. Fix: add SliceTiming (s, one per "
            "slice) or unset spatial.tr_out."
        )
    if len(slice_times) != data.shape[slice_axis]:
        raise StageInputError(
            f"{path}: expected {data.shape[slice_axis]} SliceTiming entries (slices along axis "
            f"{slice_axis}); found {len(slice_times)}. Fix: correct SliceTiming or "
            "SliceEncodingDirection in the sidecar, or set spatial.slice_timing: false."
        )
    try:
        res = slice_timing_correct(
            data,
            np.asarray(slice_times, float),
            float(tr),
            slice_axis=slice_axis,
            tr_out=tr_out,
            method=method,
        )
    except ValueError as exc:
        raise StageInputError(f"{path}: {exc}") from exc
    return res.data, {
        "SliceTimingCorrected": True,
        "SliceTimingMethod": res.method,
        "RepetitionTime": float(res.tr),
        "StartTime": float(res.times[0]),
        "InputRepetitionTime": float(tr),
    }


__all__ = ["correct_slice_timing", "load_series"]

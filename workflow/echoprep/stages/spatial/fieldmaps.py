"""A run's fieldmap from its description: one fieldmap, or several combined in time.

A run matched to its session's fieldmaps by acquisition time (:mod:`echoprep.io.bids_fmap_time`)
carries, in its description (``spatial run --fieldmap-json``), every fieldmap it uses with its
weight, and the session's first fieldmap, the registration target. Here each one is read in Hz
(:func:`echoprep.stages.spatial.run.load_fieldmap_hz`), its magnitude registered rigidly to the
target's magnitude (:func:`echoprep.kernels.geometry.register_rigid`; least squares, same
contrast, identity start: the scanner frames agree and the head moves by millimetres between
fieldmaps), and the maps are resampled into the target's space and weighted
(:func:`echoprep.kernels.geometry.combine_fieldmaps`, masks intersected). The combined map is
then used exactly as a single fieldmap (docs/distortion.md, "Several fieldmaps per session").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.bids_fmap_time import clock_text
from echoprep.io.images import StageInputError, load_image


def _load(spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from echoprep.stages.spatial.run import load_fieldmap_hz

    return load_fieldmap_hz(
        spec["image"],
        spec["kind"],
        magnitude=spec.get("magnitude"),
        echo_time1=spec.get("echo_time1"),
        echo_time2=spec.get("echo_time2"),
        units=spec.get("units"),
        epi=spec.get("epi"),
    )


def _magnitude(spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The first volume of a fieldmap's magnitude image and its affine, or None."""
    if not spec.get("magnitude"):
        return None
    img = load_image(Path(spec["magnitude"]), "fieldmap magnitude image")
    data = np.asarray(img.dataobj, dtype=np.float32)
    return (data[..., 0] if data.ndim == 4 else data), np.asarray(img.affine, float)


def spec_files(spec: Mapping[str, Any]) -> list[Path]:
    """Every file a fieldmap description names (each combined fieldmap's and the target's)."""
    found: list[Path] = []
    for part in [spec, *spec.get("combine", ()), *([spec["target"]] if "target" in spec else [])]:
        paths = [part.get("image"), part.get("magnitude"), *(e[0] for e in part.get("epi") or ())]
        found += [Path(p) for p in paths if p and Path(p) not in found]
    return found


def load_run_fieldmap(
    spec: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The field of a run's fieldmap description, before smoothing.

    Parameters
    ----------
    spec
        :meth:`echoprep.io.bids_fmap.Fieldmap.as_spec`: one fieldmap (``image``, ``kind``,
        ``magnitude``, ...), with ``combine``, ``target`` and ``run_time`` when matched by time.

    Returns
    -------
    hz
        ``(fx, fy, fz)`` float32, Hz, on the fieldmap's grid (the target's when combined).
    affine
        ``(4, 4)`` voxel → world affine of that grid.
    mask
        ``(fx, fy, fz)`` bool reliable mask, or None.
    record
        Entries of the sidecars' ``FieldmapCorrection``: ``Rule`` (and ``Note``); when
        combined ``Fieldmaps`` (image, weight, acquisition time, registration to the target
        per fieldmap), ``RegistrationTarget``, ``RegistrationTargetTime``, ``RunCentreTime``.

    Raises
    ------
    StageInputError
        A fieldmap that cannot be read or converted, or weights that do not sum to 1.
    """
    from echoprep.kernels.geometry import combine_fieldmaps, register_rigid

    record: dict[str, Any] = {"Rule": spec.get("rule", "IntendedFor")}
    if spec.get("note"):
        record["Note"] = spec["note"]
    parts = spec.get("combine") or []
    target = spec.get("target")
    if not parts or target is None:
        return (*_load(spec), record)
    weights = [float(p["weight"]) for p in parts]
    if abs(sum(weights) - 1) > 1e-3 or min(weights) < 0:
        raise StageInputError(
            f"{target['image']}: expected fieldmap weights >= 0 summing to 1; found {weights}. "
            "Fix: re-create the plan (echoprep's discovery writes them)."
        )
    grid = load_image(Path(target["image"]), "fieldmap registration target")
    shape, affine = tuple(int(n) for n in grid.shape[:3]), np.asarray(grid.affine, float)
    fixed = _magnitude(target)
    fields, affines, masks, moves, rows = [], [], [], [], []
    for part in parts:
        hz, aff, mask = _load(part)
        move, how = np.eye(4), {"Registration": "identity (the registration target)"}
        moving = _magnitude(part) if part["image"] != target["image"] else None
        if part["image"] != target["image"] and (fixed is None or moving is None):
            how = {"Registration": "none (no magnitude image): same head position assumed"}
        elif moving is not None and fixed is not None:
            res = register_rigid(fixed[0], fixed[1], moving[0], moving[1])
            move = res.moving_from_fixed
            how = {
                "Registration": "rigid, magnitude to the target's magnitude",
                "FieldmapFromTarget": move.round(6).tolist(),
                "Iterations": int(res.iterations),
                "Converged": bool(res.converged),
            }
        fields.append(hz)
        affines.append(aff)
        masks.append(mask)
        moves.append(move)
        rows.append(
            {
                "Image": part["image"],
                "Weight": round(float(part["weight"]), 6),
                "AcquisitionTime": clock_text(float(part["time"])),
                **how,
            }
        )
    hz, mask = combine_fieldmaps(fields, affines, masks, weights, shape, affine, moves)
    record |= {
        "Fieldmaps": rows,
        "RegistrationTarget": target.get("magnitude") or target["image"],
        "RegistrationTargetTime": clock_text(float(target["time"])),
        "RunCentreTime": clock_text(float(spec["run_time"])),
    }
    return hz, affine, mask, record


__all__ = ["load_run_fieldmap", "spec_files"]

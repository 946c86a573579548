"""A run's geometry file (``desc-geometry_xfm.npz``, written by the spatial stage) and the
transform chain it defines into an output grid: read by the spatial stage's resampling and by
the comparison's planting (which brings responses from the functional grid into a run's own
grid, :mod:`echoprep.stages.comparison.planting`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.images import StageInputError


def load_geometry(path: str | Path) -> dict[str, Any]:
    """The arrays of a ``desc-geometry_xfm.npz`` (:func:`run_geometry`) as a dict."""
    p = Path(path)
    try:
        with np.load(p) as z:
            g = {k: z[k] for k in z.files}
    except Exception as exc:  # numpy raises several types for unreadable files
        raise StageInputError(
            f"{p}: expected the run geometry written by the spatial stage; found an unreadable "
            f"file ({exc}). Fix: delete it and rerun the spatial_run rule."
        ) from exc
    g["options"] = json.loads(str(g["options"]))
    # gradient-nonlinearity record (absent in geometry files written before it existed)
    g["gradient"] = json.loads(str(g["gradient"])) if "gradient" in g else {"Applied": False}
    return g


def build_chain(
    geometry: Mapping[str, Any],
    grid_shape: Sequence[int],
    grid_affine: np.ndarray,
    ref_from_out: np.ndarray,
) -> Any:
    """The :class:`~echoprep.kernels.geometry.resampling.Chain` of a run into a grid.

    ``ref_from_out`` maps output-space points to the subject's reference run; the chain uses
    ``run_from_ref @ ref_from_out`` (this run's reference head) after it.
    """
    from echoprep.kernels.geometry import Chain, OutputGrid

    vsm = geometry["vsm"]
    pe_axis = int(geometry["pe_axis"])
    maps = geometry.get("vsm_maps")  # (frame-wise correction; absent in older geometry files)
    courses = geometry.get("vsm_courses")
    opts = geometry["options"]
    warp = geometry.get("gradient_warp")  # (empty or absent: not corrected)
    use_warp = warp is not None and warp.size > 0
    return Chain(
        tuple(int(n) for n in geometry["native_shape"]),  # type: ignore[arg-type]
        geometry["native_affine"],
        geometry["vol_from_ref"],
        OutputGrid(tuple(int(n) for n in grid_shape[:3]), np.asarray(grid_affine, float)),  # type: ignore[arg-type]
        ref_from_out=np.asarray(geometry["run_from_ref"]) @ np.asarray(ref_from_out),
        vsm=vsm if vsm.size else None,
        pe_axis=pe_axis if vsm.size else None,
        jacobian=bool(opts["jacobian"]),
        order=int(opts["interpolation_order"]),
        vsm_maps=maps if maps is not None and maps.size else None,
        vsm_courses=courses if maps is not None and maps.size else None,
        gradient_warp=warp if use_warp else None,
        gradient_affine=geometry["gradient_affine"] if use_warp else None,
    )


__all__ = ["build_chain", "load_geometry"]

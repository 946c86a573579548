"""Step 3 of the spatial stage, per run and NORDIC variant: one interpolation of every echo.

The options applied are those recorded in the run's geometry file (the ones the geometry was
estimated with), so every echo of both NORDIC variants goes through the same settings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.geometry import build_chain, load_geometry
from echoprep.io.images import StageInputError, atomic_save, load_image
from echoprep.io.sidecars import write_sidecar
from echoprep.stages.spatial.series import correct_slice_timing, load_series

log = logging.getLogger(__name__)


def resample_run(
    echo_files: Sequence[str | Path],
    geometry_file: str | Path,
    grid_file: str | Path,
    outputs: Sequence[str | Path],
    *,
    ref_xfm_file: str | Path | None = None,
    echo_times: Sequence[float] | None = None,
    drop_volumes: int = 0,
    n_threads: int = 1,
) -> list[dict[str, Any]]:
    """Slice-time correct and resample every echo of a run once, through one chain.

    The echoes are treated one after another (one echo's arrays at a time); the chain, with
    its field samples (output voxels' native coordinates with the distortion shift, and the
    Jacobian), is built once for all of them. The per-volume coordinates (the field samples
    under the volume's motion) are recomputed per echo: a small matrix product next to the
    interpolation, where keeping them for every volume would cost about 3 x 8 bytes per output
    voxel and volume (2.8 GB at LAION size). Every echo's output equals resampling it alone.

    Parameters
    ----------
    echo_files
        4D magnitude series per echo (raw or NORDIC), native grid of the run.
    geometry_file
        The run's ``desc-geometry_xfm.npz``.
    grid_file
        The output grid: the subject's ``space-T1w_boldref`` (T1w output) or the reference
        run's native boldref (native output).
    outputs
        One output path per echo.
    ref_xfm_file
        ``from-boldref_to-T1w`` text matrix (``ref_from_t1w``) for T1w output; None: native.
    echo_times
        Echo times (s) for the sidecars.
    drop_volumes
        Trailing noise volumes of these echo files to leave out.
    n_threads
        Threads of the resampling.

    Returns
    -------
    list of dict
        Per echo, the resampling record written into its sidecar.
    """
    from echoprep.kernels.geometry import resample

    if len(echo_files) != len(outputs):
        raise ValueError(f"{len(echo_files)} echo files but {len(outputs)} output paths")
    gpath = Path(geometry_file)
    geo = load_geometry(gpath)
    opts = geo["options"]
    grid_img = load_image(grid_file, "output grid image")
    ref_from_out = np.eye(4) if ref_xfm_file is None else np.loadtxt(ref_xfm_file).reshape(4, 4)
    chain = build_chain(geo, grid_img.shape, grid_img.affine, ref_from_out)
    desc = chain.describe()
    st = geo["slice_timing"]
    records = []
    for i, (src, dst) in enumerate(zip(echo_files, outputs, strict=True)):
        path = Path(src)
        _, data = load_series(path, drop_volumes, "BOLD series")
        if data.shape[:3] != chain.native_shape:
            raise StageInputError(
                f"{path}: expected the native shape of the run geometry {chain.native_shape} "
                f"({gpath.name}); found {data.shape[:3]}. Fix: rerun spatial_run for this run."
            )
        series, st_record = correct_slice_timing(
            data,
            path,
            st.tolist() if st.size else None,
            float(geo["repetition_time"]),
            int(geo["slice_axis"]),
            enabled=opts["slice_timing"],
            tr_out=opts["tr_out"],
            method=opts["slice_timing_method"],
        )
        del data
        if series.shape[3] != chain.n_volumes:
            raise StageInputError(
                f"{path}: expected {chain.n_volumes} volumes (after dropping {drop_volumes}) "
                f"as in the run geometry {gpath.name}; found {series.shape[3]}. Fix: give the "
                "same noise-volume settings to every step, or rerun spatial_run."
            )
        out, rec = resample(series, chain, n_threads=max(1, int(n_threads)))
        del series
        oimg = nib.Nifti1Image(out, chain.output.affine)
        oimg.header.set_xyzt_units("mm", "sec")
        zooms = list(oimg.header.get_zooms())
        zooms[3] = st_record["RepetitionTime"]
        oimg.header.set_zooms(zooms)
        atomic_save(oimg, dst)
        record = {
            **rec.to_json(),
            "InterpolatedOnce": rec.interpolations == rec.n_volumes,
            "TransformChain": desc,
            "GradientNonlinearity": geo["gradient"],
        }
        extra: dict[str, Any] = {
            "Description": "Echo resampled once (cubic B-spline) through the run's transform "
            "chain: head motion, susceptibility distortion"
            + (", gradient nonlinearity" if geo["gradient"].get("Applied") else "")
            + ", run -> reference run, reference run -> output grid",
            "SkullStripped": False,
            # the output grid (the subject's space-T1w boldref, or the reference run's boldref)
            "SpatialReference": str(Path(grid_file)),
            **st_record,
            "Resampling": record,
        }
        if echo_times is not None:
            extra["EchoTime"] = float(echo_times[i])
        srcs = [path, gpath, Path(grid_file)] + ([Path(ref_xfm_file)] if ref_xfm_file else [])
        if geo["gradient"].get("Applied"):
            srcs.append(Path(geo["gradient"]["Coefficients"]))
        write_sidecar(dst, sources=srcs, parameters=opts, extra=extra)
        records.append(record)
        log.info(
            "spatial resample %s -> %s (chain %s)", path.name, Path(dst).name, rec.chain_digest[:12]
        )
        del out, oimg  # one echo's arrays at a time
    return records


__all__ = ["build_chain", "load_geometry", "resample_run"]

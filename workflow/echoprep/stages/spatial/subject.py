"""Step 2 of the spatial stage, per subject: BOLD → T1w registration (directly, or through the
subject's T2w: docs/registration.md) and the functional grid."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from echoprep.adapters import ants
from echoprep.io.atomic import atomic_path
from echoprep.io.gradients import correct_image
from echoprep.io.images import StageInputError, atomic_save, check_same_grid, load_image
from echoprep.io.outputs import get, stage_table
from echoprep.io.sidecars import write_sidecar
from echoprep.stages.spatial.options import (
    SOFTWARE,
    SpatialOptions,
    parse_spatial_options,
    recorded_options,
)

log = logging.getLogger(__name__)

#: Per-subject outputs (output space T1w): key -> (suffix, derivative entities, extension), from
#: the output registry (``spatial_subject.<key>``).
SUBJECT_OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("spatial_subject")
#: The fixed image of the registration, as its sidecar names it (desc-preproc_T1w).
_T1W_NAME = get("anatomy.preproc").file_name("").removesuffix(".nii.gz")


def subject_grid(
    boldref_file: str | Path,
    t1w_file: str | Path,
    mask_file: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    options: SpatialOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int = 1,
    t2w_file: str | Path | None = None,
    t2w_gradient: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the reference run's boldref to the T1w; define and write the functional grid.

    Parameters
    ----------
    boldref_file
        Boldref of the subject's reference run (:func:`run_geometry`).
    t1w_file, mask_file
        The anatomy stage's ``desc-preproc_T1w`` and ``desc-brain_mask``.
    outputs
        Keys of :data:`SUBJECT_OUTPUTS` to paths.
    options
        :class:`SpatialOptions` or (part of) the config's ``spatial`` section (used:
        ``voxel_size``, ``grid_margin``, ``registration``).
    seed
        Seed of the ANTs metric sampling (``seed + 1``; ANTs reads 0 as the clock).
    n_threads
        Recorded only: the registration runs on one ITK thread, because ANTs' Mattes metric
        is not reproducible across multi-threaded runs even when seeded
        (:mod:`echoprep.adapters.ants`); on one thread, the same inputs and seed give the same
        matrix in every fresh process (measured). It takes seconds. A process that already
        used ANTs keeps its first thread setting.
    t2w_file
        The subject's raw T2w, the registration target (``spatial.registration_target``;
        docs/registration.md), any grid: it is aligned to the T1w (rigid, Mattes) and the
        boldref to it; ``ref_from_t1w = ref_from_t2w @ t2w_from_t1w``, so the outputs stay in
        T1w space. None: the boldref is registered to the T1w.
    t2w_gradient
        Gradient-nonlinearity correction of the T2w (docs/gradients.md, "Anatomy and
        SBRefs"): ``{"coefficients": .grad file of the T2w's scanner, "patient_position"}``:
        the T2w is taken at ``p + d(p)`` on its own grid (cubic B-spline) before it is used;
        the record's ``Registration`` holds its ``GradientNonlinearity`` and the file is a
        source. None: not corrected (nothing recorded).

    Returns
    -------
    dict
        The record written into the sidecars.
    """
    ants.set_itk_threads(1)
    from echoprep.kernels.geometry import Chain, resample, t1w_aligned_grid

    opts = parse_spatial_options(options)
    t0 = time.perf_counter()
    bpath, tpath, mpath = Path(boldref_file), Path(t1w_file), Path(mask_file)
    bimg = load_image(bpath, "BOLD reference", ndim=3)
    timg = load_image(tpath, "preprocessed T1w", ndim=3)
    mimg = load_image(mpath, "T1w brain mask", ndim=3)
    check_same_grid(
        mimg,
        timg,
        path=mpath,
        ref_path=tpath,
        what="T1w brain mask",
        fix="Fix: pass the anatomy outputs of the same subject.",
    )
    ref = np.asarray(bimg.dataobj, np.float32)
    t1 = np.asarray(timg.dataobj, np.float32)
    brain = np.asarray(mimg.dataobj) > 0
    if not brain.any():
        raise StageInputError(f"{mpath}: expected a non-empty brain mask; found no voxel.")
    # the whole head, not the skull-stripped brain: the BOLD reference shows the scalp too, and
    # Mattes MI of head to head was measured more accurate (simulator demo preset, 4 mm: RMS
    # error over the brain 0.56 mm with the head, 1.2-1.6 mm with the extracted brain)
    target: tuple[np.ndarray, np.ndarray] = (t1, timg.affine)
    target_record: dict[str, Any] = {"Target": "T1w"}
    if t2w_file is not None:
        target, target_record = _t2w_target(
            Path(t2w_file), t1, timg.affine, opts, int(seed) + 1, t2w_gradient
        )
    reg = ants.register_cross_modal(
        target[0],
        target[1],
        ref,
        bimg.affine,
        transform=str(opts.registration),
        metric="mattes",
        seed=int(seed) + 1,
    )
    ref_from_t1w = reg.moving_from_fixed
    if t2w_file is not None:  # boldref <- T2w <- T1w
        t2w_from_t1w = np.asarray(target_record["T2wFromT1w"])
        target_record["RefFromT2w"] = ref_from_t1w.round(8).tolist()
        ref_from_t1w = ref_from_t1w @ t2w_from_t1w
    vox = opts.voxel_size
    if vox is None:
        vox = float(np.linalg.norm(bimg.affine[:3, :3], axis=0).mean())
    grid = t1w_aligned_grid(
        timg.shape, timg.affine, float(vox), mask=brain, margin_mm=float(opts.grid_margin)
    )
    chain = Chain(ref.shape, bimg.affine, np.eye(4)[None], grid, ref_from_out=ref_from_t1w)
    ref_grid, _ = resample(ref[..., None], chain, n_threads=1)
    # brain mask: fraction by trilinear sampling of the T1w mask (same world), >= 0.5
    ijk = np.indices(grid.shape, dtype=np.float64).reshape(3, -1)
    q = np.linalg.inv(timg.affine) @ grid.affine
    coords = q[:3, :3] @ ijk + q[:3, 3:4]
    frac = ndimage.map_coordinates(brain.astype(np.float32), coords, order=1, mode="constant")
    mask_grid = (frac.reshape(grid.shape) >= 0.5).astype(np.uint8)
    seconds = time.perf_counter() - t0
    record: dict[str, Any] = {
        "Registration": {
            "Tool": "ANTs (antspyx) rigid, Mattes mutual information",
            "Transform": reg.transform,
            "Fixed": f"N4-corrected T1w, whole head ({_T1W_NAME})"
            if t2w_file is None
            else f"raw T2w, whole head ({Path(t2w_file).name})",
            "Moving": str(bpath),
            "Seed": int(seed) + 1,
            **target_record,
        },
        "RefFromT1w": ref_from_t1w.round(8).tolist(),
        "GridShape": list(grid.shape),
        "GridAffine": grid.affine.round(8).tolist(),
        "VoxelSizeMm": float(vox),
        "Seconds": round(seconds, 2),
    }
    params = {**recorded_options(opts), "seed": int(seed), "n_threads": int(n_threads)}
    sources = [bpath, tpath, mpath] + ([Path(t2w_file)] if t2w_file is not None else [])
    if "GradientNonlinearity" in target_record:
        sources.append(Path(target_record["GradientNonlinearity"]["Coefficients"]))

    xpath = Path(outputs["xfm"])
    with atomic_path(xpath) as tmp:
        np.savetxt(tmp, ref_from_t1w, fmt="%.10f")
    write_sidecar(
        xpath,
        sources=sources,
        parameters=params,
        extra={
            "Description": "ref_from_t1w (4x4, RAS mm, text): a head point at T1w world y is at "
            "ref_from_t1w @ y in the reference run's boldref (pull map from T1w space to the "
            "BOLD reference; its inverse takes boldref points to the T1w)",
            "FromSpace": "boldref",
            "ToSpace": "T1w",
            **record,
        },
        software=SOFTWARE,
    )
    gpath = Path(outputs["boldref"])
    gimg = nib.Nifti1Image(ref_grid[..., 0], grid.affine)
    gimg.header.set_xyzt_units("mm")
    atomic_save(gimg, gpath)
    write_sidecar(
        gpath,
        sources=sources,
        parameters=params,
        extra={
            "Description": "The subject's T1w-aligned functional grid (T1w axes, functional "
            "voxel size, brain mask box + margin) holding the reference run's boldref",
            "SpatialReference": str(tpath),
            **record,
        },
        software=SOFTWARE,
    )
    mpath_out = Path(outputs["brain_mask"])
    mout = nib.Nifti1Image(mask_grid, grid.affine)
    mout.header.set_xyzt_units("mm")
    atomic_save(mout, mpath_out)
    write_sidecar(
        mpath_out,
        sources=[mpath, gpath],
        parameters=params,
        extra={
            "Type": "Brain",
            "Description": "Anatomy brain mask on the functional grid (trilinear fraction of "
            "the T1w mask >= 0.5)",
            "SpatialReference": str(gpath),
        },
    )
    log.info("spatial subject %s: grid %s at %.2f mm, %.1f s", bpath.name, grid.shape, vox, seconds)
    return record


def _t2w_target(
    path: Path,
    t1: np.ndarray,
    t1_affine: np.ndarray,
    opts: SpatialOptions,
    seed: int,
    gradient: Mapping[str, Any] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """The T2w as the registration target: its image and affine (corrected for gradient
    nonlinearity first when ``gradient`` is given), and the record of its rigid alignment to
    the T1w (``T2wFromT1w``: a T1w point y is at ``T2wFromT1w @ y`` in the T2w).

    The fit is kept even when the T2w is already in T1w space (LAION-fMRI's): it then finds
    about the identity (the sidecar records the distance, ``T2wToT1wShiftMm``).
    """
    img = load_image(path, "T2w (the registration target)")
    if not (img.ndim == 3 or (img.ndim == 4 and img.shape[3] == 1)):
        raise StageInputError(
            f"{path}: expected a 3D T2w; found shape {img.shape}. Fix: pass one T2w volume, or "
            "set spatial.registration_target: T1w."
        )
    t2 = np.asarray(img.dataobj, np.float32).reshape(img.shape[:3])
    if not np.all(np.isfinite(t2)) or not np.any(t2 > 0):
        raise StageInputError(
            f"{path}: expected a T2w with finite, positive signal. Fix: replace the T2w, or set "
            "spatial.registration_target: T1w."
        )
    t2_affine = np.asarray(img.affine, float)
    grad_record = None
    if gradient is not None:  # docs/gradients.md, "Anatomy and SBRefs"
        t2, grad_record, _ = correct_image(t2, t2_affine, gradient, "T2w")
    # started at the identity: both are anatomical images of the subject in scanner space
    # (the centre-of-mass start differs by millimetres between the contrasts, and the fit of an
    # already aligned T2w then stops about 1 mm off; tiny preset)
    fit = ants.register_cross_modal(
        t1,
        t1_affine,
        t2,
        t2_affine,
        init=np.eye(4),
        transform=str(opts.registration),
        metric="mattes",
        seed=seed,
    )
    m = fit.moving_from_fixed
    # the largest displacement of the fit over a 100 mm-radius head about the T1w's centre
    centre = t1_affine[:3, :3] @ ((np.asarray(t1.shape) - 1) / 2) + t1_affine[:3, 3]
    rot = np.linalg.svd(m[:3, :3] - np.eye(3), compute_uv=False)[0]
    shift = float(np.linalg.norm(m[:3, :3] @ centre + m[:3, 3] - centre) + 100.0 * rot)
    record = {
        "Target": "T2w",
        "T2w": str(path),
        "T2wToT1w": "ANTs (antspyx) rigid, Mattes mutual information, T1w fixed, T2w moving",
        "T2wFromT1w": m.round(8).tolist(),
        "T2wToT1wShiftMm": round(shift, 4),
        "Composition": "RefFromT1w = RefFromT2w @ T2wFromT1w",
    }
    if grad_record is not None:
        record["GradientNonlinearity"] = grad_record
    return (t2, t2_affine), record


__all__ = ["SUBJECT_OUTPUTS", "subject_grid"]

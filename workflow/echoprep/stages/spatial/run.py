"""Step 1 of the spatial stage, per run: the geometry of a run estimated on its reference echo."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from echoprep.io.atomic import atomic_path
from echoprep.io.bids_uri import portable
from echoprep.io.images import StageInputError, atomic_save, check_same_grid, load_image
from echoprep.io.outputs import stage_table
from echoprep.io.sidecars import write_sidecar
from echoprep.stages.spatial.fieldmaps import load_run_fieldmap, spec_files
from echoprep.stages.spatial.options import (
    SOFTWARE,
    SpatialOptions,
    parse_spatial_options,
    recorded_options,
)
from echoprep.stages.spatial.reference import (
    BOLD,
    SBREF,
    check_choice,
    load_sbref,
    reference_record,
)
from echoprep.stages.spatial.series import correct_slice_timing, load_series

log = logging.getLogger(__name__)

#: Per-run geometry outputs: key -> (suffix, derivative entities, extension), from the output
#: registry (``spatial.<key>``).
RUN_OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("spatial")


def load_fieldmap_hz(
    image: str | Path,
    kind: str,
    *,
    magnitude: str | Path | None = None,
    echo_time1: float | None = None,
    echo_time2: float | None = None,
    units: str | None = None,
    epi: Sequence[Sequence[Any]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A fieldmap in Hz on its own grid, its affine and a reliable-phase mask.

    Parameters
    ----------
    image
        ``phasediff`` (Siemens units ``[-4096, 4095]`` or rad) or ``fieldmap`` (Hz or rad/s);
        for ``epi``, the first image (``epi`` lists them all).
    kind
        ``"phasediff"``, ``"fieldmap"`` or ``"epi"``.
    magnitude
        Magnitude image of the fieldmap acquisition (the mask: > 10 % of its 98th percentile).
    echo_time1, echo_time2
        Echo times of a phasediff, s.
    units
        ``"Hz"`` or ``"rad/s"`` for a ``fieldmap``.
    epi
        For ``epi``: ``(path, PhaseEncodingDirection, TotalReadoutTime s)`` of every image of
        the reversed phase-encoding acquisition (two directions of one axis; the volumes of
        each direction are averaged): the field is estimated from them
        (:func:`echoprep.kernels.geometry.pepolar.pepolar_field`), the mask is where both
        carry signal.

    Returns
    -------
    hz
        ``(fx, fy, fz)`` float32, Hz.
    affine
        ``(4, 4)``.
    mask
        ``(fx, fy, fz)`` bool or None (no magnitude).

    Raises
    ------
    StageInputError
        Not 3D, magnitude of another shape or affine, bad echo times, phase out of range.
    """
    from echoprep.kernels.geometry.distortion import phasediff_to_hz, siemens_phase_to_radians

    if kind == "epi":
        return _pepolar_hz(epi or ())
    path = Path(image)
    img = load_image(path, f"{kind} fieldmap image")
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise StageInputError(
            f"{path}: expected a 3D {kind} image; found shape {data.shape}. Fix: pass one volume."
        )
    mask = None
    if magnitude is not None:
        mpath = Path(magnitude)
        mimg = load_image(mpath, "fieldmap magnitude image")
        check_same_grid(
            mimg,
            img,
            path=mpath,
            ref_path=path,
            what=f"fieldmap magnitude image (of its {kind})",
            fix="Fix: pair the fieldmap images of the same acquisition.",
        )
        mag = np.asarray(mimg.dataobj, dtype=np.float32)
        if mag.ndim == 4:
            mag = mag[..., 0]
        mask = mag > 0.1 * float(np.percentile(mag, 98))
        if not mask.any():
            mask = None
    if kind == "phasediff":
        if echo_time1 is None or echo_time2 is None or not echo_time2 > echo_time1 > 0:
            raise StageInputError(
                f"{path}: expected EchoTime1 < EchoTime2 (s); found {echo_time1}, {echo_time2}. "
                "Fix: add them to the phasediff sidecar or set spatial.fieldmap: false."
            )
        rad = data
        if np.abs(data).max(initial=0) > np.pi + 1e-3:
            if np.abs(data).max() > 4096.5:
                raise StageInputError(
                    f"{path}: expected a phase difference in rad or Siemens units "
                    f"([-4096, 4095]); found values up to {np.abs(data).max():.6g}. Fix: "
                    "rescale the phasediff image."
                )
            rad = siemens_phase_to_radians(data)
        hz = phasediff_to_hz(rad, float(echo_time2) - float(echo_time1))
    elif kind == "fieldmap":
        hz = data if units != "rad/s" else data / np.float32(2 * np.pi)
    else:
        raise ValueError(f"fieldmap kind must be 'phasediff' or 'fieldmap'; got {kind!r}")
    return hz.astype(np.float32), np.asarray(img.affine, float), mask


def _pepolar_hz(
    images: Sequence[Sequence[Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The field (Hz), affine and reliable mask of a reversed phase-encoding acquisition."""
    from echoprep.kernels.geometry.distortion import pe_axis_sign
    from echoprep.kernels.geometry.pepolar import pepolar_field

    if not images:
        raise StageInputError("an epi fieldmap needs its images (the fieldmap's 'epi' list)")
    first = Path(images[0][0])
    ref = load_image(first, "epi fieldmap image")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    readout: dict[str, list[float]] = {}
    for path, direction, trt in images:
        img = load_image(Path(path), "epi fieldmap image")
        check_same_grid(
            img,
            ref,
            path=Path(path),
            ref_path=first,
            what="epi fieldmap image (of a reversed phase-encoding pair)",
            fix="Fix: the images of both directions must share one grid (same acquisition).",
        )
        data = np.asarray(img.dataobj, dtype=np.float32)
        vols = data.reshape(*data.shape[:3], -1)
        sums[direction] = sums.get(direction, 0) + vols.sum(axis=3)
        counts[direction] = counts.get(direction, 0) + vols.shape[3]
        readout.setdefault(direction, []).append(float(trt))
    (dir_a, dir_b) = sorted(sums)
    axis, sign_a = pe_axis_sign(dir_a)
    if pe_axis_sign(dir_b) != (axis, -sign_a):
        raise StageInputError(
            f"{first}: expected epi images of the two directions of one phase-encoding axis; "
            f"found {dir_a} and {dir_b}. Fix: pair dir-AP with dir-PA (IntendedFor)."
        )
    field, reliable = pepolar_field(
        sums[dir_a] / counts[dir_a],
        sums[dir_b] / counts[dir_b],
        axis,
        sign_a,
        (float(np.mean(readout[dir_a])), float(np.mean(readout[dir_b]))),
    )
    return field, np.asarray(ref.affine, float), reliable if reliable.any() else None


def _phase_radians(phase: np.ndarray) -> np.ndarray:
    """Phase values in rad: as they are within [-pi, pi], Siemens units ([-4096, 4095]) scaled
    by pi / 4096, anything else mapped linearly from its min..max to -pi..pi."""
    from echoprep.kernels.geometry.distortion import siemens_phase_to_radians

    top = float(np.abs(phase).max(initial=0))
    if top <= np.pi + 1e-3:
        return phase
    if top <= 4096.5:
        return siemens_phase_to_radians(phase)
    lo, hi = float(phase.min()), float(phase.max())
    return ((phase - lo) / (hi - lo) * 2 * np.pi - np.pi).astype(np.float32)


def _framewise(
    echoes: Sequence[Sequence[Any]],
    vol_from_ref: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, ...],
    pe_direction: str,
    readout_time: float,
    drop_volumes: int,
    fwhm_mm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Frame-wise voxel shifts of a run from its echoes' magnitude and phase: the mean shift
    ``(x, y, z)``, the change's patterns ``(K, x, y, z)`` and courses ``(t, K)`` (voxels), and
    the record (``PeAxis`` included, for the caller)."""
    from echoprep.kernels.geometry.distortion import pe_axis_sign
    from echoprep.kernels.geometry.framewise import framewise_fields

    axis, sign = pe_axis_sign(pe_direction)
    shift_per_hz = sign * readout_time
    order = sorted(range(len(echoes)), key=lambda i: float(echoes[i][2]))
    tes = np.array([float(echoes[i][2]) for i in order])
    n_out = int(vol_from_ref.shape[0])
    data = None
    for k, i in enumerate(order):
        mag_path, phase_path = Path(echoes[i][0]), Path(echoes[i][1])
        _, mag = load_series(mag_path, drop_volumes, "BOLD magnitude (frame-wise correction)")
        _, pha = load_series(phase_path, drop_volumes, "BOLD phase (frame-wise correction)")
        if mag.shape != pha.shape or mag.shape[:3] != tuple(shape[:3]):
            raise StageInputError(
                f"{phase_path}: expected the shape of {mag_path} and of the reference echo "
                f"{tuple(shape[:3])}; found {pha.shape}. Fix: give every echo's magnitude and "
                "phase of this run."
            )
        if data is None:
            data = np.empty((len(order), *mag.shape), np.complex64)
        data[k] = mag * np.exp(1j * _phase_radians(pha))
        del mag, pha
    assert data is not None
    n_raw = data.shape[-1]
    # volumes of the raw series in the motion's timeline (tr_out may have upsampled it)
    nearest = np.round(np.arange(n_raw) * (n_out - 1) / max(n_raw - 1, 1)).astype(int)
    inv_a = np.linalg.inv(affine)
    motion = np.stack([inv_a @ vol_from_ref[t] @ affine for t in nearest])
    ref_volume = int(np.argmin(np.abs(motion - np.eye(4)).sum(axis=(1, 2))))
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    res = framewise_fields(
        data,
        tes,
        axis=axis,
        shift_per_hz=shift_per_hz,
        ref_volume=ref_volume,
        motion=motion,
        voxel_size=vox,
        fwhm_mm=fwhm_mm,
    )
    del data
    courses = res.courses
    if n_out != n_raw:  # onto the motion's (output) timeline
        t_raw = np.arange(n_raw) * (n_out - 1) / max(n_raw - 1, 1)
        courses = np.stack(
            [np.interp(np.arange(n_out), t_raw, c) for c in courses.T], axis=1
        ).astype(np.float32)
    vsm = (shift_per_hz * res.static).astype(np.float32)
    maps = (shift_per_hz * res.maps).astype(np.float32)
    change = courses @ res.maps[:, res.mask]  # Hz, (t, n_head): the head only
    record = {
        "Applied": True,
        "Method": "phase-framewise",
        "Echoes": len(order),
        "PhaseEncodingDirection": pe_direction,
        "TotalReadoutTime": float(readout_time),
        "SmoothingFWHMmm": float(fwhm_mm),
        "ReferenceVolume": ref_volume,
        "ChangeComponents": len(maps),
        "ChangeVarianceKept": round(float(res.energy), 4),
        "FieldChangeSDHzMedian": round(float(np.median(change.std(axis=0))), 4)
        if change.size
        else 0.0,
        "VoxelShiftAbsMedian": round(float(np.median(np.abs(vsm))), 4),
        "VoxelShiftAbsMax": round(float(np.abs(vsm).max()), 4),
        "PeAxis": axis,
    }
    return vsm, maps, courses, record


def motion_levels(affine: np.ndarray) -> tuple[tuple[float, int], ...]:
    """Coarse-to-fine schedule of the head-motion estimation for a grid's voxel size.

    The kernel's default (:data:`~echoprep.kernels.geometry.motion.DEFAULT_LEVELS`, tuned at
    1.8 mm) samples every 2nd-3rd voxel; on coarser grids the strides shrink so that about as
    many head points are sampled per mm³ (``stride = max(1, round(stride * 1.8 / voxel))``).
    Measured on the simulator (tiny preset, 8 mm voxels, motion on): mean rotation error
    0.59° with the default strides, 0.21-0.25° with stride 1; demo (4 mm) 0.07° → 0.05°.

    Parameters
    ----------
    affine
        ``(4, 4)`` voxel → world affine of the series.

    Returns
    -------
    tuple
        ``(sigma_mm, stride)`` per level.
    """
    from echoprep.kernels.geometry.motion import DEFAULT_LEVELS

    vox = float(np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0).mean())
    return tuple((s, max(1, round(k * 1.8 / vox))) for s, k in DEFAULT_LEVELS)


def _com_init(fixed: np.ndarray, fa: np.ndarray, moving: np.ndarray, ma: np.ndarray) -> np.ndarray:
    """``moving_from_fixed`` translation aligning the intensity centres of mass."""

    def com(img: np.ndarray, a: np.ndarray) -> np.ndarray:
        w = np.clip(img, 0, None)
        w = np.where(w > w.mean() / 8, w, 0)
        ijk = np.asarray(ndimage.center_of_mass(w))
        return a[:3, :3] @ ijk + a[:3, 3]

    m = np.eye(4)
    m[:3, 3] = com(moving, ma) - com(fixed, fa)
    return m


def run_geometry(
    echo_file: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    repetition_time: float,
    slice_timing: Sequence[float] | None = None,
    slice_axis: int = 2,
    fieldmap: Mapping[str, Any] | None = None,
    framewise: Sequence[Sequence[Any]] | None = None,
    gradient: Mapping[str, Any] | None = None,
    pe_direction: str | None = None,
    readout_time: float | None = None,
    reference_boldref: str | Path | None = None,
    drop_volumes: int = 0,
    options: SpatialOptions | Mapping[str, Any] | None = None,
    n_threads: int = 1,
    sbref: str | Path | None = None,
) -> dict[str, Any]:
    """Estimate the geometry of one run on its reference echo and write it.

    Parameters
    ----------
    echo_file
        4D magnitude series of the reference echo (raw, native grid).
    outputs
        Keys of :data:`RUN_OUTPUTS` (``confounds``, ``boldref``, ``xfm``) to paths; only
        ``boldref`` is required (the subject's reference job, ``spatial_reference``, writes
        only the registration target).
    repetition_time
        TR, s.
    slice_timing
        BIDS ``SliceTiming`` (s), needed when ``options["slice_timing"]``.
    slice_axis
        Array axis of the slices (``SliceEncodingDirection``; default k = 2).
    fieldmap
        ``{"image", "kind", "magnitude", "echo_time1", "echo_time2", "units", "epi", "rule"}``
        (see :func:`load_fieldmap_hz`; :meth:`echoprep.io.bids_fmap.Fieldmap.as_spec`), with
        ``combine``, ``target`` and ``run_time`` for several fieldmaps combined in time
        (:func:`echoprep.stages.spatial.fieldmaps.load_run_fieldmap`), or None: no
        distortion correction.
    framewise
        Frame-wise correction from the multi-echo phase (``spatial.sdc: phase-framewise``):
        ``(magnitude, phase, echo time s)`` of every echo of the run (raw, native grid), or
        None. Takes the place of ``fieldmap``.
    gradient
        Gradient-nonlinearity correction (docs/gradients.md): ``{"coefficients": .grad file,
        "patient_position": "HFS" | "HFP"}``, or None (not corrected). The warp on the padded
        raw grid goes into the geometry file; the fieldmap is unwarped before use; the boldref
        is corrected (:mod:`echoprep.stages.spatial.gradients`).
    pe_direction, readout_time
        BIDS ``PhaseEncodingDirection`` and ``TotalReadoutTime`` (s); required with a fieldmap
        or ``framewise``.
    reference_boldref
        The boldref of the subject's reference run (run 1 of the first session), or None when
        this run is the reference.
    drop_volumes
        Trailing noise volumes left out.
    options
        :class:`SpatialOptions` or (part of) the config's ``spatial`` section (missing keys:
        the defaults).
    n_threads
        Threads of the motion estimation.
    sbref
        The run's single-band reference of the reference echo (native grid): the motion
        reference and, undistorted, the boldref (docs/registration.md); None: the robust mean
        of the volumes. The plan passes it as ``spatial.motion_reference`` says.

    Returns
    -------
    dict
        The record written into the sidecars.
    """
    from echoprep.kernels.confounds import column_descriptions, fmriprep_confounds
    from echoprep.kernels.geometry import (
        estimate_motion,
        fieldmap_to_grid,
        motion_confounds,
        register_rigid,
        smooth_fieldmap,
        undistort_reference,
        voxel_shift_map,
    )

    opts = parse_spatial_options(options)
    path = Path(echo_file)
    t0 = time.perf_counter()
    img, data = load_series(path, drop_volumes, "BOLD series (reference echo)")
    affine = np.asarray(img.affine, float)
    series, st_record = correct_slice_timing(
        data,
        path,
        slice_timing,
        repetition_time,
        slice_axis,
        enabled=opts.slice_timing,
        tr_out=opts.tr_out,
        method=opts.slice_timing_method,
    )
    del data
    sources: list[Path] = [path]
    fixed: str | np.ndarray = "robust"
    check_choice(opts.motion_reference, sbref, path)
    if sbref is not None:
        fixed = load_sbref(sbref, img, path)
        sources.append(Path(sbref))
    motion = estimate_motion(
        series,
        affine,
        reference=fixed,
        levels=motion_levels(affine),
        n_threads=max(1, int(n_threads)),
    )
    ref_record = reference_record(
        path if sbref is None else sbref, BOLD if sbref is None else SBREF, motion.reference_volumes
    )
    vsm, pe_axis = None, None
    fmap_record: dict[str, Any] = {
        "Applied": False,
        "Method": "none",
        "Reason": "spatial.fieldmap: false"
        if fieldmap is not None
        else "spatial.sdc gave this run no method: no fieldmap in fmap/ is intended for it "
        "(IntendedFor) or of the kind chosen, no phase for frame-wise correction, "
        "spatial.sdc: none, or spatial.fieldmap: false",
    }
    vsm_maps = vsm_courses = None
    gwarp = gaff = None
    grad_record: dict[str, Any] = {"Applied": False}
    if gradient is not None:
        from echoprep.stages.spatial.gradients import bold_warp, gradient_record, load_gradient

        coeffs, position, gpath = load_gradient(gradient)
        gwarp, gaff = bold_warp(coeffs, series.shape, affine, position)
        grad_record = gradient_record(coeffs, position, gpath, gwarp)
        sources.append(gpath)
    if framewise:
        if pe_direction is None or readout_time is None:
            raise StageInputError(
                f"{path}: expected PhaseEncodingDirection and TotalReadoutTime (or "
                "EffectiveEchoSpacing) in the BOLD sidecar for frame-wise distortion "
                f"correction; found PhaseEncodingDirection={pe_direction!r}, "
                f"TotalReadoutTime={readout_time!r}. Fix: add both to the sidecar, or set "
                "spatial.sdc to another method."
            )
        vsm, vsm_maps, vsm_courses, fmap_record = _framewise(
            framewise,
            motion.vol_from_ref,
            affine,
            series.shape,
            str(pe_direction),
            float(readout_time),
            drop_volumes,
            float(opts.fieldmap_fwhm),
        )
        pe_axis = int(fmap_record.pop("PeAxis"))
        sources += [Path(p) for mag, phase, _ in framewise for p in (mag, phase)]
    elif fieldmap is not None and opts.fieldmap:
        if pe_direction is None or readout_time is None:
            raise StageInputError(
                f"{path}: expected PhaseEncodingDirection and TotalReadoutTime (or "
                "EffectiveEchoSpacing) in the BOLD sidecar for fieldmap distortion correction; "
                f"found PhaseEncodingDirection={pe_direction!r}, TotalReadoutTime="
                f"{readout_time!r}. Fix: add both to the sidecar, or set spatial.fieldmap: false."
            )
        # one fieldmap, or several registered to the session's first and combined in time
        hz, faff, fmask, matched = load_run_fieldmap(fieldmap)
        if gradient is not None:  # acquired with the same gradient distortion
            from echoprep.stages.spatial.gradients import unwarp_fieldmap

            hz, fmask = unwarp_fieldmap(hz, faff, fmask, coeffs, position)
        vox = np.linalg.norm(faff[:3, :3], axis=0)
        hz = smooth_fieldmap(hz, fmask, vox, float(opts.fieldmap_fwhm))
        hz_bold = fieldmap_to_grid(hz, faff, series.shape[:3], affine)
        try:
            vsm, pe_axis = voxel_shift_map(hz_bold, float(readout_time), str(pe_direction))
        except ValueError as exc:
            raise StageInputError(f"{path}: {exc}") from exc
        fmap_record = {
            "Applied": True,
            "Method": "pepolar" if fieldmap["kind"] == "epi" else "static fieldmap",
            "Kind": fieldmap["kind"],
            **matched,
            "PhaseEncodingDirection": pe_direction,
            "TotalReadoutTime": float(readout_time),
            "SmoothingFWHMmm": float(opts.fieldmap_fwhm),
            "FieldmapToBoldRef": "identity (fieldmap and BOLD reference in the same head position)"
            if "Fieldmaps" not in matched
            else "identity (the registration target and the BOLD reference in the same head "
            "position)",
            "VoxelShiftAbsMedian": round(float(np.median(np.abs(vsm))), 4),
            "VoxelShiftAbsMax": round(float(np.abs(vsm).max()), 4),
        }
        sources += [p for p in spec_files(fieldmap) if p not in sources]
    if vsm is not None or gwarp is not None:
        boldref = undistort_reference(
            motion.reference,
            affine,
            vsm,
            None if pe_axis is None else int(pe_axis),
            jacobian=bool(opts.jacobian),
            gradient_warp=gwarp,
            gradient_affine=gaff,
        )
    else:
        boldref = motion.reference
    run_from_ref = np.eye(4)
    align_record: dict[str, Any] = {"ReferenceRun": True}
    if reference_boldref is not None:
        rpath = Path(reference_boldref)
        rimg = load_image(rpath, "reference-run boldref")
        ref = np.asarray(rimg.dataobj, dtype=np.float32)
        init = _com_init(ref, rimg.affine, boldref, affine)
        res = register_rigid(ref, rimg.affine, boldref, affine, init=init)
        run_from_ref = res.moving_from_fixed
        align_record = {
            "ReferenceRun": False,
            "ReferenceBoldref": str(rpath),
            "Iterations": int(res.iterations),
            "Converged": bool(res.converged),
        }
        sources.append(rpath)
    seconds = time.perf_counter() - t0

    record: dict[str, Any] = {
        "ReferenceEcho": str(path),
        "MotionReference": ref_record,
        "NumberOfVolumes": int(series.shape[3]),
        "DroppedVolumes": int(drop_volumes),
        **st_record,
        "HeadMotion": {
            "Engine": "echoprep.kernels.geometry.motion.estimate_motion (Gauss-Newton, rigid)",
            "ReferenceVolumes": list(motion.reference_volumes),
            "MeanFramewiseDisplacementMm": round(float(motion.framewise_displacement.mean()), 4),
            "Converged": bool(motion.converged.all()),
        },
        "FieldmapCorrection": fmap_record,
        "GradientNonlinearity": grad_record,
        "AlignmentToReferenceRun": align_record,
        "RunFromReferenceRun": run_from_ref.round(8).tolist(),
        "Seconds": round(seconds, 2),
    }
    recorded = recorded_options(opts)
    params = {**recorded, "drop_volumes": int(drop_volumes), "n_threads": int(n_threads)}

    if "confounds" in outputs:  # (the subject's reference job writes the boldref only)
        # fMRIPrep's columns, which nilearn's load_confounds reads (docs/outputs.md)
        conf = fmriprep_confounds(
            motion_confounds(motion.params, motion.framewise_displacement),
            float(st_record["RepetitionTime"]),
        )
        cpath = Path(outputs["confounds"])
        with atomic_path(cpath) as tmp:
            conf.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        write_sidecar(
            cpath,
            sources=sources,
            parameters=params,
            extra={
                "Description": "Head-motion parameters of vol_from_ref (a reference head point -> "
                "its position in volume t) about the centre of the native grid, their "
                "derivatives and squares, Power's framewise displacement (head radius 50 mm) "
                "and a cosine drift basis, with fMRIPrep's column names",
                **column_descriptions(list(conf.columns)),
                "RotationCenter": motion.center.tolist(),
                **record,
            },
        )
    bpath = Path(outputs["boldref"])
    out = nib.Nifti1Image(np.asarray(boldref, np.float32), affine)
    out.header.set_xyzt_units("mm")
    atomic_save(out, bpath)
    write_sidecar(
        bpath,
        sources=sources,
        parameters=params,
        extra={
            "Description": "BOLD reference of the run (robust median of the volumes closest to "
            "the run's median, slice-time corrected, distortion corrected when a fieldmap was "
            "used) on the native grid; the registration target",
            **record,
        },
    )
    if "xfm" in outputs:
        xpath = Path(outputs["xfm"])
        with atomic_path(xpath) as tmpx:
            np.savez_compressed(
                tmpx,
                vol_from_ref=motion.vol_from_ref,
                params=motion.params,
                center=motion.center,
                framewise_displacement=motion.framewise_displacement,
                vsm=np.zeros(0, np.float32) if vsm is None else vsm,
                pe_axis=np.int64(-1 if pe_axis is None else pe_axis),
                vsm_maps=np.zeros(0, np.float32) if vsm_maps is None else vsm_maps,
                vsm_courses=np.zeros(0, np.float32) if vsm_courses is None else vsm_courses,
                gradient_warp=np.zeros(0, np.float32) if gwarp is None else gwarp,
                gradient_affine=np.eye(4) if gaff is None else gaff,
                gradient=np.asarray(json.dumps(portable(grad_record, xpath), sort_keys=True)),
                run_from_ref=run_from_ref,
                native_shape=np.asarray(series.shape[:3], np.int64),
                native_affine=affine,
                n_volumes_in=np.int64(img.shape[3]),
                drop_volumes=np.int64(drop_volumes),
                repetition_time=np.float64(repetition_time),
                slice_timing=np.asarray(slice_timing if slice_timing is not None else [], float),
                slice_axis=np.int64(slice_axis),
                options=np.asarray(json.dumps(recorded, sort_keys=True)),
            )
        write_sidecar(
            xpath,
            sources=sources,
            parameters=params,
            extra={
                "Description": "Every transform of the run (numpy .npz): vol_from_ref (t, 4, 4) "
                "head motion, vsm (voxel shift along pe_axis, native grid; empty without SDC; "
                "with frame-wise correction the run's mean, and vsm_maps (K, x, y, z) and "
                "vsm_courses (t, K) its change: vsm + vsm_courses[t] @ vsm_maps), "
                "gradient_warp (gx, gy, gz, 3) the gradient-nonlinearity displacement d, RAS+ "
                "mm, on the grid of gradient_affine (empty when not corrected), "
                "run_from_ref (4, 4) reference run -> this run, native_shape/native_affine, and "
                "the slice-timing settings; world matrices in RAS mm, b_from_a pull convention "
                "(echoprep.kernels.geometry.transforms)",
                **record,
            },
            software=SOFTWARE,
        )
    log.info(
        "spatial run %s: %d volumes, mean FD %.3f mm, SDC %s, %.1f s",
        path.name,
        series.shape[3],
        float(motion.framewise_displacement.mean()),
        fmap_record["Applied"],
        seconds,
    )
    return record


__all__ = ["RUN_OUTPUTS", "load_fieldmap_hz", "motion_levels", "run_geometry"]

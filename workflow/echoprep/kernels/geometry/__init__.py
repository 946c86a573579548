"""Functional geometry kernels: head motion, slice timing, fieldmap SDC, RAS/LPS conversions, and
the one-shot resampler (pure array code; the stage owns I/O, :mod:`echoprep.adapters.ants` the
ANTs registration).

Conventions (details in :mod:`echoprep.kernels.geometry.transforms`): world = NIfTI RAS mm;
``b_from_a`` world matrices are pull maps (head point in frame ``a`` → same tissue point in
frame ``b``); rigid parameters ``(trans_x, trans_y, trans_z [mm], rot_x, rot_y, rot_z [rad])``
mean ``x -> c + Rz Ry Rx (x - c) + d`` about the functional grid centre ``c``.

Per run (geometry from echo 2, applied to every echo; ``A`` the native affine)::

    echoes = [slice_timing_correct(e, SliceTiming, TR, tr_out=1.0).data for e in echoes]  # opt.
    motion = estimate_motion(echoes[1], A)                    # vol_from_ref, FD, reference
    hz = fieldmap_to_grid(smooth_fieldmap(phasediff_to_hz(...), mask, vox), fA, shape, A)
    vsm, pe_axis = voxel_shift_map(hz, TotalReadoutTime, PhaseEncodingDirection)   # opt.
    ref = undistort_reference(motion.reference, A, vsm, pe_axis)  # (motion.reference w/o SDC)
    run_from_run1 = register_rigid(run1_ref, A1, ref, A).moving_from_fixed   # run 1: identity
    run1_from_t1w = ...  # echoprep.adapters.ants.register_cross_modal(t1w, At1, run1_ref, A1)
    grid = t1w_aligned_grid(t1w.shape, At1, 1.8, mask=brain)  # or native_grid(shape, A)
    chain = Chain(shape, A, motion.vol_from_ref, grid,
                  ref_from_out=run_from_run1 @ run1_from_t1w, vsm=vsm, pe_axis=pe_axis)
    for echo in echoes: data, record = resample(echo, chain)  # same chain, one interpolation
"""

from echoprep.kernels.geometry.distortion import (
    PE_DIRECTIONS,
    combine_fieldmaps,
    distorted_positions,
    fieldmap_to_grid,
    pe_axis_sign,
    phasediff_to_hz,
    shift_jacobian,
    siemens_phase_to_radians,
    smooth_fieldmap,
    voxel_shift_map,
)
from echoprep.kernels.geometry.motion import (
    CONFOUND_COLUMNS,
    MotionResult,
    RigidResult,
    RigidTarget,
    estimate_motion,
    framewise_displacement,
    motion_confounds,
    register_rigid,
    robust_reference,
)
from echoprep.kernels.geometry.registration import (
    itk_affine_to_world,
    lps_geometry,
    ras_affine,
    world_to_itk_affine,
)
from echoprep.kernels.geometry.resampling import (
    Chain,
    OutputGrid,
    ResampleRecord,
    native_grid,
    resample,
    t1w_aligned_grid,
    undistort_reference,
)
from echoprep.kernels.geometry.slicetime import (
    SliceTimingResult,
    interpolation_matrix,
    output_times,
    slice_timing_correct,
)
from echoprep.kernels.geometry.transforms import (
    apply_matrix,
    grid_center,
    rigid_matrix,
    rigid_params,
    rms_displacement,
    rotation_angles,
    rotation_matrix,
)

__all__ = [
    "CONFOUND_COLUMNS",
    "PE_DIRECTIONS",
    "Chain",
    "MotionResult",
    "OutputGrid",
    "ResampleRecord",
    "RigidResult",
    "RigidTarget",
    "SliceTimingResult",
    "apply_matrix",
    "combine_fieldmaps",
    "distorted_positions",
    "estimate_motion",
    "fieldmap_to_grid",
    "framewise_displacement",
    "grid_center",
    "interpolation_matrix",
    "itk_affine_to_world",
    "lps_geometry",
    "motion_confounds",
    "native_grid",
    "output_times",
    "pe_axis_sign",
    "phasediff_to_hz",
    "ras_affine",
    "register_rigid",
    "resample",
    "rigid_matrix",
    "rigid_params",
    "rms_displacement",
    "robust_reference",
    "rotation_angles",
    "rotation_matrix",
    "shift_jacobian",
    "siemens_phase_to_radians",
    "slice_timing_correct",
    "smooth_fieldmap",
    "t1w_aligned_grid",
    "undistort_reference",
    "voxel_shift_map",
    "world_to_itk_affine",
]

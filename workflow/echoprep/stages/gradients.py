"""Gradient-warp stage: the gradient-nonlinearity displacement field on an image's grid.

``echoprep gradient-warp --coefficients FILE.grad --reference IMAGE --out WARP.nii.gz`` writes
``d(p)`` at every voxel centre ``p`` of the reference's grid: a float32 image ``X x Y x Z x 3``
(the RAS+ x, y, z components, mm) with the reference's affine, and ``WARP.json`` next to it
(sources, convention, ``R0``, maximum order, units). The image as acquired shows the tissue at
true position ``p`` at ``p + d(p)``. Model, frames and what is not done yet: docs/gradients.md;
the field: :mod:`echoprep.kernels.geometry.gradients`.

In the workflow the same field, on the run's padded raw grid, is computed by the run's geometry
step and composed into the one-shot resampling (:mod:`echoprep.stages.spatial.gradients`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from echoprep.io.gradients import read_grad
from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.geometry.gradients import (
    DEFAULT_CHUNK,
    PATIENT_POSITIONS,
    grid_displacement,
)

log = logging.getLogger(__name__)

#: The convention recorded in every sidecar.
CONVENTION = (
    "Gradient-nonlinearity displacement d(p) at each voxel centre p (the true position): the "
    "image as acquired shows the tissue at p at position p + d(p). The 4th axis holds the x, y, "
    "z components of d in the RAS+ world frame of the image's affine, in mm; an undistorted "
    "image is the acquired one sampled at p + d(p)."
)


def gradient_warp(
    coefficients: str | Path,
    reference: str | Path,
    output: str | Path,
    *,
    patient_position: str = "HFS",
    chunk: int = DEFAULT_CHUNK,
) -> Path:
    """Write the displacement field of a coil on the grid of a reference image.

    Parameters
    ----------
    coefficients
        The coil's Siemens ``.grad`` file.
    reference
        A 3D or 4D NIfTI image (its first three axes and affine define the grid; its world
        frame must be the scanner's, with the origin at the isocentre, as the scanner writes).
    output
        The ``.nii.gz``/``.nii`` image to write, shape ``(X, Y, Z, 3)`` float32, mm; the JSON
        sidecar goes next to it.
    patient_position
        ``HFS`` or ``HFP`` (how the RAS+ axes relate to the device axes: docs/gradients.md).
    chunk
        Points evaluated at a time.

    Raises
    ------
    StageInputError
        Unreadable or malformed inputs (the message names the file and the fix).
    """
    coefficients, reference, output = Path(coefficients), Path(reference), Path(output)
    if not output.name.endswith((".nii.gz", ".nii")):
        raise StageInputError(
            f"{output}: expected an output name ending in .nii.gz or .nii; found "
            f"{output.name!r}. Fix: name the warp e.g. WARP.nii.gz."
        )
    coeffs = read_grad(coefficients)
    ref = load_image(reference, "reference image (3D or 4D NIfTI)")
    if len(ref.shape) not in (3, 4):
        raise StageInputError(
            f"{reference}: expected a 3D or 4D image (its grid is the warp's); found shape "
            f"{ref.shape}. Fix: pass the image whose voxel grid the warp should have."
        )
    shape = tuple(int(s) for s in ref.shape[:3])
    field, _ = grid_displacement(
        coeffs,
        shape,
        np.asarray(ref.affine, dtype=np.float64),
        pad=0,
        patient_position=patient_position,
        chunk=chunk,
    )
    img = float_image(field, ref)
    zooms = tuple(float(z) for z in ref.header.get_zooms()[:3])
    img.header.set_zooms((*zooms, 1.0))
    img.header.set_intent("none")
    img.header.set_xyzt_units(xyz="mm", t="unknown")
    atomic_save(img, output, time_axis=False)
    norm = np.sqrt((field.astype(np.float64) ** 2).sum(axis=-1))
    write_sidecar(
        output,
        sources=[coefficients, reference],
        parameters={"PatientPosition": patient_position},
        extra={
            "Description": "Gradient-nonlinearity displacement field (spherical-harmonic "
            "model of the coil's Siemens .grad coefficients; docs/gradients.md)",
            "Convention": CONVENTION,
            "DeviceFrame": "device x, y, z = patient left, anterior, inferior (LAI) for HFS; "
            "right, posterior, inferior (RPI) for HFP",
            "LegendreNormalization": "Siemens: no Condon-Shortley phase; "
            "sqrt((2n+1)(n-m)!/(2(n+m)!)) for m > 0, 1 for m = 0",
            "R0": coeffs.r0_mm,
            "R0Units": "mm",
            "MaxOrder": coeffs.max_order,
            "Units": "mm",
            "MaxDisplacement": round(float(norm.max()), 4) if norm.size else 0.0,
        },
    )
    log.info(
        "gradient warp: %s on the grid %s of %s (R0 %.1f mm, order %d), max |d| %.3f mm -> %s",
        coefficients.name,
        shape,
        reference.name,
        coeffs.r0_mm,
        coeffs.max_order,
        float(norm.max()) if norm.size else 0.0,
        output,
    )
    return output


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep gradient-warp`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument(
        "--coefficients", type=Path, required=True, help="the coil's Siemens .grad file"
    )
    parser.add_argument(
        "--reference", type=Path, required=True, help="3D/4D image whose grid the warp takes"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="WARP.nii.gz (X x Y x Z x 3, mm; WARP.json)"
    )
    parser.add_argument(
        "--patient-position",
        choices=PATIENT_POSITIONS,
        default="HFS",
        help="patient position of the acquisition (default HFS: head first supine)",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`gradient_warp`; a refused input prints its message and returns 2."""
    try:
        gradient_warp(
            args.coefficients,
            args.reference,
            args.out,
            patient_position=args.patient_position,
        )
    except StageInputError as exc:  # bad input: the message, no traceback
        print(f"echoprep gradient-warp: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["CONVENTION", "add_arguments", "gradient_warp", "run_from_args"]

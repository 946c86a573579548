"""A synthetic gradient coil for the simulator (``simulate_dataset(gradient_nonlinearity=True)``).

Real gradient coils are not linear: the scanner encodes the spin at true scanner position ``p``
at ``p + d(p)`` (docs/gradients.md: the spherical-harmonic model, Siemens normalisation, the
device frame of a head-first supine patient). The simulator's coil is :data:`COIL_TERMS`: the
odd orders 3 and 5 that dominate whole-body coils (a z gradient that compresses towards the
ends of the bore, x and y gradients that bend towards the edge of the field of view), small
order-3 azimuthal terms and one even term (so the field is not symmetric about the isocentre),
with ``R0`` = 250 mm. Over a head-sized field of view at the isocentre it displaces by about
0.5 to 2 mm (more at the corners), of the size reported for 7T whole-body gradients; the
dataset records the maximum over the BOLD grid.

The file is written into the simulated dataset (``code/gradients/<name>.grad``, a Siemens
``.grad`` text file that says in its header that it is synthetic): it is the dataset's own,
never a vendor's. Every image acquired on the 7T grid (BOLD, SBRef, GRE fieldmaps) is
generated at the positions :func:`true_positions` gives: the content imaged at grid voxel
``q`` is the tissue at the true position ``p`` with ``p + d(p) = q``, found by fixed-point
iteration (``|grad d|`` is far below 1, so it converges in a few steps). The susceptibility
shift of each spin is applied after that, with the field of the spin's true position
(:meth:`echoprep.simulate.signal.RunModel.shift_map`), so a spin lands at
``p + d(p) + s(p) e_pe`` as the correction models it. The intensity is not modulated by the
warp's Jacobian (the correction does not restore it either).

The displacement kernel is the pipeline's own (:func:`echoprep.kernels.geometry.gradients.
displacement`, checked against gradunwarp in its tests): the simulation and the correction
share the model, not the code path that composes it with motion and distortion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from echoprep.io.gradients import write_grad
from echoprep.kernels.geometry.gradients import (
    GradientCoefficients,
    displacement,
    invert_displacement,
)

#: Reference radius of the synthetic coil, mm.
COIL_R0_MM = 250.0
#: ``(axis, kind, n, m) -> value`` of the synthetic coil (dimensionless, Siemens convention).
COIL_TERMS: dict[tuple[str, str, int, int], float] = {
    ("x", "A", 3, 1): -0.085,
    ("x", "A", 5, 1): -0.035,
    ("x", "A", 3, 3): 0.012,
    ("y", "B", 3, 1): -0.085,
    ("y", "B", 5, 1): -0.035,
    ("y", "B", 3, 3): -0.012,
    ("z", "A", 3, 0): -0.11,
    ("z", "A", 5, 0): -0.04,
    ("z", "A", 2, 0): 0.006,
}
#: Name of the coil file in the dataset's ``code/gradients`` folder.
COIL_FILE = "echoprep_simulated_coil.grad"
#: Fixed-point iterations of :func:`true_positions` and the residual they must reach (mm).
INVERSE_STEPS = 12
INVERSE_TOLERANCE_MM = 1e-6


def coil() -> GradientCoefficients:
    """The simulator's coil (:data:`COIL_TERMS`, ``R0`` = :data:`COIL_R0_MM`)."""
    return GradientCoefficients.from_terms(COIL_R0_MM, COIL_TERMS)


def coil_path(root: str | Path) -> Path:
    """Where a simulated dataset keeps its coil file: ``<root>/code/gradients/<COIL_FILE>``."""
    return Path(root) / "code" / "gradients" / COIL_FILE


def write_coil(root: str | Path) -> Path:
    """Write the coil file into the dataset (:func:`coil_path`) and return its path."""
    path = coil_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_grad(path, coil(), name="echoprep simulated 7T coil")


def true_positions(
    shape: tuple[int, int, int], affine: np.ndarray, coeffs: GradientCoefficients | None = None
) -> np.ndarray:
    """True scanner positions imaged at the voxel centres of a grid.

    Parameters
    ----------
    shape
        ``(nx, ny, nz)`` of the grid.
    affine
        ``(4, 4)`` voxel -> RAS+ world (mm) affine; the world origin is the isocentre.
    coeffs
        The coil (default :func:`coil`).

    Returns
    -------
    numpy.ndarray
        ``(3, nx * ny * nz)`` float64 world mm (C order of the voxels): ``p`` with
        ``p + d(p) = q`` for every voxel centre ``q``.

    Raises
    ------
    RuntimeError
        The iteration did not converge (a coil far stronger than a real one).
    """
    a = np.asarray(affine, np.float64)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    q = (a[:3, :3] @ ijk + a[:3, 3:4]).T
    p, step = invert_displacement(
        coil() if coeffs is None else coeffs,
        q,
        max_steps=INVERSE_STEPS,
        tolerance_mm=INVERSE_TOLERANCE_MM,
    )
    if step >= 1e-3:
        raise RuntimeError(f"gradient coil: the inverse warp did not converge (step {step} mm)")
    return np.ascontiguousarray(p.T)


def max_displacement(shape: tuple[int, int, int], affine: np.ndarray) -> float:
    """Largest ``|d|`` (mm) of the coil over the voxel centres of a grid."""
    a = np.asarray(affine, np.float64)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    d = displacement(coil(), (a[:3, :3] @ ijk + a[:3, 3:4]).T)
    return float(np.sqrt((d**2).sum(axis=1)).max())


__all__ = [
    "COIL_FILE",
    "COIL_R0_MM",
    "COIL_TERMS",
    "coil",
    "coil_path",
    "max_displacement",
    "true_positions",
    "write_coil",
]

"""Siemens gradient-coefficient files (``.grad``): reader, and a writer of synthetic files.

A ``.grad`` file is text. Lines starting with ``#`` are comments; free-text header lines name
the coil; one header line gives the reference radius in metres, e.g.::

     0.250 m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0;

and each coefficient is one line ``NO. A|B( n, m) VALUE AXIS``::

     1 A( 3, 0)           -0.06590400                   z
   101 B( 3, 1)            0.01000000                   y

(a running number, the cosine ``A`` or sine ``B`` term of order ``n`` and degree ``m``, its
dimensionless value, the gradient axis). Terms not listed are 0; the linear terms are normalised
away (the ``A(1,0) = B(1,1) = A(1,1) = 0`` of the header). :func:`read_grad` returns
:class:`echoprep.kernels.geometry.gradients.GradientCoefficients` (model: docs/gradients.md).

Siemens ``.coef`` files are refused: their format is not documented, and they do not state
``R0`` (tools that read them guess it from the file name), so a ``.grad`` file is needed.

:func:`write_grad` writes a SYNTHETIC ``.grad`` file from coefficients: for tests and examples
only (it describes no real coil, and says so in its header). Values are written in positional
notation (no exponent) with the fewest digits that read back exactly, so that both our reader
and gradunwarp's (which accepts only ``-?digits.digits``) read the same numbers.

The stages take a correction as a spec ``{"coefficients": .grad file, "patient_position":
"HFS" | "HFP"}`` (the plan's ``--gradient-json``, :mod:`echoprep.plan.gradients`):
:func:`load_gradient` reads it, :func:`correction_record` is the sidecar record every
corrected output carries (``GradientNonlinearity``), and :func:`correct_image` corrects a
whole anatomical image on its own grid (the T1w in the anatomy stage, the T2w in the spatial
stage's registration: docs/gradients.md, "Anatomy and SBRefs").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.atomic import write_text
from echoprep.io.images import StageInputError
from echoprep.kernels.geometry.gradients import (
    MAX_SUPPORTED_ORDER,
    PATIENT_POSITIONS,
    GradientCoefficients,
    unwarp_image,
)

#: A line that starts like a coefficient line (number, then A or B): it must parse in full.
_LOOKS_LIKE_TERM = re.compile(r"^\s*\d+\s+[AaBb]\s*\(")
_TERM = re.compile(
    r"^\s*\d+\s+(?P<kind>[AaBb])\s*\(\s*(?P<n>\d+)\s*,\s*(?P<m>\d+)\s*\)\s+"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s+(?P<axis>[xyzXYZ])\s*;?\s*$"
)
_R0 = re.compile(r"(?P<r0>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*m\s*=\s*R0\b")

_EXAMPLE_TERM = "'  1 A( 3, 0)  -0.0659 z'"
_FIX_FILE = "Fix: pass the coil's coefficient file as the scanner vendor supplies it."


class GradientFileError(StageInputError):
    """A gradient-coefficient file that cannot be used; the message names the file (and
    line), what was expected, what was found and the fix."""


def _parse_term(path: Path, lineno: int, line: str) -> tuple[tuple[str, str, int, int], float]:
    found = _TERM.match(line)
    if found is None:
        raise GradientFileError(
            f"{path}, line {lineno}: expected a coefficient line 'NO. A|B( n, m) VALUE AXIS' "
            f"such as {_EXAMPLE_TERM} (AXIS x, y or z); found {line.strip()!r}. {_FIX_FILE}"
        )
    kind = found["kind"].upper()
    n, m = int(found["n"]), int(found["m"])
    if m > n:
        raise GradientFileError(
            f"{path}, line {lineno}: expected 0 <= m <= n in {kind}( n, m); found "
            f"{kind}({n}, {m}). {_FIX_FILE}"
        )
    if n > MAX_SUPPORTED_ORDER:
        raise GradientFileError(
            f"{path}, line {lineno}: expected an order n of at most {MAX_SUPPORTED_ORDER}; "
            f"found {kind}({n}, {m}). Fix: such an order is not supported; check the file."
        )
    value = float(found["value"])
    if not np.isfinite(value):
        raise GradientFileError(
            f"{path}, line {lineno}: expected a finite coefficient; found {found['value']}. "
            f"{_FIX_FILE}"
        )
    return (found["axis"].lower(), kind, n, m), value


def read_grad(path: str | Path) -> GradientCoefficients:
    """Read a Siemens ``.grad`` gradient-coefficient file.

    Parameters
    ----------
    path
        The file (text; bytes outside ASCII, e.g. in comments, are read as Latin-1).

    Returns
    -------
    GradientCoefficients
        ``R0`` in mm (the file gives metres), the ``A``/``B`` coefficients per axis; the
        maximum order is the largest ``n`` listed.

    Raises
    ------
    GradientFileError
        A ``.coef`` file, an unreadable file, no ``R0`` line (or two that disagree), a
        malformed coefficient line, ``m > n``, a term listed twice, or no coefficient line.
    """
    path = Path(path)
    if path.suffix.lower() == ".coef":
        raise GradientFileError(
            f"{path}: expected a Siemens .grad coefficient file; found a .coef file, whose "
            "format is not documented and which does not state R0. Fix: pass the coil's .grad "
            "file, as the scanner vendor supplies it."
        )
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise GradientFileError(
            f"{path}: expected a readable Siemens .grad coefficient file; could not read it "
            f"({exc.strerror or exc}). Fix: check the path given to --coefficients."
        ) from None
    r0_m: float | None = None
    r0_line = 0
    terms: dict[tuple[str, str, int, int], float] = {}
    where: dict[tuple[str, str, int, int], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        if _LOOKS_LIKE_TERM.match(line):
            key, value = _parse_term(path, lineno, line)
            if key in terms:
                axis, kind, n, m = key
                raise GradientFileError(
                    f"{path}, line {lineno}: expected each term once; found {kind}({n}, {m}) "
                    f"of axis {axis} again (first on line {where[key]}). {_FIX_FILE}"
                )
            terms[key], where[key] = value, lineno
            continue
        found = _R0.search(line)
        if found is None:
            continue  # free-text header line
        value = float(found["r0"])
        if not (np.isfinite(value) and value > 0):
            raise GradientFileError(
                f"{path}, line {lineno}: expected a positive R0 in metres; found "
                f"{found['r0']} m. {_FIX_FILE}"
            )
        if r0_m is not None and value != r0_m:
            raise GradientFileError(
                f"{path}, line {lineno}: expected one R0; found {value} m here and {r0_m} m "
                f"on line {r0_line}. {_FIX_FILE}"
            )
        r0_m, r0_line = value, lineno
    if r0_m is None:
        raise GradientFileError(
            f"{path}: expected a header line giving the reference radius, such as "
            f"' 0.250 m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0;'; found none. "
            f"{_FIX_FILE}"
        )
    if not terms:
        raise GradientFileError(
            f"{path}: expected coefficient lines 'NO. A|B( n, m) VALUE AXIS' such as "
            f"{_EXAMPLE_TERM}; found none. {_FIX_FILE}"
        )
    return GradientCoefficients.from_terms(r0_m * 1000.0, terms)


def _number(value: float) -> str:
    """Positional notation, shortest digits that read back exactly, always with a '.'."""
    return np.format_float_positional(float(value), unique=True, trim="0")


def write_grad(path: str | Path, coeffs: GradientCoefficients, *, name: str = "synthetic") -> Path:
    """Write a SYNTHETIC Siemens-format ``.grad`` file (tests and examples only).

    Parameters
    ----------
    path
        The file to write (atomically).
    coeffs
        The coefficients; ``R0`` is written in metres and must be a whole number of
        micrometres. Every nonzero term is written (zero terms are left out, as in a vendor
        file).
    name
        The coil name put in the header.

    Returns
    -------
    Path
        ``path``. :func:`read_grad` and gradunwarp's ``.grad`` reader both read it.

    Raises
    ------
    ValueError
        ``R0`` not a whole number of micrometres, or a name with a line break.
    """
    r0_m = coeffs.r0_mm / 1000.0
    if abs(round(coeffs.r0_mm * 1000.0) - coeffs.r0_mm * 1000.0) > 1e-6:
        raise ValueError(f"r0_mm: expected a whole number of micrometres; found {coeffs.r0_mm}")
    if "\n" in name or "\r" in name:
        raise ValueError(f"name: expected one line; found {name!r}")
    lines = [
        "#*[ Script ****************************************************************\\",
        "#",
        f"# Name        : {Path(path).name}",
        "#",
        "# Description : SYNTHETIC Legendre coefficients in spherical harmonics, written",
        "#               by echoprep for tests; they describe no real gradient coil",
        "#",
        "#****************************************************************************/",
        "",
        "#*] END: */",
        f" {name}, Gradientsystem synthetic, Gx,y,z = 0/0/0 mT/m",
        " win_low = 0, win_high = 0, win_algo = 0, win_dummy = 2;",
        f" {r0_m:.6f} m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0;",
        " 0 = CoSyMode;",
        " Expansion in Spherical Harmonics",
        " ================================",
        "",
        " NO. TYPE            SPECTRUM                     AXIS",
        "",
    ]
    for number, (axis, kind, n, m, value) in enumerate(coeffs.terms(), start=1):
        lines.append(f"{number:4d} {kind}({n:2d},{m:2d})   {_number(value):>24}   {axis}")
    return write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# a correction as the stages take it


def load_gradient(
    spec: Mapping[str, Any], image: str = "BOLD"
) -> tuple[GradientCoefficients, str, Path]:
    """The coefficients, patient position and file of a gradient spec.

    Parameters
    ----------
    spec
        ``{"coefficients": path of a Siemens .grad file, "patient_position": "HFS" | "HFP"}``
        (the position defaults to HFS).
    image
        The image whose sidecar gave the position, for the message (``"BOLD"``, ``"T1w"``).

    Raises
    ------
    StageInputError
        A missing or malformed file (:class:`GradientFileError`), an unknown patient position.
    """
    path = Path(spec["coefficients"])
    position = str(spec.get("patient_position") or "HFS")
    if position not in PATIENT_POSITIONS:
        raise StageInputError(
            f"{path}: expected a patient position of {', '.join(PATIENT_POSITIONS)} for the "
            f"gradient-nonlinearity correction; found {position!r}. Fix: set PatientPosition "
            f"in the {image} sidecar, or leave the scanner out of "
            "spatial.gradient_coefficients."
        )
    return read_grad(path), position, path


def correction_record(
    coeffs: GradientCoefficients, position: str, path: Path, max_displacement_mm: float
) -> dict[str, Any]:
    """The sidecars' ``GradientNonlinearity`` of an applied correction: the file, ``R0``, the
    order, the patient position and the largest ``|d|`` (mm) over the corrected grid."""
    return {
        "Applied": True,
        "Coefficients": str(path),
        "R0": coeffs.r0_mm,
        "R0Units": "mm",
        "MaxOrder": coeffs.max_order,
        "PatientPosition": position,
        "MaxDisplacementMm": round(float(max_displacement_mm), 4),
    }


def correct_image(
    data: np.ndarray, affine: np.ndarray, spec: Mapping[str, Any], image: str
) -> tuple[np.ndarray, dict[str, Any], Path]:
    """An anatomical image corrected on its own grid (before any other step uses it).

    Parameters
    ----------
    data
        ``(nx, ny, nz)`` the image as the scanner wrote it (world frame: the scanner's).
    affine
        ``(4, 4)`` its voxel -> RAS+ world affine.
    spec
        As in :func:`load_gradient`.
    image
        What it is (``"T1w"``, ``"T2w"``): its sidecar gave the patient position.

    Returns
    -------
    data
        ``(nx, ny, nz)`` float32: the image at ``p + d(p)``, cubic B-spline (mode nearest;
        :func:`echoprep.kernels.geometry.gradients.unwarp_image`).
    record
        :func:`correction_record` and how it was applied.
    path
        The coefficient file (a source of every output).

    Raises
    ------
    StageInputError
        As :func:`load_gradient`.
    """
    coeffs, position, path = load_gradient(spec, image)
    out, largest = unwarp_image(data, affine, coeffs, patient_position=position, order=3)
    record = correction_record(coeffs, position, path, largest)
    record["Image"] = image
    record["Grid"] = f"the {image}'s own grid (d evaluated at every voxel centre)"
    record["Interpolation"] = (
        "cubic B-spline at p + d(p) (scipy.ndimage.map_coordinates, order 3, mode nearest), "
        "before any other step; no Jacobian intensity correction"
    )
    return out, record, path


__all__ = [
    "GradientFileError",
    "correct_image",
    "correction_record",
    "load_gradient",
    "read_grad",
    "write_grad",
]

"""Gradient-nonlinearity displacement (kernels/geometry/gradients.py, io/gradients.py, the
``echoprep gradient-warp`` command; docs/gradients.md): known answers worked out by hand from
the spherical-harmonic formula, the .grad reader and writer, the command end to end, and parity
with gradunwarp (an independent implementation, run as a black box) where it is installed.
Every coefficient file is synthetic, written into tmp_path."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.special import lpmv

from echoprep.cli import main
from echoprep.io.gradients import GradientFileError, read_grad, write_grad
from echoprep.kernels.geometry.gradients import (
    AXES,
    GradientCoefficients,
    associated_legendre,
    device_displacement,
    device_from_ras,
    displacement,
    siemens_normalization,
)

R0 = 250.0  # mm


def _coeffs(terms: dict[tuple[str, str, int, int], float], **kw) -> GradientCoefficients:
    return GradientCoefficients.from_terms(R0, terms, **kw)


def _random_terms(
    rng: np.random.Generator, orders: range, scale: float = 0.02
) -> dict[tuple[str, str, int, int], float]:
    """Every A and B term (B only for m > 0) of the orders on all three axes; values rounded
    to 6 decimals (as in a vendor file)."""
    terms = {}
    for axis in AXES:
        for n in orders:
            for m in range(n + 1):
                terms[(axis, "A", n, m)] = round(float(rng.normal(0, scale)), 6)
                if m:
                    terms[(axis, "B", n, m)] = round(float(rng.normal(0, scale)), 6)
    return terms


def _ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """``n`` points uniform in a ball (mm), plus the centre and the six axis points at the
    surface (the z axis: where theta and phi are singular)."""
    v = rng.normal(size=(n, 3))
    v *= (radius * rng.uniform(0, 1, n) ** (1 / 3) / np.linalg.norm(v, axis=1))[:, None]
    axes = np.vstack([np.zeros(3), radius * np.eye(3), -radius * np.eye(3)])
    return np.vstack([v, axes])


# --- known answers: the formula by hand -----------------------------------------------------


def test_only_the_linear_terms_normalised_away_give_no_displacement():
    """A perfectly linear coil: the file lists only its linear terms, which are 0 (the header's
    A(1,0) = B(1,1) = A(1,1) = 0); the field is 0 everywhere (RAS and device frames)."""
    coeffs = _coeffs({("x", "A", 1, 1): 0.0, ("y", "B", 1, 1): 0.0, ("z", "A", 1, 0): 0.0})
    pts = _ball(np.random.default_rng(0), 50, 200.0)
    assert coeffs.max_order == 1
    assert np.array_equal(displacement(coeffs, pts), np.zeros_like(pts))


def test_a_z_axis_a30_term_gives_its_closed_form():
    """A_z(3,0) = c: d_z = R0 c (r/R0)^3 P_3(cos theta) = c z (5z^2 - 3r^2) / (2 R0^2) in the
    device frame, d_x = d_y = 0; on the axis at z = 100 mm: c 100^3 / 250^2 = 16 c mm."""
    c = -0.0659
    coeffs = _coeffs({("z", "A", 3, 0): c})
    dev = np.array([[0, 0, 100.0], [30.0, -40.0, 0.0], [10.0, 20.0, 30.0], [-50.0, 5.0, -70.0]])
    x, y, z = dev.T
    r2 = x * x + y * y + z * z
    expected_z = c * z * (5 * z * z - 3 * r2) / (2 * R0 * R0)
    got = device_displacement(coeffs, dev)
    assert got[0, 2] == pytest.approx(16 * c, rel=1e-12)
    assert got[1, 2] == 0.0  # the equator: P_3(0) = 0
    np.testing.assert_allclose(got[:, 2], expected_z, rtol=1e-12, atol=1e-15)
    assert np.all(got[:, :2] == 0.0)


def test_an_x_axis_a31_term_gives_its_closed_form():
    """A_x(3,1) = c with the Siemens normalisation sqrt(7 * 2! / (2 * 4!)) = sqrt(7/24) of
    P_3^1 = (3/2)(5 cos^2 theta - 1) sin theta (no Condon-Shortley phase):
    d_x = c sqrt(7/24) (3/2) x (5 z^2 - r^2) / R0^2."""
    c = 0.0123
    coeffs = _coeffs({("x", "A", 3, 1): c})
    dev = np.array([[50.0, 0, 0], [40.0, 30.0, 60.0], [-20.0, 70.0, -10.0]])
    x, y, z = dev.T
    r2 = x * x + y * y + z * z
    expected = c * math.sqrt(7 / 24) * 1.5 * x * (5 * z * z - r2) / R0**2
    got = device_displacement(coeffs, dev)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-12)
    assert got[0, 0] == pytest.approx(-c * math.sqrt(7 / 24) * 1.5 * 50.0**3 / R0**2)
    assert np.all(got[:, 1:] == 0.0)


def test_a_linear_term_scales_by_the_siemens_factor_and_b_terms_use_sine():
    """A_x(1,1) = c: d_x = c sqrt(3/4) x (normalisation sqrt(3 * 0! / (2 * 2!)));
    B_y(2,2) = c: d_y = c sqrt(5 * 0! / (2 * 4!)) * 3 * 2xy / R0 (sin 2 phi r^2 sin^2 = 2xy)."""
    c = 0.01
    dev = np.array([[80.0, -30.0, 20.0], [-10.0, 45.0, 5.0]])
    x, y, _ = dev.T
    got = device_displacement(_coeffs({("x", "A", 1, 1): c}), dev)
    np.testing.assert_allclose(got[:, 0], c * math.sqrt(3) / 2 * x, rtol=1e-12)
    got = device_displacement(_coeffs({("y", "B", 2, 2): c}), dev)
    np.testing.assert_allclose(got[:, 1], c * math.sqrt(5 / 48) * 3 * 2 * x * y / R0, rtol=1e-12)
    assert siemens_normalization(2, 0) == 1.0
    assert siemens_normalization(1, 1) == pytest.approx(math.sqrt(3) / 2)


def test_parity_and_mirror_symmetries_of_the_harmonics():
    """Solid harmonics of order n have parity (-1)^n: d(-p) = (-1)^n d(p); cosine (A) terms
    are even and sine (B) terms odd under y -> -y (device frame)."""
    rng = np.random.default_rng(1)
    pts = _ball(rng, 200, 150.0)
    odd = _coeffs({k: v for k, v in _random_terms(rng, range(1, 6)).items() if k[2] % 2})
    even = _coeffs({k: v for k, v in _random_terms(rng, range(0, 6)).items() if k[2] % 2 == 0})
    np.testing.assert_allclose(device_displacement(odd, -pts), -device_displacement(odd, pts))
    np.testing.assert_allclose(device_displacement(even, -pts), device_displacement(even, pts))
    terms = _random_terms(rng, range(0, 6))
    cosine = _coeffs({k: v for k, v in terms.items() if k[1] == "A"})
    sine = _coeffs({k: v for k, v in terms.items() if k[1] == "B"})
    mirrored = pts * [1.0, -1.0, 1.0]
    np.testing.assert_allclose(
        device_displacement(cosine, mirrored), device_displacement(cosine, pts)
    )
    np.testing.assert_allclose(device_displacement(sine, mirrored), -device_displacement(sine, pts))
    assert np.abs(device_displacement(sine, pts)).max() > 0.1  # the check can fail


def test_ras_points_map_to_the_device_frame_lai_for_head_first_supine():
    """HFS: device = LAI = diag(-1, 1, -1) RAS, for the point and for the vector. A_z(2,0) is
    even in z, so only the vector's flip shows: d_z(RAS) = -d_z(device)."""
    assert np.array_equal(device_from_ras("HFS"), np.diag([-1.0, 1.0, -1.0]))
    assert np.array_equal(device_from_ras("HFP"), np.diag([1.0, -1.0, -1.0]))
    c = 0.02
    coeffs = _coeffs({("z", "A", 2, 0): c, ("x", "A", 2, 1): c})
    ras = np.array([[30.0, 40.0, 50.0]])
    dev = np.array([[-30.0, 40.0, -50.0]])
    x, y, z = dev[0]
    r2 = x * x + y * y + z * z
    d_dev = device_displacement(coeffs, dev)[0]
    assert d_dev[2] == pytest.approx(c * (3 * z * z - r2) / (2 * R0))
    # A_x(2,1): r^2 P~_2^1 cos phi = sqrt(5/12) * 3 x z
    assert d_dev[0] == pytest.approx(c * math.sqrt(5 / 12) * 3 * x * z / R0)
    np.testing.assert_allclose(displacement(coeffs, ras)[0], d_dev * [-1, 1, -1])
    with pytest.raises(ValueError, match=r"^patient_position: expected one of HFS, HFP; "):
        displacement(coeffs, ras, patient_position="FFS")


def test_no_singularity_at_the_origin_or_on_the_z_axis_and_chunks_do_not_matter():
    rng = np.random.default_rng(2)
    coeffs = _coeffs(_random_terms(rng, range(0, 8)))
    pts = np.vstack([_ball(rng, 300, 180.0), [[0, 0, 0], [0, 0, 1e-9], [0, 0, -120.0]]])
    whole = displacement(coeffs, pts, chunk=10_000)
    assert np.isfinite(whole).all()
    # the constant n = 0 term is all that is left at the centre: d = R0 A(0, 0) per axis
    a00 = coeffs.cosine[:, 0, 0] * R0 * [-1, 1, -1]
    np.testing.assert_allclose(displacement(coeffs, np.zeros((1, 3)))[0], a00, atol=1e-12)
    assert np.array_equal(displacement(coeffs, pts, chunk=7), whole)
    with pytest.raises(ValueError, match=r"^chunk: expected a positive number of points"):
        displacement(coeffs, pts, chunk=0)


def test_legendre_recurrence_matches_scipy_to_order_20():
    """The recurrence against an independent evaluation: scipy's lpmv (Condon-Shortley phase
    included, hence the (-1)^m) times the Siemens factor, every n, m <= 20."""
    t = np.concatenate([np.linspace(-1, 1, 41), [0.999999, -0.3333]])
    ours = associated_legendre(t, 20)
    for n in range(21):
        for m in range(n + 1):
            ref = (-1) ** m * siemens_normalization(n, m) * lpmv(m, n, t)
            np.testing.assert_allclose(
                ours[n, m], ref, rtol=1e-10, atol=1e-12 * max(1, abs(ref).max())
            )
    assert np.all(ours[np.triu_indices(21, k=1)] == 0)


def test_order_20_field_matches_a_by_hand_sum():
    """The Cartesian recurrence against the textbook sum over spherical coordinates with
    scipy's lpmv, at order 20 and points out to 240 mm (where order 20 still weighs)."""
    rng = np.random.default_rng(3)
    coeffs = _coeffs(_random_terms(rng, range(0, 21), scale=0.005))
    pts = _ball(rng, 300, 240.0)
    pts = pts[np.linalg.norm(pts, axis=1) > 0]  # not the centre: theta is undefined there
    x, y, z = pts.T
    r = np.sqrt(x * x + y * y + z * z)
    cos_t, phi = z / r, np.arctan2(y, x)
    expected = np.zeros_like(pts)
    for a in range(3):
        for n in range(21):
            for m in range(n + 1):
                p = (-1) ** m * siemens_normalization(n, m) * lpmv(m, n, cos_t)
                angular = coeffs.cosine[a, n, m] * np.cos(m * phi) + coeffs.sine[a, n, m] * np.sin(
                    m * phi
                )
                expected[:, a] += R0 * (r / R0) ** n * p * angular
    got = device_displacement(coeffs, pts)
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_coefficients_refuse_bad_shapes_and_terms_above_the_diagonal():
    with pytest.raises(ValueError, match=r"^r0_mm: expected a positive number of mm"):
        GradientCoefficients(0.0, np.zeros((3, 2, 2)), np.zeros((3, 2, 2)))
    bad = np.zeros((3, 3, 3))
    bad[1, 1, 2] = 0.1
    with pytest.raises(ValueError, match=r"^cosine\[1, 1, 2\]: expected 0 <= m <= n"):
        GradientCoefficients(R0, bad, np.zeros((3, 3, 3)))
    ok = _coeffs({("x", "A", 3, 1): 0.5})
    with pytest.raises(ValueError):
        ok.cosine[0, 3, 1] = 1.0  # read-only


# --- the .grad reader and writer -------------------------------------------------------------


def test_grad_file_round_trip(tmp_path: Path):
    rng = np.random.default_rng(4)
    terms = _random_terms(rng, range(2, 6))
    terms[("z", "A", 7, 0)] = 1.5e-11  # exact also far below the 6 decimals of a vendor file
    coeffs = _coeffs(terms)
    path = write_grad(tmp_path / "synthetic.grad", coeffs)
    text = path.read_text()
    assert "SYNTHETIC" in text and " 0.250000 m = R0," in text
    assert re.search(r"^\s+\d+ A\( 7, 0\)\s+0\.000000000015\s+z$", text, re.M)
    back = read_grad(path)
    assert back.r0_mm == R0 and back.max_order == 7
    assert np.array_equal(back.cosine, coeffs.cosine)
    assert np.array_equal(back.sine, coeffs.sine)


def test_reader_takes_a_vendor_style_layout(tmp_path: Path):
    """Header text, comments with non-ASCII bytes, ';' after a value, upper-case axis."""
    path = tmp_path / "coil.grad"
    path.write_bytes(
        b"#*[ Script ****\n# Author : R. K\xf6nig\n#*] END: */\n"
        b" coil, Gradientsystem , Gx,y,z = 80/80 mT/m\n"
        b" 0.250 m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0;\n 0 = CoSyMode,\n\n"
        b" NO. TYPE            SPECTRUM                     AXIS\n\n"
        b"  1 A( 3, 0)           -0.06590400                   z\n"
        b"101 A( 3, 1)            1.2e-2                       X;\n"
        b"201 B(3,1)              .5                           y\n"
    )
    coeffs = read_grad(path)
    assert coeffs.r0_mm == 250.0 and coeffs.max_order == 3
    assert coeffs.cosine[2, 3, 0] == -0.065904
    assert coeffs.cosine[0, 3, 1] == 0.012
    assert coeffs.sine[1, 3, 1] == 0.5
    assert list(coeffs.terms()) == [
        ("x", "A", 3, 1, 0.012),
        ("y", "B", 3, 1, 0.5),
        ("z", "A", 3, 0, -0.065904),
    ]


HEADER = " 0.25 m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0;\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            HEADER + "  1 A( 3, 0)   -0.01\n",
            r", line 2: expected a coefficient line 'NO\. A\|B\( n, m\) VALUE AXIS' such as "
            r"'  1 A\( 3, 0\)  -0\.0659 z' \(AXIS x, y or z\); found '1 A\( 3, 0\)   -0\.01'\. "
            r"Fix: pass the coil's coefficient file as the scanner vendor supplies it\.$",
        ),
        (
            HEADER + "  1 A( 2, 3)   -0.01 z\n",
            r", line 2: expected 0 <= m <= n in A\( n, m\); found A\(2, 3\)\. Fix: ",
        ),
        (
            HEADER + "  1 B( 3, 1)  0.1 y\n  2 B( 3, 1)  0.2 y\n",
            r", line 3: expected each term once; found B\(3, 1\) of axis y again \(first on "
            r"line 2\)\. ",
        ),
        (
            "  1 A( 3, 0)   -0.01 z\n",
            r": expected a header line giving the reference radius, such as ' 0\.250 m = R0, "
            r"lnorm = 4\? A\(1,0\) = B\(1,1\) = A\(1,1\) = 0;'; found none\. Fix: ",
        ),
        (
            HEADER,
            r": expected coefficient lines 'NO\. A\|B\( n, m\) VALUE AXIS' such as "
            r"'  1 A\( 3, 0\)  -0\.0659 z'; found none\. ",
        ),
        (
            HEADER + " 0.3 m = R0\n  1 A( 3, 0)   -0.01 z\n",
            r", line 2: expected one R0; found 0\.3 m here and 0\.25 m on line 1\. ",
        ),
    ],
)
def test_reader_refuses_malformed_files_naming_file_line_and_fix(
    tmp_path: Path, body: str, message: str
):
    path = tmp_path / "bad.grad"
    path.write_text(body)
    with pytest.raises(GradientFileError, match="^" + re.escape(str(path)) + message):
        read_grad(path)


def test_reader_refuses_coef_files_and_missing_files(tmp_path: Path):
    coef = tmp_path / "avanto.coef"
    coef.write_text("alpha_z 3 0 -0.01\n")
    with pytest.raises(
        GradientFileError,
        match=rf"^{re.escape(str(coef))}: expected a Siemens \.grad coefficient file; found a "
        r"\.coef file, whose format is not documented and which does not state R0\. Fix: pass "
        r"the coil's \.grad file",
    ):
        read_grad(coef)
    missing = tmp_path / "nope.grad"
    with pytest.raises(
        GradientFileError,
        match=rf"^{re.escape(str(missing))}: expected a readable Siemens \.grad coefficient "
        r"file; could not read it \(No such file or directory\)\. Fix: check the path given "
        r"to --coefficients\.$",
    ):
        read_grad(missing)


# --- the command -----------------------------------------------------------------------------


def _reference(tmp_path: Path, shape: tuple[int, ...] = (5, 4, 3)) -> tuple[Path, np.ndarray]:
    affine = np.array(
        [[-2.0, 0.1, 0.0, 40.0], [0.0, 2.5, -0.2, -30.0], [0.05, 0.0, 3.0, 10.0], [0, 0, 0, 1]]
    )
    path = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), path)
    return path, affine


def test_command_writes_the_warp_and_its_sidecar(tmp_path: Path):
    rng = np.random.default_rng(5)
    coeffs = _coeffs(_random_terms(rng, range(2, 6)))
    grad = write_grad(tmp_path / "coil.grad", coeffs)
    ref, affine = _reference(tmp_path, (5, 4, 3, 2))  # a 4D series: its first volume's grid
    out = tmp_path / "warp" / "sub-01_desc-gradient_xfm.nii.gz"
    assert (
        main(
            [
                "gradient-warp",
                "--coefficients",
                str(grad),
                "--reference",
                str(ref),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = nib.load(out)
    assert img.shape == (5, 4, 3, 3)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    data = img.get_fdata()
    ijk = np.array([[0, 0, 0], [4, 3, 2], [2, 1, 1]])
    world = nib.affines.apply_affine(affine, ijk)
    expected = displacement(coeffs, world)
    np.testing.assert_allclose(data[tuple(ijk.T)], expected, rtol=1e-6, atol=1e-6)
    assert np.abs(data).max() > 0.05  # a field, not zeros
    side = json.loads(out.with_name("sub-01_desc-gradient_xfm.json").read_text())
    assert side["Sources"] == [str(grad), str(ref)]
    assert side["R0"] == 250.0 and side["MaxOrder"] == 5 and side["Units"] == "mm"
    assert "p + d(p)" in side["Convention"] and "RAS+" in side["Convention"]
    assert side["Parameters"] == {"PatientPosition": "HFS"}


@pytest.mark.parametrize("case", ["2d", "missing", "coef", "out"])
def test_command_refuses_bad_input_with_a_message_and_status_2(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
):
    grad = write_grad(tmp_path / "coil.grad", _coeffs({("z", "A", 3, 0): -0.05}))
    ref, _ = _reference(tmp_path)
    out = tmp_path / "warp.nii.gz"
    expected = {
        "2d": "expected a 3D or 4D image (its grid is the warp's); found shape (5, 4)",
        "missing": "could not read it (No such file or directory)",
        "coef": "found a .coef file, whose format is not documented",
        "out": "expected an output name ending in .nii.gz or .nii; found 'warp.mgz'",
    }[case]
    if case == "2d":
        nib.save(nib.Nifti1Image(np.ones((5, 4), np.float32), np.eye(4)), ref)
    elif case == "missing":
        grad = tmp_path / "none.grad"
    elif case == "coef":
        grad = grad.rename(tmp_path / "coil.coef")
    else:
        out = tmp_path / "warp.mgz"
    argv = [
        "gradient-warp",
        "--coefficients",
        str(grad),
        "--reference",
        str(ref),
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoprep gradient-warp: ") and expected in err
    assert "Fix:" in err and "Traceback" not in err
    assert not out.exists()


# --- parity with gradunwarp (independent reference, MIT) -------------------------------------


def test_parity_with_gradunwarp_in_a_200_mm_sphere(tmp_path: Path):
    """The same synthetic file (all A and B terms of orders 0..5 on the three axes), read by
    each package's own reader and evaluated by gradunwarp's point evaluation at 4007 points in
    a 200 mm-diameter sphere (device frame): max |ours - gradunwarp| <= 0.01 mm. gradunwarp
    shifts x by 1e-4 mm to dodge r = 0, so the two agree to about 1e-5 mm, not to rounding."""
    pytest.importorskip("gradunwarp", reason="gradunwarp (the test extra) is not installed")
    from gradunwarp.core.coeffs import get_coefficients
    from gradunwarp.core.unwarp_resample import eval_spherical_harmonics
    from gradunwarp.core.utils import CoordsVector

    rng = np.random.default_rng(6)
    grad = write_grad(tmp_path / "coil.grad", _coeffs(_random_terms(rng, range(0, 6))))
    theirs_coeffs = get_coefficients("siemens", str(grad))
    pts = _ball(rng, 4000, 100.0)
    field, _ = eval_spherical_harmonics(theirs_coeffs, "siemens", CoordsVector(*pts.T))
    theirs = np.stack([field.x, field.y, field.z], axis=1)
    ours = device_displacement(read_grad(grad), pts)
    assert np.abs(theirs).max() > 0.5  # mm: a real field
    assert np.abs(ours - theirs).max() <= 0.01


def test_frame_and_direction_agree_with_gradunwarps_whole_image_unwarp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """gradunwarp's unwarping (RAS image in, RAS image out) of images whose values are their
    own RAS x, y or z coordinate returns p + d(p) at each voxel: our RAS displacement within
    0.1 mm (its field is interpolated from a coarse grid); the LPS or identity frames, or the
    opposite direction, miss by more than 0.3 mm (by 0.52 to 1.08 mm; ours by 0.05 mm)."""
    pytest.importorskip("gradunwarp", reason="gradunwarp (the test extra) is not installed")
    from gradunwarp.core.coeffs import get_coefficients
    from gradunwarp.core.unwarp_resample import Unwarper

    rng = np.random.default_rng(7)
    coeffs = _coeffs(_random_terms(rng, range(2, 4)))
    grad = write_grad(tmp_path / "coil.grad", coeffs)
    theirs_coeffs = get_coefficients("siemens", str(grad))
    shape = (16, 16, 16)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    affine[:3, 3] = [-42.0, -52.0, -35.0]
    ijk = np.indices(shape).reshape(3, -1).T
    world = nib.affines.apply_affine(affine, ijk)
    monkeypatch.chdir(tmp_path)  # gradunwarp writes fullWarp_abs.nii.gz into the working folder
    sampled = np.zeros_like(world)
    for axis in range(3):
        vol = world[:, axis].reshape(shape).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, affine), "coordinate.nii")
        unwarper = Unwarper(vol, affine, "siemens", theirs_coeffs, "coordinate.nii")
        unwarper.nojac, unwarper.fovmin, unwarper.fovmax, unwarper.numpoints = True, -0.12, 0.12, 61
        with contextlib.redirect_stdout(io.StringIO()):
            unwarper.run()
        sampled[:, axis] = unwarper.out.reshape(-1)
    theirs = sampled - world
    inner = np.all((ijk >= 3) & (ijk <= 12), axis=1)  # its samples stay inside the image
    ours = displacement(coeffs, world)
    assert np.abs(ours[inner]).max() > 0.5
    assert np.abs(ours[inner] - theirs[inner]).max() <= 0.1
    for frame in (np.diag([-1.0, -1.0, 1.0]), np.eye(3)):  # LPS, identity
        other = device_displacement(coeffs, world @ frame.T) @ frame
        assert np.abs(other[inner] - theirs[inner]).max() > 0.3
    assert np.abs(-ours[inner] - theirs[inner]).max() > 0.3

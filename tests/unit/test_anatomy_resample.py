"""apply_to_grid: known answers for saved ANTs transforms (identity, shift, rotation, chains).

ANTs semantics pinned here: a transform T maps a point p of the reference grid to T(p) in the
image, so ``output(p) = image(T(p))``; ANTs works in LPS world coordinates (x and y negated
relative to nibabel's RAS). In a list, the last transform is applied to the image first.
"""

from __future__ import annotations

from types import SimpleNamespace

import ants
import nibabel as nib
import numpy as np
import pytest

from echoprep.adapters.ants import ants_image as to_ants
from echoprep.adapters.ants import apply_to_grid, from_ants

N = 21  # voxels per axis; world (0, 0, 0) is the centre voxel (10, 10, 10)
VOX = 2.0


def _grid(n: int = N, vox: float = VOX) -> np.ndarray:
    affine = np.diag([vox, vox, vox, 1.0])
    affine[:3, 3] = -vox * (n - 1) / 2
    return affine


def _object() -> np.ndarray:
    """An asymmetric (L-shaped, off-centre) uint8 mask: flips and swaps cannot hide."""
    mask = np.zeros((N, N, N), np.uint8)
    mask[12:17, 5:8, 8:11] = 1
    mask[12:14, 8:14, 8:11] = 1
    return mask


def _affine_file(tmp_path, name, matrix=None, translation_lps=(0.0, 0.0, 0.0)):
    tx = ants.create_ants_transform(
        transform_type="AffineTransform",
        dimension=3,
        matrix=np.eye(3) if matrix is None else np.asarray(matrix, float),
        translation=tuple(float(v) for v in translation_lps),
        center=(0.0, 0.0, 0.0),
    )
    path = tmp_path / f"{name}.mat"
    ants.write_transform(tx, str(path))
    return path


def _rz90() -> np.ndarray:
    return np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_to_ants_matches_antspy_conversion_and_round_trips():
    rot = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # oblique with flips
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 2.0, 2.5])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    mine = to_ants(data, affine)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    theirs = ants.from_nibabel_nifti(img)
    np.testing.assert_allclose(mine.origin, theirs.origin, atol=1e-6)
    np.testing.assert_allclose(mine.spacing, theirs.spacing, atol=1e-6)
    np.testing.assert_allclose(mine.direction, theirs.direction, atol=1e-6)
    back, back_affine = from_ants(mine)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_affine, affine, atol=1e-6)


def test_identity_returns_the_same_mask(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    out = apply_to_grid(img, [], img, "nearest")
    np.testing.assert_array_equal(np.asarray(out.dataobj), mask)
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, img.affine)
    ident = _affine_file(tmp_path, "identity")
    for method in ("nearest", "label"):
        out = apply_to_grid(img, [ident], (mask.shape, img.affine), method)
        np.testing.assert_array_equal(np.asarray(out.dataobj), mask)


def test_translation_moves_the_mask_by_the_known_amount(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    # T(p) = p + t in LPS; t_LPS = (4, -6, 2) mm is t_RAS = (-4, 6, 2) mm, and
    # output(q) = mask(q + t_RAS): the object moves by -t_RAS = (+4, -6, -2) mm = (2, -3, -1) vox
    shift = _affine_file(tmp_path, "shift", translation_lps=(4.0, -6.0, 2.0))
    out = np.asarray(apply_to_grid(img, [shift], img, "nearest").dataobj)
    expected = np.roll(mask, (2, -3, -1), axis=(0, 1, 2))
    np.testing.assert_array_equal(out, expected)


def test_rotation_about_z_gives_the_known_mask(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    rot = _affine_file(tmp_path, "rot", matrix=_rz90())
    out = np.asarray(apply_to_grid(img, [rot], img, "nearest").dataobj)
    # Rz commutes with the LPS flip, so output(q) = mask(Rz q) in RAS too:
    # world (x, y) of output voxel (i, j) is read at (-y, x): index (20 - j, i)
    i, j, k = np.meshgrid(np.arange(N), np.arange(N), np.arange(N), indexing="ij")
    src_i = (N - 1) - j
    expected = np.where(src_i < N, mask[np.clip(src_i, 0, N - 1), i, k], 0)
    np.testing.assert_array_equal(out, expected)
    assert out.sum() == mask.sum()


def test_world_matrices_follow_the_pull_convention(tmp_path):
    """A 4x4 RAS ``moving_from_fixed`` matrix M gives output(q) = image(M q)."""
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    shift = np.eye(4)
    shift[:3, 3] = (-4.0, 6.0, 2.0)  # RAS: the object moves by (+4, -6, -2) mm
    out = np.asarray(apply_to_grid(img, [shift], img, "nearest").dataobj)
    np.testing.assert_array_equal(out, np.roll(mask, (2, -3, -1), axis=(0, 1, 2)))
    same = _affine_file(tmp_path, "shift", translation_lps=(4.0, -6.0, 2.0))
    np.testing.assert_array_equal(
        out, np.asarray(apply_to_grid(img, [same], img, "nearest").dataobj)
    )
    rot = np.eye(4)
    rot[:3, :3] = _rz90()
    by_matrix = apply_to_grid(img, [rot], img, "nearest")
    by_file = apply_to_grid(img, [_affine_file(tmp_path, "rot", matrix=_rz90())], img, "nearest")
    np.testing.assert_array_equal(np.asarray(by_matrix.dataobj), np.asarray(by_file.dataobj))
    with pytest.raises(ValueError, match="must be a 4x4 affine"):
        apply_to_grid(img, [np.eye(3)], img)


def test_chain_applies_the_last_transform_first(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    rot = _affine_file(tmp_path, "rot", matrix=_rz90())
    shift = _affine_file(tmp_path, "shift", translation_lps=(4.0, 0.0, 0.0))
    chained = np.asarray(apply_to_grid(img, [rot, shift], img, "nearest").dataobj)
    shift_first = apply_to_grid(apply_to_grid(img, [shift], img, "nearest"), [rot], img, "nearest")
    rot_first = apply_to_grid(apply_to_grid(img, [rot], img, "nearest"), [shift], img, "nearest")
    np.testing.assert_array_equal(chained, np.asarray(shift_first.dataobj))
    assert not np.array_equal(chained, np.asarray(rot_first.dataobj))  # the order matters


def test_an_inverted_affine_undoes_the_transform(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    shift = _affine_file(tmp_path, "shift", translation_lps=(4.0, -6.0, 2.0))
    there = apply_to_grid(img, [shift], img, "nearest")
    back = apply_to_grid(there, [(shift, True)], img, "nearest")
    np.testing.assert_array_equal(np.asarray(back.dataobj), mask)


def test_labels_stay_integers_from_the_input(tmp_path):
    labels = _object() * 3
    labels[12:14, 8:14, 8:11] = 7
    img = nib.Nifti1Image(labels.astype(np.uint8), _grid())
    angle = np.deg2rad(10.0)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    tx = _affine_file(tmp_path, "rot10", matrix=rot, translation_lps=(1.3, -0.7, 0.4))
    coarse = (tuple(s // 2 + 1 for s in labels.shape), _grid(N // 2 + 1, 2 * VOX))
    for method in ("nearest", "label"):
        for ref in (img, coarse):
            out = apply_to_grid(img, [tx], ref, method)
            values = np.asarray(out.dataobj)
            assert values.dtype == np.uint8, method
            assert set(np.unique(values)) <= {0, 3, 7}, (method, np.unique(values))
            assert {3, 7} <= set(np.unique(values)), method
    linear = np.asarray(apply_to_grid(img, [tx], img, "linear").dataobj)
    assert linear.dtype == np.float32
    assert np.any((linear > 0.5) & (linear < 2.5))  # interpolated values between the labels
    floats = nib.Nifti1Image(labels.astype(np.float32), _grid())
    assert np.asarray(apply_to_grid(floats, [tx], img, "nearest").dataobj).dtype == np.int32


def test_reference_as_image_or_shape_affine_and_on_another_grid(tmp_path):
    mask = _object()
    img = nib.Nifti1Image(mask, _grid())
    ref_img = nib.Nifti1Image(np.zeros((11, 11, 11), np.float32), _grid(11, 4.0))
    ref_file = tmp_path / "ref.nii.gz"
    nib.save(ref_img, ref_file)
    a = apply_to_grid(img, [], ref_img, "linear")
    b = apply_to_grid(img, [], ((11, 11, 11), ref_img.affine), "linear")
    c = apply_to_grid(img, [], ref_file, "linear")
    d = apply_to_grid(img, [], SimpleNamespace(shape=(11, 11, 11), affine=ref_img.affine))
    for other in (b, c, d):
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(other.dataobj))
    assert a.shape == (11, 11, 11)
    # the 4 mm grid samples every other 2 mm voxel centre: linear is exact there
    np.testing.assert_allclose(np.asarray(a.dataobj), mask[::2, ::2, ::2], atol=1e-6)


def test_outside_value_and_errors(tmp_path):
    img = nib.Nifti1Image(np.ones((N, N, N), np.float32), _grid())
    far = _affine_file(tmp_path, "far", translation_lps=(1000.0, 0.0, 0.0))
    out = apply_to_grid(img, [far], img, "linear", default_value=-1.0)
    assert np.all(np.asarray(out.dataobj) == -1.0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        apply_to_grid(img, [], img, "cubic")
    with pytest.raises(ValueError, match=r"missing\.h5 does not exist"):
        apply_to_grid(img, [tmp_path / "missing.h5"], img)
    h5 = tmp_path / "x.h5"
    h5.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot be inverted on the fly"):
        apply_to_grid(img, [(h5, True)], img)
    with pytest.raises(ValueError, match="expected a 3D image"):
        apply_to_grid(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), np.eye(4)), [], img)

"""Reading and writing NIfTI images for the stages: clear errors, float32 outputs, atomic saves."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from echoprep.io.atomic import atomic_path


class StageInputError(ValueError):
    """An input of a stage is unusable; the message names the file and the fix."""


def load_image(path: str | Path, what: str = "NIfTI image", ndim: int | None = None):
    """Open a NIfTI image (header only; data stay on disk until read).

    Parameters
    ----------
    path
        The file.
    what
        What the file should be, for the message (e.g. "magnitude series").
    ndim
        Required number of dimensions (4 for a BOLD series), or None.

    Raises
    ------
    StageInputError
        Unreadable file, or the wrong number of dimensions.
    """
    path = Path(path)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise StageInputError(
            f"{path}: expected a readable {what}; found an unreadable file ({exc}). "
            "Fix: re-export or re-download the file."
        ) from exc
    if ndim is not None and len(img.shape) != ndim:
        raise StageInputError(
            f"{path}: expected a {ndim}D {what}; found shape {img.shape}. "
            "Fix: pass the 4D BOLD series (x, y, z, volumes) of the echo."
        )
    return img


def check_same_grid(
    img: nib.Nifti1Image,
    ref: nib.Nifti1Image,
    *,
    path: str | Path,
    ref_path: str | Path,
    what: str = "image",
    fix: str = "Fix: pass images resampled to the same grid (same run, space and resolution).",
    atol: float = 1e-3,
) -> None:
    """Refuse an image whose voxel grid (first 3 dimensions and affine) differs from ``ref``'s.

    Parameters
    ----------
    img, ref
        The image checked and the reference image (headers only are read).
    path, ref_path
        Their files, for the message.
    what
        What ``img`` is, for the message (e.g. "brain mask").
    fix
        The fix given in the message.
    atol
        Tolerance on the affine entries (mm).

    Raises
    ------
    StageInputError
        Naming both files, the expected grid (shape, affine) and the one found.
    """
    same_shape = tuple(img.shape[:3]) == tuple(ref.shape[:3])
    if same_shape and np.allclose(img.affine, ref.affine, atol=atol):
        return
    raise StageInputError(
        f"{path}: expected a {what} on the grid of {ref_path} (shape {tuple(ref.shape[:3])}, "
        f"affine {np.round(ref.affine, 3).tolist()}); found shape {tuple(img.shape[:3])}, "
        f"affine {np.round(img.affine, 3).tolist()}. {fix}"
    )


def load_mask_on_grid(
    path: str | Path,
    like: nib.Nifti1Image,
    *,
    like_path: str | Path,
    what: str,
    fix: str,
    atol: float = 1e-3,
) -> np.ndarray:
    """A mask (voxels > 0) that must lie on the grid of ``like``.

    Parameters
    ----------
    path
        The mask image (3D, or 4D with one volume).
    like, like_path
        The image whose grid the mask must share, and its file (for the message).
    what, fix, atol
        As in :func:`check_same_grid`.

    Returns
    -------
    numpy.ndarray
        Bool, shape ``like.shape[:3]``.

    Raises
    ------
    StageInputError
        Unreadable file, or another grid.
    """
    img = load_image(path, what)
    check_same_grid(img, like, path=path, ref_path=like_path, what=what, fix=fix, atol=atol)
    return np.asanyarray(img.dataobj).reshape(like.shape[:3]) > 0


def float_image(data: np.ndarray, like: nib.Nifti1Image) -> nib.Nifti1Image:
    """A float32 image with the geometry and header of ``like`` (scaling reset to 1, 0)."""
    header = like.header.copy()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), like.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    return img


def atomic_save(img: nib.Nifti1Image, out: str | Path) -> Path:
    """Save to a temporary name in the same folder, then rename: no half-written outputs."""
    out = Path(out)
    with atomic_path(out) as tmp:
        nib.save(img, tmp)
    return out

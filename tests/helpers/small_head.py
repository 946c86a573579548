"""A legal small-head T1w: the simulator's T1w cropped to the field of view of issue 17.

A whole adult head is about 150-200 mm along every axis; the anatomy stage and discovery warn
below 80 mm (:data:`echoprep.io.bids_checks.T1W_USUAL_FOV_MM`) but must not refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

#: Field of view of the cropped T1w, mm (the 72×80×48 mm head that issue 17 met).
SMALL_FOV_MM = (72.0, 80.0, 48.0)


def crop_t1w(src: str | Path, dst: str | Path, fov_mm: Sequence[float] = SMALL_FOV_MM) -> Path:
    """Write the centre of a T1w cropped to ``fov_mm`` (whole voxels), affine kept consistent.

    Parameters
    ----------
    src, dst
        NIfTI files (``dst`` may be ``src``: the crop is read fully before writing).
    fov_mm
        Field of view along the three voxel axes, mm; must be whole multiples of the voxel size.

    Returns
    -------
    Path
        ``dst``.
    """
    img = nib.load(str(src))
    zooms = np.asarray(img.header.get_zooms()[:3], float)
    want = np.rint(np.asarray(fov_mm, float) / zooms).astype(int)
    assert np.allclose(want * zooms, fov_mm), (fov_mm, zooms)
    lo = (np.asarray(img.shape[:3]) - want) // 2
    assert np.all(lo >= 0), f"{src} is smaller than {fov_mm} mm"
    crop = img.slicer[tuple(slice(int(a), int(a + n)) for a, n in zip(lo, want, strict=True))]
    crop = nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine, crop.header)
    nib.save(crop, str(dst))
    return Path(dst)

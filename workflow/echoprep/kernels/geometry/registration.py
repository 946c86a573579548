"""Cross-modal rigid registration with ANTs (BOLD reference → T1w), as a 4×4 world matrix.

The matrix follows :mod:`echoprep.kernels.geometry.transforms`: ``moving_from_fixed`` takes a
head point of the fixed image (world RAS mm) to the same tissue point in the moving image. For
BOLD → T1w, ``fixed`` is the (brain-extracted) T1w and ``moving`` the BOLD reference, so the
result is ``ref_from_t1w``: the pull map the one-shot resampler needs
(:class:`echoprep.kernels.geometry.resampling.Chain`); ``t1w_from_ref`` is its inverse.

ANTs works in LPS: an ANTs ``MatrixOffsetTransform`` (matrix ``A``, translation ``t``, centre
``c``) maps a fixed LPS point ``y`` to ``A (y - c) + t + c`` in the moving image (ITK's
registration transform maps fixed → moving). In RAS, ``M_ras = F M_lps F`` with
``F = diag(-1, -1, 1, 1)``.

ANTs writes its transform to a temporary folder, which is removed before returning. ITK's
thread count is read from ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (set it before ANTs first
runs; the stage does). The Mattes metric samples points at random; ``seed`` fixes them, so
results are reproducible for a given thread count.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.kernels.geometry.transforms import check_matrix

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Accepted ``transform`` values (ANTsPy ``type_of_transform``).
TRANSFORMS = ("Rigid", "DenseRigid")
#: Accepted ``metric`` values (ANTsPy ``aff_metric``).
METRICS = ("mattes", "GC", "meansquares")


@dataclass(frozen=True)
class CrossModalResult:
    """Output of :func:`register_cross_modal`.

    Attributes
    ----------
    moving_from_fixed
        ``(4, 4)`` float64 world matrix (fixed head point → moving head point).
    fixed_from_moving
        Its inverse.
    transform, metric
        ANTs settings used.
    """

    moving_from_fixed: np.ndarray
    fixed_from_moving: np.ndarray
    transform: str
    metric: str


def ants_image(array: np.ndarray, affine: np.ndarray) -> Any:
    """An ``ants.ANTsImage`` of a 3D array with a NIfTI (RAS) voxel → world affine.

    Parameters
    ----------
    array
        ``(nx, ny, nz)`` real array (nibabel index order).
    affine
        ``(4, 4)`` voxel → world RAS (mm); must be rotation × positive scaling (no shear).

    Returns
    -------
    ants.ANTsImage
        float32 image with LPS origin, spacing and direction.
    """
    import ants

    a = check_matrix(affine, "ants_image: affine")
    lps = _LPS @ a
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("ants_image: the affine has shear; ANTs images need orthogonal axes")
    return ants.from_numpy(
        np.ascontiguousarray(array, dtype=np.float32),
        origin=tuple(float(v) for v in lps[:3, 3]),
        spacing=tuple(float(v) for v in spacing),
        direction=direction,
    )


def ants_transform_to_world(transform: Any) -> np.ndarray:
    """RAS world matrix (``moving_from_fixed``) of an ANTs affine/rigid transform.

    Parameters
    ----------
    transform
        An ``ants.ANTsTransform`` (``MatrixOffsetTransformBase`` family) or the path of an
        ANTs ``*GenericAffine.mat``.

    Returns
    -------
    numpy.ndarray
        ``(4, 4)`` float64.
    """
    import ants

    tx = ants.read_transform(str(transform)) if isinstance(transform, (str, Path)) else transform
    p = np.asarray(tx.parameters, np.float64)
    c = np.asarray(tx.fixed_parameters, np.float64)[:3]
    if p.size != 12:
        raise ValueError(f"ants_transform_to_world: expected 12 affine parameters; found {p.size}")
    a = p[:9].reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = p[9:] + c - a @ c
    return _LPS @ m @ _LPS


def world_to_ants_transform(matrix: np.ndarray) -> Any:
    """An ``ants.ANTsTransform`` (AffineTransform) of a RAS ``moving_from_fixed`` world matrix.

    Use it as ``initial_transform`` (written to a file) or to resample with ANTs.
    """
    import ants

    m = _LPS @ check_matrix(matrix, "world_to_ants_transform: matrix") @ _LPS
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(np.concatenate([m[:3, :3].ravel(), m[:3, 3]]))
    tx.set_fixed_parameters(np.zeros(3))
    return tx


@contextmanager
def _ants_seed(seed: int | None) -> Iterator[None]:
    """Set ANTsPy's registration random seed for the duration of a call (0.6.x config)."""
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = seed
    try:
        yield
    finally:
        ants.config._random_seed = old


def register_cross_modal(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    *,
    fixed_mask: np.ndarray | None = None,
    init: np.ndarray | None = None,
    transform: str = "Rigid",
    metric: str = "mattes",
    seed: int | None = 1,
) -> CrossModalResult:
    """Rigid registration of two images of different contrasts with ANTs.

    For BOLD → T1w: ``fixed`` = brain-extracted T1w (or T1w with ``fixed_mask`` = brain
    mask), ``moving`` = BOLD reference (e.g. :attr:`MotionResult.reference` of echo 2); the
    result's ``moving_from_fixed`` is ``ref_from_t1w``.

    Parameters
    ----------
    fixed, fixed_affine
        ``(nx, ny, nz)`` fixed image and its voxel → world RAS affine (mm).
    moving, moving_affine
        ``(mx, my, mz)`` moving image and its affine.
    fixed_mask
        Optional ``(nx, ny, nz)`` metric mask on the fixed grid (used in the final stage).
    init
        Optional ``(4, 4)`` initial ``moving_from_fixed``; default: ANTs' centre-of-mass
        alignment (``[fixed, moving, 1]``), which handles offsets of several cm.
    transform
        ``"Rigid"`` (Mattes on 20 % random samples) or ``"DenseRigid"`` (all voxels).
    metric
        ``"mattes"`` (mutual information: cross-modal), ``"GC"`` or ``"meansquares"``
        (same contrast).
    seed
        Random seed (>= 1) of the metric sampling; None: ANTs' clock seed (not
        reproducible). ANTs treats 0 as "use the clock", so 0 is refused.

    Returns
    -------
    CrossModalResult
    """
    import ants

    if transform not in TRANSFORMS:
        raise ValueError(
            f"register_cross_modal: transform must be one of {TRANSFORMS}; found {transform!r}"
        )
    if metric not in METRICS:
        raise ValueError(f"register_cross_modal: metric must be one of {METRICS}; found {metric!r}")
    if seed is not None and int(seed) < 1:
        raise ValueError(
            "register_cross_modal: seed must be >= 1 or None (ANTs reads 0 as the clock); "
            f"found {seed}"
        )
    for name, arr in (("fixed", fixed), ("moving", moving)):
        a = np.asarray(arr)
        if a.ndim != 3:
            raise ValueError(
                f"register_cross_modal: {name} image must be 3D; found shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"register_cross_modal: {name} image has non-finite values")
    if fixed_mask is not None and np.shape(fixed_mask) != np.shape(fixed):
        raise ValueError(
            f"register_cross_modal: fixed_mask shape {np.shape(fixed_mask)} != fixed shape "
            f"{np.shape(fixed)}"
        )
    f_img = ants_image(fixed, fixed_affine)
    m_img = ants_image(moving, moving_affine)
    kwargs: dict[str, Any] = {"type_of_transform": transform, "aff_metric": metric}
    if fixed_mask is not None:
        kwargs["mask"] = ants_image(np.asarray(fixed_mask, bool).astype(np.float32), fixed_affine)
    with tempfile.TemporaryDirectory(prefix="echoprep-ants-") as tmp:
        if init is not None:
            init_path = str(Path(tmp) / "init.mat")
            ants.write_transform(world_to_ants_transform(init), init_path)
            kwargs["initial_transform"] = [init_path]
        with _ants_seed(seed):
            out = ants.registration(f_img, m_img, outprefix=str(Path(tmp) / "reg_"), **kwargs)
        mats = [p for p in out["fwdtransforms"] if str(p).endswith(".mat")]
        if len(mats) != 1:
            raise RuntimeError(
                "register_cross_modal: expected one affine transform; ANTs gave "
                f"{out['fwdtransforms']}"
            )
        m = ants_transform_to_world(mats[0])
    return CrossModalResult(
        moving_from_fixed=m, fixed_from_moving=np.linalg.inv(m), transform=transform, metric=metric
    )

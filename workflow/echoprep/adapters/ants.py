"""Adapter to ANTs (antspyx): images, N4, registration, Atropos, transform files, resampling.

Every antspyx call of echoprep is here, antspyx imported inside the functions (rules that do not
need it run without it). Stages pass numpy arrays with NIfTI (RAS) affines and get arrays back;
the RAS ↔ LPS arithmetic is :mod:`echoprep.kernels.geometry.registration` (pure numpy).

**Transforms.** Composite transforms are HDF5 (``.h5``: affine + SyN field, as fMRIPrep's
``*_xfm.h5``), affine ones ``.mat``; apply them with :func:`apply_to_grid` (a list in ANTs's
order: the last is applied to the image first, e.g. ``[<T1w→func>, <MNI→T1w .h5>]`` for an
MNI-space ROI to the functional grid). ITK's ``.h5`` files differ between runs only in their
HDF5 object times, which :func:`export_transform` sets to 0: same inputs, same bytes.

**Threads and determinism.** ITK reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` when its pool is
first created (:func:`set_itk_threads` before antspyx is first used; a process keeps its first
setting). Registrations are seeded; the correlation metrics of :data:`REGISTRATION_PRESETS` (GC,
CC: ANTs's "Repro" settings) are reproducible multi-threaded, Mattes mutual information
(:func:`register_cross_modal`) only on one thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.atomic import copy_file
from echoprep.io.hdf5 import neutralise_times
from echoprep.kernels.geometry.registration import (
    itk_affine_to_world,
    lps_geometry,
    ras_affine,
    world_to_itk_affine,
)

#: Accepted ``transform`` values of :func:`register_cross_modal` (ANTsPy ``type_of_transform``).
TRANSFORMS = ("Rigid", "DenseRigid")
#: Accepted ``metric`` values of :func:`register_cross_modal` (ANTsPy ``aff_metric``).
METRICS = ("mattes", "GC", "meansquares")

#: T1w → template registration presets: ANTs's "Repro" antsRegistrationSyN[Quick].sh. Linear
#: stages use global correlation (GC), SyN neighbourhood cross-correlation (CC, radius): both
#: reproducible multi-threaded, unlike Mattes MI (measured: two 2-thread runs, same seed,
#: differ); both suit two T1-weighted images. Per level (coarse → fine): iterations, shrink
#: factors, smoothing sigmas (voxels).
_LINEAR_GC = "GC[{fixed},{moving},1,1,Regular,0.25]"
REGISTRATION_PRESETS: dict[str, dict[str, Any]] = {
    # antsRegistrationSyNRepro.sh -t s: fMRIPrep-like precision; slow at 1 mm.
    "precise": {
        "linear_metric": _LINEAR_GC,
        "linear_iterations": (1000, 500, 250, 100),
        "linear_shrink": (8, 4, 2, 1),
        "linear_smoothing": (3, 2, 1, 0),
        "syn_metric": ("CC", 4),
        "syn_gradient_step": 0.1,
        "syn_iterations": (100, 70, 50, 20),
        "syn_shrink": (8, 4, 2, 1),
        "syn_smoothing": (3, 2, 1, 0),
    },
    # antsRegistrationSyNQuickRepro.sh -t s: CC radius 2, no full-resolution SyN level.
    "quick": {
        "linear_metric": _LINEAR_GC,
        "linear_iterations": (1000, 500, 250, 0),
        "linear_shrink": (8, 4, 2, 1),
        "linear_smoothing": (3, 2, 1, 0),
        "syn_metric": ("CC", 2),
        "syn_gradient_step": 0.1,
        "syn_iterations": (100, 70, 50, 0),
        "syn_shrink": (8, 4, 2, 1),
        "syn_smoothing": (3, 2, 1, 0),
    },
    # For tests and previews: few iterations, three levels.
    "fast": {
        "linear_metric": _LINEAR_GC,
        "linear_iterations": (200, 100, 0),
        "linear_shrink": (4, 2, 1),
        "linear_smoothing": (2, 1, 0),
        "syn_metric": ("CC", 2),
        "syn_gradient_step": 0.2,
        "syn_iterations": (30, 15, 0),
        "syn_shrink": (4, 2, 1),
        "syn_smoothing": (2, 1, 0),
    },
}

#: :func:`apply_to_grid` interpolations → ANTs interpolator names.
INTERPOLATORS = {
    "nearest": "nearestNeighbor",
    "label": "genericLabel",
    "linear": "linear",
    "bspline": "bSpline",
}
_LABEL_INTERPOLATIONS = ("nearest", "label")


# ---------------------------------------------------------------------------------------------
# process settings


def set_itk_threads(n_threads: int) -> None:
    """Set ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (read when ITK's pool is first created)."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(n_threads))


@contextlib.contextmanager
def private_tempdir(prefix: str = "echoprep-anat-") -> Iterator[Path]:
    """A temporary folder that also receives antspyx's own ``mktemp`` files, then is removed."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        tempfile.tempdir = tmp
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = previous


@contextlib.contextmanager
def _ants_seed(seed: int | None) -> Iterator[None]:
    """Set ANTsPy's registration random seed for the duration of a call (0.6.x config)."""
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = seed
    try:
        yield
    finally:
        ants.config._random_seed = old


# ---------------------------------------------------------------------------------------------
# images and transforms


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

    origin, spacing, direction = lps_geometry(affine, "ants_image")
    return ants.from_numpy(
        np.ascontiguousarray(array, dtype=np.float32),
        origin=tuple(float(v) for v in origin),
        spacing=tuple(float(v) for v in spacing),
        direction=direction,
    )


def from_ants(img: Any) -> tuple[np.ndarray, np.ndarray]:
    """Array ``(x, y, z)`` and nibabel (RAS) ``(4, 4)`` affine of an ``ants.ANTsImage``."""
    return img.numpy(), ras_affine(img.origin, img.spacing, img.direction)


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

    tx = ants.read_transform(str(transform)) if isinstance(transform, str | Path) else transform
    return itk_affine_to_world(tx.parameters, tx.fixed_parameters)


def world_to_ants_transform(matrix: np.ndarray, what: str = "world_to_ants_transform") -> Any:
    """An ``ants.ANTsTransform`` (AffineTransform) of a RAS ``moving_from_fixed`` world matrix.

    Use it as ``initial_transform`` (written to a file) or to resample with ANTs.
    """
    import ants

    parameters, fixed = world_to_itk_affine(matrix, f"{what}: matrix")
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(parameters)
    tx.set_fixed_parameters(fixed)
    return tx


def export_transform(src: str | Path, out: str | Path) -> Path:
    """Copy an ITK ``.h5`` transform to ``out`` (atomically) with its HDF5 object times at 0.

    The times are the only run-to-run difference of the files ITK writes, so the same inputs
    give byte-identical outputs. ``src`` is modified in place.
    """
    neutralise_times(src)
    return copy_file(src, out)


# ---------------------------------------------------------------------------------------------
# BOLD reference → T1w (rigid, cross-modal)


@dataclass(frozen=True)
class CrossModalResult:
    """Output of :func:`register_cross_modal`: ``moving_from_fixed`` ``(4, 4)`` float64 world
    matrix (fixed head point → moving head point) and the ANTs ``transform`` and ``metric``
    used."""

    moving_from_fixed: np.ndarray
    transform: str
    metric: str


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

    For BOLD → T1w: ``fixed`` = T1w (optionally with ``fixed_mask`` = brain mask), ``moving``
    = BOLD reference; the result's ``moving_from_fixed`` is ``ref_from_t1w``, the pull map
    the one-shot resampler needs (:class:`echoprep.kernels.geometry.resampling.Chain`).
    ANTs writes its transform to a temporary folder, removed before returning. The Mattes
    metric samples points at random; ``seed`` fixes them, so results are reproducible for a
    given ITK thread count.

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
    return CrossModalResult(moving_from_fixed=m, transform=transform, metric=metric)


# ---------------------------------------------------------------------------------------------
# T1w: N4, registration to a template, Atropos


def n4_bias_correction(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    shrink_factor: int,
    iterations: Sequence[int],
    spline_distance: float,
) -> tuple[np.ndarray, int]:
    """N4 bias-field correction inside a head mask (``ants.get_mask``, cleanup 2).

    Parameters
    ----------
    data, affine
        ``(x, y, z)`` T1w and its RAS affine.
    shrink_factor, iterations, spline_distance
        N4's shrink factor, iterations per fitting level and B-spline control-point spacing
        of the first level (mm).

    Returns
    -------
    corrected
        ``(x, y, z)`` float32.
    head_voxels
        Voxels in the head mask.
    """
    import ants

    t1w = ants_image(data, affine)
    head = ants.get_mask(t1w, cleanup=2)
    corrected = ants.n4_bias_field_correction(
        t1w,
        mask=head,
        shrink_factor=int(shrink_factor),
        convergence={"iters": list(iterations), "tol": 1e-7},
        spline_param=float(spline_distance),
    )
    return corrected.numpy().astype(np.float32), int(head.numpy().sum())


def register_to_template(
    image: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    template: np.ndarray,
    template_affine: np.ndarray,
    preset: dict[str, Any],
    seed: int,
    work: Path,
) -> tuple[Path, Path]:
    """ANTs rigid → affine → SyN of the masked ``image`` (T1w brain) to ``template``.

    Parameters
    ----------
    image, mask, affine
        ``(x, y, z)`` T1w, its brain mask (bool) and RAS affine; moving image ``image * mask``.
    template, template_affine
        The fixed image (skull-stripped template T1) and its RAS affine.
    preset, seed, work
        One of :data:`REGISTRATION_PRESETS`; the seed (non-negative: ANTs gets ``seed + 1``, it
        reads 0 as the clock); the folder for ANTs's files.

    Returns
    -------
    tuple of Path
        The composite forward (T1w → template) and inverse ``.h5`` transforms in ``work``.
    """
    import ants

    img = ants_image(image, affine)
    moving = img * img.new_image_like(np.asarray(mask).astype(np.float32))
    fixed = ants_image(template, template_affine)
    fixed_path, moving_path = work / "fixed.nii.gz", work / "moving.nii.gz"
    ants.image_write(fixed, str(fixed_path))
    ants.image_write(moving, str(moving_path))
    f, m = str(fixed_path), str(moving_path)
    prefix = str(work / "reg_")

    def levels(values: Sequence[float]) -> str:
        return "x".join(str(v) for v in values)

    linear_metric = preset["linear_metric"].format(fixed=f, moving=m)
    metric_name, metric_param = preset["syn_metric"]
    syn_metric = f"{metric_name}[{f},{m},1,{metric_param}]"
    linear = [
        "--convergence",
        f"[{levels(preset['linear_iterations'])},1e-6,10]",
        "--shrink-factors",
        levels(preset["linear_shrink"]),
        "--smoothing-sigmas",
        f"{levels(preset['linear_smoothing'])}vox",
    ]
    args = [
        "--dimensionality", "3",
        "--float", "1",
        "--collapse-output-transforms", "1",
        "--output", f"[{prefix},{prefix}Warped.nii.gz]",
        "--interpolation", "Linear",
        "--use-histogram-matching", "0",
        "--winsorize-image-intensities", "[0.005,0.995]",
        "--initial-moving-transform", f"[{f},{m},1]",
        "--transform", "Rigid[0.1]", "--metric", linear_metric, *linear,
        "--transform", "Affine[0.1]", "--metric", linear_metric, *linear,
        "--transform", f"SyN[{preset['syn_gradient_step']},3,0]",
        "--metric", syn_metric,
        "--convergence", f"[{levels(preset['syn_iterations'])},1e-6,10]",
        "--shrink-factors", levels(preset["syn_shrink"]),
        "--smoothing-sigmas", f"{levels(preset['syn_smoothing'])}vox",
        "--random-seed", str(seed + 1),
        "--write-composite-transform", "1",
        "--verbose", "0",
    ]  # fmt: skip
    ants.registration(fixed=args, moving=None)
    fwd, inv = Path(f"{prefix}Composite.h5"), Path(f"{prefix}InverseComposite.h5")
    if not fwd.is_file() or not inv.is_file():
        raise RuntimeError(f"antsRegistration wrote no composite transforms in {work}")
    return fwd, inv


def warp(
    image: np.ndarray,
    affine: np.ndarray,
    reference: np.ndarray,
    reference_affine: np.ndarray,
    transform: str | Path,
    interpolator: str = "linear",
) -> np.ndarray:
    """``ants.apply_transforms`` of one image through one transform file.

    Parameters
    ----------
    image, affine
        The moving image and its RAS affine.
    reference, reference_affine
        The fixed image (its grid is the output's) and its RAS affine.
    transform, interpolator
        A transform file (e.g. a composite ``.h5`` of :func:`register_to_template`) and an ANTs
        interpolator name (``"linear"``, ``"nearestNeighbor"``, ...).

    Returns
    -------
    numpy.ndarray
        On the reference grid, float32.
    """
    import ants

    return ants.apply_transforms(
        fixed=ants_image(reference, reference_affine),
        moving=ants_image(image, affine),
        transformlist=[str(transform)],
        interpolator=interpolator,
    ).numpy()


def atropos(
    image: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    priors: Sequence[np.ndarray] | None,
    *,
    prior_weight: float,
    mrf_weight: float,
    iterations: int,
) -> np.ndarray:
    """Atropos posteriors of three classes inside ``mask``.

    Parameters
    ----------
    image, mask, affine
        ``(x, y, z)`` bias-corrected T1w, brain mask (bool) and RAS affine.
    priors
        Three ``(x, y, z)`` prior probability maps on the image's grid (initialisation and
        prior term, weight ``prior_weight``), or None: k-means initialisation, no prior term.
    prior_weight, mrf_weight, iterations
        Atropos's prior weight, Markov random field weight (1x1x1 neighbourhood) and
        iterations.

    Returns
    -------
    numpy.ndarray
        ``(3, x, y, z)`` float32, in the order of ``priors`` (or k-means order: darkest first).
        antspyx raises a bare ``Exception`` when Atropos fails.
    """
    import ants

    img = ants_image(image, affine)
    mask_img = img.new_image_like(np.asarray(mask).astype(np.float32))
    mrf = f"[{float(mrf_weight)},1x1x1]"
    conv = f"[{int(iterations)},0]"
    if priors is None:
        init: Any = "Kmeans[3]"
        weight = 0.0
    else:
        init = [img.new_image_like(np.asarray(p, np.float32)) for p in priors]
        weight = float(prior_weight)
    result = ants.atropos(
        a=img, x=mask_img, i=init, m=mrf, c=conv, priorweight=weight, r=0, verbose=0
    )
    return np.stack([p.numpy() for p in result["probabilityimages"]]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# resampling through saved transforms


#: A grid: a NIfTI image (or its path), any object with ``shape`` and ``affine`` (e.g.
#: ``echoprep.kernels.geometry.resampling.OutputGrid``), or a ``(shape, affine)`` pair.
GridLike = nib.Nifti1Image | str | Path | tuple[Sequence[int], np.ndarray] | Any

#: One transform: a file (``.h5``, ``.mat``, displacement field ``.nii.gz``), a ``(file, invert)``
#: pair, or a 4x4 RAS world matrix ``moving_from_fixed`` (a pull map, mm).
TransformLike = str | Path | tuple[str | Path, bool] | np.ndarray


def _reference_geometry(reference: GridLike) -> tuple[tuple[int, int, int], np.ndarray]:
    if isinstance(reference, str | Path):
        reference = nib.load(reference)
    if isinstance(reference, tuple):
        shape, affine = reference
    elif hasattr(reference, "shape") and hasattr(reference, "affine"):
        shape, affine = reference.shape, reference.affine
    else:
        raise ValueError(
            "reference grid: expected a NIfTI image or path, an object with shape and affine, "
            f"or a (shape, affine) pair; got {type(reference).__name__}"
        )
    shape = tuple(int(n) for n in shape[:3])
    affine = np.asarray(affine, float)
    if len(shape) != 3 or affine.shape != (4, 4):
        raise ValueError(f"reference grid: expected a 3D shape and a 4x4 affine; got {shape}")
    return shape, affine  # type: ignore[return-value]


def _matrix_file(matrix: np.ndarray, path: Path) -> str:
    """Write a RAS ``moving_from_fixed`` world matrix as an ANTs affine ``.mat``."""
    import ants

    m = np.asarray(matrix, float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError(f"apply_to_grid: a matrix transform must be a 4x4 affine; got {m}")
    ants.write_transform(world_to_ants_transform(m, "apply_to_grid"), str(path))
    return str(path)


def apply_to_grid(
    image: nib.Nifti1Image | str | Path,
    transforms: Sequence[TransformLike],
    reference: GridLike,
    interpolation: str = "linear",
    *,
    default_value: float = 0.0,
) -> nib.Nifti1Image:
    """Bring an image or mask into another grid through saved ANTs/ITK transforms.

    Parameters
    ----------
    image
        3D image (or path): a mask, a label image or a continuous map, in the space where the
        transform chain starts (e.g. an ROI mask in template space).
    transforms
        In ``ants.apply_transforms`` order, i.e. the last one is applied to the image first
        (``[T1w→func, MNI→T1w]`` takes an MNI-space image to the functional grid): each maps a
        point of the grid before it (the reference for the first) to the space after it, so
        ``output(p) = image(T_n(...T_1(p)))``. Items: composite ``.h5`` files (the anatomy
        stage's ``xfm_*`` outputs), affine ``.mat`` files, displacement fields (``.nii.gz``); a
        ``(path, True)`` pair applies the inverse of an affine ``.mat``; a 4x4 array is a RAS
        world matrix ``moving_from_fixed`` (mm; ``echoprep.kernels.geometry``'s ``b_from_a``
        pull convention, e.g. ``t1w_from_func``). An empty list is the identity (plain
        resampling in world coordinates).
    reference
        The target grid: a NIfTI image (or path) whose first three dimensions and affine are
        used, an object with ``shape`` and ``affine`` (``OutputGrid``), or a ``(shape, affine)``
        pair (affine in nibabel's RAS convention, mm).
    interpolation
        ``"nearest"`` (labels, nearest neighbour), ``"label"`` (ANTs genericLabel: each label
        interpolated linearly, the largest wins: smoother label edges than nearest), ``"linear"``
        or ``"bspline"``.
    default_value
        Value outside the image's field of view.

    Returns
    -------
    nibabel.Nifti1Image
        On the reference grid. Label interpolations keep the input's integer dtype (float
        inputs become int32) and only values present in the input; continuous ones are float32.

    Raises
    ------
    ValueError
        Unknown interpolation, a 4D image, a missing transform file, an inverted non-affine, a
        malformed matrix.
    """
    import ants

    if interpolation not in INTERPOLATORS:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATORS)}; got {interpolation!r}"
        )
    img = nib.load(image) if isinstance(image, str | Path) else image
    if len(img.shape) != 3:
        raise ValueError(f"apply_to_grid: expected a 3D image; got shape {img.shape}")
    shape, ref_affine = _reference_geometry(reference)
    with tempfile.TemporaryDirectory(prefix="echoprep-xfm-") as tmp:
        files: list[str] = []
        invert: list[bool] = []
        for n, item in enumerate(transforms):
            if isinstance(item, np.ndarray):
                files.append(_matrix_file(item, Path(tmp) / f"matrix{n}.mat"))
                invert.append(False)
                continue
            path, inv = (item[0], bool(item[1])) if isinstance(item, tuple) else (item, False)
            path = Path(path)
            if not path.is_file():
                raise ValueError(f"apply_to_grid: transform file {path} does not exist")
            if inv and path.suffix != ".mat":
                raise ValueError(
                    f"apply_to_grid: {path} cannot be inverted on the fly (only affine .mat "
                    "files can); use the saved inverse transform instead"
                )
            files.append(str(path))
            invert.append(inv)
        if not files:  # identity: resampling in world coordinates only
            files = [_matrix_file(np.eye(4), Path(tmp) / "identity.mat")]
            invert = [False]
        data = np.asanyarray(img.dataobj)
        labels = interpolation in _LABEL_INTERPOLATIONS
        out = ants.apply_transforms(
            fixed=ants_image(np.zeros(shape, np.float32), ref_affine),
            moving=ants_image(np.asarray(data, np.float32), img.affine),
            transformlist=files,
            interpolator=INTERPOLATORS[interpolation],
            whichtoinvert=invert,
            defaultvalue=default_value,
        )
    result = np.asarray(out.numpy())
    if labels:
        dtype = data.dtype if np.issubdtype(data.dtype, np.integer) else np.dtype(np.int32)
        result = np.rint(result).astype(dtype)
    else:
        result = result.astype(np.float32)
    out_img = nib.Nifti1Image(result, ref_affine)
    out_img.header.set_xyzt_units("mm")
    return out_img


__all__ = [
    "INTERPOLATORS",
    "METRICS",
    "REGISTRATION_PRESETS",
    "TRANSFORMS",
    "CrossModalResult",
    "GridLike",
    "TransformLike",
    "ants_image",
    "ants_transform_to_world",
    "apply_to_grid",
    "atropos",
    "export_transform",
    "from_ants",
    "n4_bias_correction",
    "private_tempdir",
    "register_cross_modal",
    "register_to_template",
    "set_itk_threads",
    "warp",
]

"""Anatomy stage: one T1w per subject → N4-corrected T1w, brain mask, tissues, template transforms.

Steps (all in the T1w's own grid; nothing is resampled except what goes to the template):

1. **N4** bias-field correction (ANTs, through antspyx) inside a head mask
   → ``desc-preproc_T1w`` (not skull-stripped, as fMRIPrep's).
2. **Brain mask** with deepbet (a CNN; its weights ship inside the package) on the corrected T1w
   → ``desc-brain_mask``.
3. **Registration** of the skull-stripped T1w to the skull-stripped template (ANTs rigid → affine
   → SyN, seeded) → ``from-T1w_to-<template>_mode-image_xfm.h5`` and its inverse
   ``from-<template>_to-T1w_mode-image_xfm.h5``.
4. **Tissue classes** with ANTs Atropos inside the brain mask: by default initialised with the
   template's GM/WM/CSF probability maps brought into the T1w through the inverse transform and
   kept as priors (``prior_weight``), or intensity-only k-means (``segmentation="kmeans"``)
   → ``label-{GM,WM,CSF}_probseg`` and ``dseg`` (BIDS labels 0 BG, 1 GM, 2 WM, 3 CSF, with the
   ``dseg.tsv`` look-up table).

**Template.** nilearn's bundled MNI152 files are ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a``,
i.e. the ICBM 2009a *nonlinear symmetric* template (the image is exactly left-right symmetric;
nilearn's docstring calls it asymmetric, its file names and its data say symmetric), skull-stripped
and rescaled by nilearn. Its TemplateFlow / BIDS label is ``MNI152NLin2009aSym`` (not fMRIPrep's
``MNI152NLin2009cAsym``); :data:`TEMPLATE` holds it and every name below uses it.

**Transforms.** Each direction is one ITK/ANTs *composite* transform in HDF5 (``.h5``: the affine
and the SyN displacement field together, as fMRIPrep writes ``*_xfm.h5``). They are applied with
``ants.apply_transforms(fixed=reference, moving=image, transformlist=[...h5])`` (or
``antsApplyTransforms -t``), or with :func:`apply_to_grid` here:

* ``from-T1w_to-<template>``: moving = an image in T1w space, reference = a template-space grid;
* ``from-<template>_to-T1w``: moving = an image in template space (e.g. an ROI mask), reference =
  the T1w (or any T1w-aligned grid).

A list of transforms follows ANTs's order (the last one is applied to the image first), so an
MNI-space ROI goes to the functional grid with
``apply_to_grid(roi, [<T1w→func>, <MNI→T1w .h5>], func_grid, "label")``.

**Threads and determinism.** ITK reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` when its thread
pool is first created, so :func:`run_anatomy` sets it (and torch's thread count) before importing
antspyx; a process that already used antspyx keeps its first setting. Registration is seeded
(``--random-seed seed+1``: ANTs takes a non-zero seed) and uses correlation metrics (GC for the
linear stages, CC for SyN: ANTs's "Repro" settings), which give identical results on repeated
multi-threaded runs (Mattes MI does not, even seeded); Atropos runs with its constant internal
seed; deepbet's CPU inference is deterministic. The same inputs, options and thread count give
identical NIfTI outputs (checked by the unit tests). The ``.h5`` transforms as ITK writes them
differ between runs only in the HDF5 object times (wall clock; the transforms are identical), so
they are written with those times set to 0 (:func:`echoprep.io.hdf5.neutralise_times`): the same
inputs give byte-identical ``*_xfm.h5`` files.

**Defaults and cost** (2 shared cores, simulated T1w, default options): ``registration="quick"``
on a template grid of the T1w's voxel size (1 mm for a 1 mm T1w) — tiny (4 mm) 13-23 s, demo
(2 mm) 51-60 s, LAION-like 1 mm 474 s (431 s of it registration; ``template_resolution=2``
brings it to 143 s with a slightly worse fit). The unit tests use ``registration="fast"``.

**Segmentation and the simulator.** The simulated T1w's contrast is the template's own T1 and its
truth labels are the template's GM/WM maps under a similarity transform, so intensity-only
k-means does poorly on it (GM Dice 0.75 tiny, 0.83 demo) and template priors do well; a larger
``prior_weight`` scores higher there for that circular reason (0.5: GM 0.94), so the default
stays at ANTs's usual 0.25 (GM 0.86 tiny, 0.91 demo, 0.92 LAION-like).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.hdf5 import neutralise_times
from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.paths import bids_path
from echoprep.io.sidecars import write_dataset_description, write_sidecar
from echoprep.kernels import tissue
from echoprep.kernels.geometry.registration import ants_image as to_ants
from echoprep.stages.arguments import key_paths

log = logging.getLogger(__name__)

#: BIDS / TemplateFlow label of nilearn's bundled MNI152 template (ICBM 2009a nonlinear symmetric).
TEMPLATE = "MNI152NLin2009aSym"

#: What :data:`TEMPLATE` is, for the sidecars.
TEMPLATE_INFO: dict[str, str] = {
    "Name": TEMPLATE,
    "Description": "ICBM 2009a Nonlinear Symmetric MNI152 template as bundled with nilearn "
    "(mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a, skull-stripped and rescaled to 0-1; 1 mm grid "
    "197x233x189, corner voxel at (-98, -134, -72) mm): the T1 is the registration target, the "
    "GM/WM probability maps and CSF = smoothed brain mask (T1 > 0.2, nilearn's) - GM - WM the "
    "tissue priors",
    "Source": "nilearn.datasets.load_mni152_template / load_mni152_gm_template / "
    "load_mni152_wm_template / load_mni152_brain_mask",
}

#: Output key -> (suffix, derivative entities, extension). Subject-level names (no session):
#: ``sub-<label>/anat/sub-<label>_<entities>_<suffix><ext>`` (see :func:`output_paths`).
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = {
    "preproc": ("T1w", {"desc": "preproc"}, ".nii.gz"),
    "brain_mask": ("mask", {"desc": "brain"}, ".nii.gz"),
    "dseg": ("dseg", {}, ".nii.gz"),
    "dseg_tsv": ("dseg", {}, ".tsv"),
    "probseg_gm": ("probseg", {"label": "GM"}, ".nii.gz"),
    "probseg_wm": ("probseg", {"label": "WM"}, ".nii.gz"),
    "probseg_csf": ("probseg", {"label": "CSF"}, ".nii.gz"),
    "xfm_to_template": ("xfm", {"from": "T1w", "to": TEMPLATE, "mode": "image"}, ".h5"),
    "xfm_from_template": ("xfm", {"from": TEMPLATE, "to": "T1w", "mode": "image"}, ".h5"),
    "template_preproc": ("T1w", {"space": TEMPLATE, "desc": "preproc"}, ".nii.gz"),
}

#: Keys every call must write; the others are written when their key is given.
REQUIRED_OUTPUTS = ("preproc", "brain_mask", "dseg")

#: Keys written by default by the workflow (``template_preproc`` is an optional QC image).
DEFAULT_OUTPUTS = tuple(k for k in OUTPUTS if k != "template_preproc")

#: Output names the BIDS validator does not know (transforms: BEP 014 is still a draft).
BIDSIGNORE = ("*_xfm.h5", "*_xfm.json")

#: Registration settings by preset: ANTs's "Repro" variants of antsRegistrationSyN[Quick].sh.
#: Linear stages use the global-correlation metric (GC) and SyN the neighbourhood
#: cross-correlation (CC, radius): both give bit-identical results on repeated multi-threaded
#: runs, unlike Mattes MI (measured: MI differs between two 2-thread runs with the same seed).
#: Iterations per level (coarse → fine), shrink factors and smoothing sigmas (voxels) per level.
#: T1w and template are both T1-weighted, so the correlation metrics suit them.
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

#: Options of :func:`run_anatomy` and their defaults (the config's ``anatomy:`` section).
DEFAULT_OPTIONS: dict[str, Any] = {
    # N4: shrink factor (None: shrunk voxels of about 8 mm: the bias field is smooth and N4's
    # time grows with the shrunk voxel count), iterations per level (three levels: the finest
    # control-point spacing is then 50 mm; a fourth level starts fitting anatomy), B-spline
    # control-point spacing of the first level in mm (fMRIPrep's 200 mm).
    "n4_shrink_factor": None,
    "n4_iterations": (50, 50, 50),
    "n4_spline_distance": 200.0,
    # deepbet probability threshold.
    "brain_threshold": 0.5,
    # "priors": Atropos initialised and constrained by the template's tissue maps;
    # "kmeans": Atropos with k-means initialisation, no template information.
    "segmentation": "priors",
    "prior_weight": 0.25,
    "mrf_weight": 0.1,
    "atropos_iterations": 5,
    # "precise" | "quick" | "fast" (REGISTRATION_PRESETS).
    "registration": "quick",
    # Template grid of the registration in mm (1-4); None: the T1w voxel size rounded, in 1..4.
    "template_resolution": None,
}

#: Voxel sizes accepted, mm.
VOXEL_RANGE_MM = (0.2, 6.0)
#: Smallest field of view accepted along every axis, mm (deepbet needs the whole head).
MIN_FOV_MM = 80.0

_INTERPOLATORS = {
    "nearest": "nearestNeighbor",
    "label": "genericLabel",
    "linear": "linear",
    "bspline": "bSpline",
}
_LABEL_INTERPOLATIONS = ("nearest", "label")
_SOFTWARE = ("antspyx", "deepbet", "torch")


# ---------------------------------------------------------------------------------------------
# names


def output_paths(
    root: str | Path, subject: str, keys: Sequence[str] | None = None
) -> dict[str, Path]:
    """Paths of the anatomy outputs of one subject.

    Parameters
    ----------
    root
        The derivative folder (e.g. ``<out>/anat``).
    subject
        Subject label without ``sub-`` (a Snakemake wildcard such as ``{subject}`` works too).
    keys
        Keys of :data:`OUTPUTS`; None gives :data:`DEFAULT_OUTPUTS`.

    Returns
    -------
    dict
        Key → path, e.g. ``preproc`` → ``root/sub-01/anat/sub-01_desc-preproc_T1w.nii.gz``.
    """
    out = {}
    for key in keys if keys is not None else DEFAULT_OUTPUTS:
        suffix, entities, ext = OUTPUTS[key]
        out[key] = bids_path(root, {"sub": subject, **entities}, suffix, ext, datatype="anat")
    return out


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of the ``anat`` folder."""
    return write_dataset_description(
        root,
        "echoprep anatomy",
        description="T1w N4 bias correction (ANTs), brain mask (deepbet), tissue classes "
        f"(ANTs Atropos) and T1w<->{TEMPLATE} transforms (ANTs SyN)",
        config=config,
        source_datasets=[str(source)],
        bidsignore=BIDSIGNORE,
    )


# ---------------------------------------------------------------------------------------------
# NIfTI <-> ANTs (RAS world of nibabel, LPS world of ITK)

_LPS = np.diag([-1.0, -1.0, 1.0])


def _axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel sizes (3,) and direction cosines (3, 3) of a 4x4 affine."""
    linear = np.asarray(affine, float)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    return spacing, linear / spacing


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """Array (x, y, z) and nibabel (RAS) affine of an ``ants.ANTsImage``."""
    affine = np.eye(4)
    affine[:3, :3] = _LPS @ np.asarray(img.direction, float) @ np.diag(img.spacing)
    affine[:3, 3] = _LPS @ np.asarray(img.origin, float)
    return img.numpy(), affine


def _like(data: np.ndarray, like: nib.Nifti1Image, dtype: Any) -> nib.Nifti1Image:
    """An image of ``dtype`` with the geometry and header of ``like`` (scaling reset)."""
    header = like.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), like.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    return img


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
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ m @ flip
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]]))
    tx.set_fixed_parameters(np.zeros(3))
    ants.write_transform(tx, str(path))
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
        ``output(p) = image(T_n(...T_1(p)))``. Items: composite ``.h5`` files (:data:`OUTPUTS`
        ``xfm_*``), affine ``.mat`` files, displacement fields (``.nii.gz``); a ``(path, True)``
        pair applies the inverse of an affine ``.mat``; a 4x4 array is a RAS world matrix
        ``moving_from_fixed`` (mm; ``echoprep.kernels.geometry``'s ``b_from_a`` pull
        convention, e.g. ``t1w_from_func``). An empty list is the identity (plain resampling in
        world coordinates).
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

    if interpolation not in _INTERPOLATORS:
        raise ValueError(
            f"interpolation must be one of {sorted(_INTERPOLATORS)}; got {interpolation!r}"
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
            fixed=to_ants(np.zeros(shape, np.float32), ref_affine),
            moving=to_ants(np.asarray(data, np.float32), img.affine),
            transformlist=files,
            interpolator=_INTERPOLATORS[interpolation],
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


# ---------------------------------------------------------------------------------------------
# validation


def validate_t1w(path: str | Path) -> nib.Nifti1Image:
    """Open a T1w image and check that the anatomy stage can use it.

    Returns
    -------
    nibabel.Nifti1Image
        The image, 3D (a 4D file with one volume is accepted and squeezed).

    Raises
    ------
    StageInputError
        Naming the file, what was expected, what was found and how to fix it.
    """
    path = Path(path)
    img = load_image(path, "T1w image")
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise StageInputError(
            f"{path}: expected a 3D T1w image; found shape {img.shape}. Fix: pass one T1w "
            "volume (split multi-volume files, e.g. MP2RAGE UNI only)."
        )
    if min(img.shape) < 8:
        raise StageInputError(
            f"{path}: expected a 3D volume with at least 8 voxels along every axis; found shape "
            f"{img.shape}. Fix: pass the whole-head T1w."
        )
    affine = np.asarray(img.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise StageInputError(
            f"{path}: expected a valid voxel-to-world affine; found a singular or non-finite "
            "one. Fix: repair the qform/sform of the file."
        )
    spacing, direction = _axes(affine)
    shear = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if shear > 1e-4:
        raise StageInputError(
            f"{path}: expected an affine without shear (rotation and voxel sizes only); found "
            f"a shear of {shear:.2g}. Fix: reslice the image to an unsheared grid."
        )
    unit = img.header.get_xyzt_units()[0]
    if unit not in ("mm", "unknown"):
        raise StageInputError(
            f"{path}: expected spatial units of mm; found {unit!r}. Fix: convert the voxel "
            "sizes to mm and set xyzt_units."
        )
    lo, hi = VOXEL_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        raise StageInputError(
            f"{path}: expected voxel sizes between {lo} and {hi} mm; found "
            f"{np.round(spacing, 3).tolist()} mm. Fix: check the header's pixdim (units "
            "in mm) or resample the T1w."
        )
    fov = spacing * np.asarray(img.shape, float)
    if np.any(fov < MIN_FOV_MM):
        raise StageInputError(
            f"{path}: expected a whole-head T1w (field of view >= {MIN_FOV_MM:.0f} mm along "
            f"every axis); found {np.round(fov, 1).tolist()} mm. Fix: pass the whole-head T1w, "
            "not a slab."
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise StageInputError(
            f"{path}: expected finite intensities; found {int((~np.isfinite(data)).sum())} "
            "NaN/inf voxels. Fix: replace them (e.g. by 0) before running the anatomy stage."
        )
    if float(data.max()) <= float(data.min()) or float(data.max()) <= 0:
        raise StageInputError(
            f"{path}: expected a T1w with positive, varying intensities; found all values in "
            f"[{float(data.min())}, {float(data.max())}]. Fix: pass the right file."
        )
    return img


def _resolve_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = dict(DEFAULT_OPTIONS)
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = set(given) - set(DEFAULT_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown anatomy options {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}"
        )
    opts.update(given)
    if opts["segmentation"] not in ("priors", "kmeans"):
        raise ValueError(
            f"anatomy option segmentation must be 'priors' or 'kmeans'; got "
            f"{opts['segmentation']!r}"
        )
    if opts["registration"] not in REGISTRATION_PRESETS:
        raise ValueError(
            f"anatomy option registration must be one of {sorted(REGISTRATION_PRESETS)}; got "
            f"{opts['registration']!r}"
        )
    res = opts["template_resolution"]
    if res is not None and int(res) not in (1, 2, 3, 4):
        raise ValueError(f"anatomy option template_resolution must be 1-4 mm; got {res!r}")
    if not 0.0 <= float(opts["prior_weight"]) <= 1.0:
        raise ValueError(
            f"anatomy option prior_weight must be in [0, 1]; got {opts['prior_weight']}"
        )
    if not 0.0 < float(opts["brain_threshold"]) < 1.0:
        raise ValueError(
            f"anatomy option brain_threshold must be in (0, 1); got {opts['brain_threshold']}"
        )
    opts["n4_iterations"] = tuple(int(v) for v in opts["n4_iterations"])
    return opts


# ---------------------------------------------------------------------------------------------
# the template


@lru_cache(maxsize=4)
def template_maps(resolution: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """nilearn's MNI152 (ICBM 2009a sym) T1 and tissue priors on a ``resolution`` mm grid.

    Above 1 mm the 1 mm maps are smoothed (Gaussian, FWHM of the new voxel, less the 1 mm
    voxel) before sampling, so the coarse maps hold partial-volume fractions, not aliased samples.

    Returns
    -------
    maps
        ``t1`` (0-1), ``gm``, ``wm``, ``csf`` (probabilities, CSF = smoothed brain mask − GM − WM,
        clipped) and ``brain`` (brain mask fraction); float32 arrays of one shape.
    affine
        The grid's RAS affine (same corner as the 1 mm template).
    """
    from nilearn import datasets
    from scipy import ndimage

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "brain": datasets.load_mni152_brain_mask,
    }
    maps, affine = {}, np.eye(4)
    for key, load in loaders.items():
        img = load(resolution=1)
        maps[key] = np.asarray(img.get_fdata(dtype=np.float32))
        affine = np.asarray(img.affine, float)
    maps["brain"] = ndimage.gaussian_filter(maps["brain"], 1.0)
    maps["csf"] = tissue.csf_prior(maps["brain"], maps["gm"], maps["wm"])
    if resolution == 1:
        return maps, affine
    sigma = 0.4247 * np.sqrt(resolution**2 - 1.0)
    shape = tuple(int(np.ceil(n / resolution)) for n in maps["t1"].shape)
    ijk = np.stack(np.meshgrid(*[np.arange(n) * resolution for n in shape], indexing="ij"))
    out = {}
    for key, arr in maps.items():
        smooth = ndimage.gaussian_filter(arr, sigma, mode="constant")
        out[key] = ndimage.map_coordinates(smooth, ijk, order=1, mode="constant").astype(np.float32)
    coarse = affine.copy()
    coarse[:3, :3] *= resolution
    return out, coarse


# ---------------------------------------------------------------------------------------------
# steps


@contextlib.contextmanager
def _private_tempdir() -> Iterator[Path]:
    """A temporary folder that also receives antspyx's own ``mktemp`` files, then is removed."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="echoprep-anat-") as tmp:
        tempfile.tempdir = tmp
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = previous


def _n4(t1w, opts: Mapping[str, Any], voxel_mm: float):
    """N4 inside a head mask; returns (corrected image, head mask, record)."""
    import ants

    shrink = opts["n4_shrink_factor"]
    if shrink is None:
        shrink = int(np.clip(round(8.0 / voxel_mm), 1, 8))
    head = ants.get_mask(t1w, cleanup=2)
    corrected = ants.n4_bias_field_correction(
        t1w,
        mask=head,
        shrink_factor=int(shrink),
        convergence={"iters": list(opts["n4_iterations"]), "tol": 1e-7},
        spline_param=float(opts["n4_spline_distance"]),
    )
    record = {
        "ShrinkFactor": int(shrink),
        "Iterations": list(opts["n4_iterations"]),
        "SplineDistanceMm": float(opts["n4_spline_distance"]),
        "HeadMaskVoxels": int(head.numpy().sum()),
    }
    return corrected, head, record


def _brain_mask(data: np.ndarray, affine: np.ndarray, threshold: float, seed: int) -> np.ndarray:
    """deepbet brain mask (bool, same grid) of a bias-corrected T1w."""
    import torch
    from deepbet import BrainExtraction

    torch.manual_seed(seed)
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    with warnings.catch_warnings(), torch.inference_mode():
        # deepbet loads TorchScript models; torch >= 2.10 flags torch.jit.load as deprecated
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
        _, mask_img, _ = BrainExtraction(no_gpu=True).run(img, threshold=threshold)
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.shape != data.shape:  # deepbet returns the input's orientation; guard anyway
        raise RuntimeError(f"deepbet returned shape {mask.shape} for input {data.shape}")
    return mask


def _register(moving, fixed, preset: Mapping[str, Any], seed: int, work: Path) -> tuple[Path, Path]:
    """ANTs rigid → affine → SyN of ``moving`` (T1w brain) to ``fixed`` (template).

    Returns the composite forward (moving → fixed) and inverse transform files in ``work``.
    """
    import ants

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


def _atropos(n4img, mask_img, priors, opts: Mapping[str, Any]) -> np.ndarray:
    """Atropos posteriors, shape (3, x, y, z), in the order of ``priors`` (or k-means order)."""
    import ants

    mrf = f"[{float(opts['mrf_weight'])},1x1x1]"
    conv = f"[{int(opts['atropos_iterations'])},0]"
    if priors is None:
        init: Any = "Kmeans[3]"
        weight = 0.0
    else:
        init = priors
        weight = float(opts["prior_weight"])
    result = ants.atropos(
        a=n4img, x=mask_img, i=init, m=mrf, c=conv, priorweight=weight, r=0, verbose=0
    )
    return np.stack([p.numpy() for p in result["probabilityimages"]]).astype(np.float32)


def _template_resolution(opts: Mapping[str, Any], voxel_mm: float) -> int:
    if opts["template_resolution"] is not None:
        return int(opts["template_resolution"])
    return int(np.clip(round(voxel_mm), 1, 4))


# ---------------------------------------------------------------------------------------------
# the stage


def run_anatomy(
    t1w_file: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    seed: int = 0,
    n_threads: int = 1,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bias-correct, skull-strip, segment and register one T1w; write the outputs.

    Parameters
    ----------
    t1w_file
        The subject's T1w (3D NIfTI, voxel sizes 0.2-6 mm, whole head).
    outputs
        Keys of :data:`OUTPUTS` to paths (:func:`output_paths` builds them). ``preproc``,
        ``brain_mask`` and ``dseg`` are required; other keys are written when given. The
        registration runs when a transform or ``template_preproc`` is asked for, or when the
        segmentation uses the template priors.
    seed
        Non-negative; seeds the ANTs registration (``seed + 1``) and torch.
    n_threads
        Threads for ITK (ANTs) and torch.
    options
        Keys of :data:`DEFAULT_OPTIONS`; missing or None ones take the default.

    Returns
    -------
    dict
        What the sidecars record: template, registration quality (``TemplateBrainDice``: Dice of
        the warped brain mask with the template's), tissue volumes (ml), brain volume, seconds
        per step.

    Raises
    ------
    StageInputError
        For an unusable T1w (see :func:`validate_t1w`).
    ValueError
        For unknown or invalid options, a missing required output key or a negative seed.
    """
    opts = _resolve_options(options)
    missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if missing or unknown:
        raise ValueError(
            f"anatomy outputs: missing required keys {missing}, unknown keys {unknown}; "
            f"known: {list(OUTPUTS)}"
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
    t1w_path = Path(t1w_file)
    img = validate_t1w(t1w_path)
    n_threads = max(1, int(n_threads))
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n_threads)
    import torch

    affine = np.asarray(img.affine, float)
    spacing, _ = _axes(affine)
    voxel_mm = float(spacing.max())
    data = np.asarray(img.dataobj, dtype=np.float32)

    threads_before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    seconds: dict[str, float] = {}
    try:
        with _private_tempdir() as work:
            try:
                result, arrays = _run(data, affine, voxel_mm, outputs, opts, seed, work, seconds)
            except StageInputError as exc:
                raise StageInputError(f"{t1w_path}: {exc}") from exc
            result["Seconds"] = {k: round(v, 2) for k, v in seconds.items()}
            _write_all(t1w_path, img, outputs, arrays, opts, seed, n_threads, result)
    finally:
        torch.set_num_threads(threads_before)
    log.info(
        "anatomy %s: brain %.0f ml, GM %.0f / WM %.0f / CSF %.0f ml, template Dice %s, %.1f s",
        t1w_path.name,
        result["BrainVolumeMl"],
        result["TissueVolumesMl"]["GM"],
        result["TissueVolumesMl"]["WM"],
        result["TissueVolumesMl"]["CSF"],
        result.get("TemplateBrainDice"),
        sum(seconds.values()),
    )
    return result


def _run(
    data: np.ndarray,
    affine: np.ndarray,
    voxel_mm: float,
    outputs: Mapping[str, str | Path],
    opts: Mapping[str, Any],
    seed: int,
    work: Path,
    seconds: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute everything: (record for the sidecars, arrays and transform files in ``work``)."""
    import ants

    t0 = time.perf_counter()
    t1w = to_ants(data, affine)
    n4img, _head, n4_record = _n4(t1w, opts, voxel_mm)
    n4data = n4img.numpy().astype(np.float32)
    seconds["n4"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mask = _brain_mask(n4data, affine, float(opts["brain_threshold"]), seed)
    seconds["brain_mask"] = time.perf_counter() - t0
    brain_ml = float(mask.sum() * np.prod(_axes(affine)[0])) / 1000.0
    if brain_ml < 100.0:  # not a brain
        raise StageInputError(
            f"expected a brain of about 1000-1600 ml; brain extraction found {int(mask.sum())} "
            f"voxels ({brain_ml:.1f} ml). Fix: check that the input is a whole-head T1w."
        )
    mask_img = n4img.new_image_like(mask.astype(np.float32))

    wants_reg = opts["segmentation"] == "priors" or any(
        k in outputs for k in ("xfm_to_template", "xfm_from_template", "template_preproc")
    )
    result: dict[str, Any] = {"N4": n4_record, "Template": TEMPLATE}
    priors = None
    arrays: dict[str, Any] = {"preproc": n4data, "mask": mask}
    if wants_reg:
        t0 = time.perf_counter()
        res = _template_resolution(opts, voxel_mm)
        maps, tpl_affine = template_maps(res)
        fixed = to_ants(maps["t1"], tpl_affine)
        moving = n4img * mask_img
        fwd, inv = _register(moving, fixed, REGISTRATION_PRESETS[opts["registration"]], seed, work)
        warped_mask = ants.apply_transforms(
            fixed=fixed, moving=mask_img, transformlist=[str(fwd)], interpolator="linear"
        ).numpy()
        result["TemplateBrainDice"] = round(
            tissue.dice(warped_mask >= 0.5, maps["brain"] >= 0.5), 4
        )
        result["TemplateResolutionMm"] = res
        result["Registration"] = opts["registration"]
        arrays["xfm"] = (fwd, inv)
        if "template_preproc" in outputs:
            warped = ants.apply_transforms(
                fixed=fixed, moving=n4img, transformlist=[str(fwd)], interpolator="linear"
            )
            arrays["template_preproc"] = (warped.numpy().astype(np.float32), tpl_affine)
        if opts["segmentation"] == "priors":
            priors = [
                ants.apply_transforms(
                    fixed=n4img,
                    moving=to_ants(maps[key], tpl_affine),
                    transformlist=[str(inv)],
                    interpolator="linear",
                )
                for key in ("csf", "gm", "wm")  # darkest first, like the k-means order
            ]
        seconds["registration"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        raw = _atropos(n4img, mask_img, priors, opts)
    except Exception as exc:  # antspyx raises a bare Exception when Atropos fails
        raise StageInputError(
            f"expected a brain with grey matter, white matter and CSF inside the brain mask "
            f"({int(mask.sum())} voxels, {brain_ml:.0f} ml); Atropos failed ({exc}). Fix: check "
            "that the input is a whole-head T1w."
        ) from exc
    probs, permutation = tissue.order_by_intensity(n4data, raw, mask)
    # Atropos returns the classes in the priors' order (CSF, GM, WM) or, for k-means, darkest
    # first: either way GM, WM, CSF are the indices (1, 2, 0) when the means follow a T1w
    expected = np.array([1, 2, 0])
    result["ClassMeansFollowT1wOrder"] = bool(np.array_equal(permutation, expected))
    means = tissue.class_means(n4data, probs, mask)
    result["ClassMeanIntensity"] = {
        name: round(float(v), 2) for name, v in zip(tissue.TISSUES, means, strict=True)
    }
    if not result["ClassMeansFollowT1wOrder"]:
        log.warning(
            "Atropos classes (initialised CSF, GM, WM) have means out of the T1w order "
            "CSF < GM < WM (permutation %s); they are named by intensity",
            permutation.tolist(),
        )
    probs = tissue.normalise_probabilities(probs, mask)
    dseg = tissue.probabilities_to_dseg(probs, mask)
    seconds["segmentation"] = time.perf_counter() - t0
    voxel_mm3 = float(np.prod(_axes(affine)[0]))
    result["BrainVolumeMl"] = round(float(mask.sum()) * voxel_mm3 / 1000.0, 2)
    result["TissueVolumesMl"] = tissue.volumes_ml(dseg, voxel_mm3)
    arrays["probs"] = probs
    arrays["dseg"] = dseg
    return result, arrays


def _parameters(opts: Mapping[str, Any], seed: int, n_threads: int) -> dict[str, Any]:
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
    params["registration_settings"] = REGISTRATION_PRESETS[opts["registration"]]
    params["seed"] = seed
    params["n_threads"] = n_threads
    return params


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _write_all(
    t1w_path: Path,
    img: nib.Nifti1Image,
    outputs: Mapping[str, str | Path],
    arrays: Mapping[str, Any],
    opts: Mapping[str, Any],
    seed: int,
    n_threads: int,
    result: Mapping[str, Any],
) -> None:
    params = _parameters(opts, seed, n_threads)
    sources = [t1w_path]

    def sidecar(path: Path, extra: Mapping[str, Any], srcs: Sequence[Path] = sources) -> None:
        write_sidecar(path, sources=srcs, parameters=params, extra=extra, software=_SOFTWARE)

    preproc = Path(outputs["preproc"])
    atomic_save(float_image(arrays["preproc"], img), preproc)
    sidecar(
        preproc,
        {
            "Description": "T1w after N4 bias-field correction (ANTs) inside a head mask",
            "SkullStripped": False,
            "N4": result["N4"],
        },
    )
    mask_path = Path(outputs["brain_mask"])
    atomic_save(_like(arrays["mask"], img, np.uint8), mask_path)
    sidecar(
        mask_path,
        {
            "Type": "Brain",
            "SpatialReference": str(t1w_path),
            "Description": "Brain mask from deepbet (CNN) on the N4-corrected T1w",
            "BrainVolumeMl": result["BrainVolumeMl"],
        },
        [t1w_path, preproc],
    )
    method = (
        f"ANTs Atropos, 3 classes, initialised with the {TEMPLATE} GM/WM/CSF probability maps "
        f"brought into the T1w (prior weight {opts['prior_weight']})"
        if opts["segmentation"] == "priors"
        else "ANTs Atropos, 3 classes, k-means initialisation (no template information)"
    )
    seg_sources = [t1w_path, preproc, mask_path]
    if opts["segmentation"] == "priors" and "xfm_from_template" in outputs:
        seg_sources.append(Path(outputs["xfm_from_template"]))
    dseg_path = Path(outputs["dseg"])
    atomic_save(_like(arrays["dseg"], img, np.uint8), dseg_path)
    labels = {str(i): abbr for i, (_name, abbr) in tissue.DSEG_LABELS.items()}
    sidecar(
        dseg_path,
        {
            "Description": "Tissue classes: the most probable of GM, WM, CSF inside the brain "
            "mask; BIDS common labels",
            "Labels": labels,
            "SpatialReference": str(t1w_path),
            "Method": method,
            "TissueVolumesMl": result["TissueVolumesMl"],
            "ClassMeansFollowT1wOrder": result["ClassMeansFollowT1wOrder"],
            "ClassMeanIntensity": result["ClassMeanIntensity"],
            "LookUpTable": "the .tsv of the same name (columns index, name, abbreviation, mapping)",
        },
        seg_sources,
    )
    if "dseg_tsv" in outputs:
        _write_lookup(Path(outputs["dseg_tsv"]))
    for key, index, label in (
        ("probseg_gm", 0, "GM"),
        ("probseg_wm", 1, "WM"),
        ("probseg_csf", 2, "CSF"),
    ):
        if key not in outputs:
            continue
        path = Path(outputs[key])
        atomic_save(float_image(arrays["probs"][index], img), path)
        sidecar(
            path,
            {
                "Description": f"Posterior probability of {label} (Atropos), 0 outside the brain "
                "mask; the three classes sum to 1 inside it",
                "Label": label,
                "SpatialReference": str(t1w_path),
                "Method": method,
            },
            seg_sources,
        )
    xfm = arrays.get("xfm")
    if xfm is not None:
        how = (
            "ITK/ANTs composite transform (HDF5: affine + SyN displacement field). Apply with "
            "ants.apply_transforms(fixed=<grid of the target space>, moving=<image in the source "
            "space>, transformlist=[this file]) or echoprep.stages.anatomy.apply_to_grid"
        )
        common = {
            "Template": TEMPLATE_INFO,
            "TemplateResolutionMm": result["TemplateResolutionMm"],
            "Registration": result["Registration"],
            "TemplateBrainDice": result["TemplateBrainDice"],
            "HowToApply": how,
        }
        pairs = (
            ("xfm_to_template", xfm[0], "T1w", TEMPLATE),
            ("xfm_from_template", xfm[1], TEMPLATE, "T1w"),
        )
        for key, src, frm, to in pairs:
            if key not in outputs:
                continue
            path = Path(outputs[key])
            neutralise_times(src)  # HDF5 object times: the only run-to-run difference
            _atomic_copy(src, path)
            sidecar(
                path,
                {
                    "Description": f"Transform from {frm} to {to} space (moving: {frm}, "
                    f"reference: {to})",
                    "FromSpace": frm,
                    "ToSpace": to,
                    **common,
                },
                [t1w_path, preproc, mask_path],
            )
    if "template_preproc" in outputs:
        data, tpl_affine = arrays["template_preproc"]
        path = Path(outputs["template_preproc"])
        out = nib.Nifti1Image(data, tpl_affine)
        out.header.set_xyzt_units("mm")
        atomic_save(out, path)
        sidecar(
            path,
            {
                "Description": f"N4-corrected T1w resampled to {TEMPLATE} (linear)",
                "SkullStripped": False,
                "Template": TEMPLATE_INFO,
                "Resolution": f"{result['TemplateResolutionMm']} mm isotropic template grid",
                "SpatialReference": f"{TEMPLATE}: nilearn's mni_icbm152_t1_tal_nlin_sym_09a "
                f"(1 mm, corner voxel at (-98, -134, -72) mm) on a "
                f"{result['TemplateResolutionMm']} mm grid with the same corner",
            },
            [t1w_path, preproc, Path(outputs.get("xfm_to_template", preproc))],
        )


def _write_lookup(path: Path) -> None:
    """The BIDS segmentation look-up table (index, name, abbreviation, mapping)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "name", "abbreviation", "mapping"])
        for index, (name, abbr) in tissue.DSEG_LABELS.items():
            writer.writerow([index, name, abbr, index])
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# command line (wired into ``echoprep`` by cli.py)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep anatomy`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument("--t1w", required=True, type=Path, help="the subject's T1w image")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help=f"output paths by key ({', '.join(OUTPUTS)}); preproc, brain_mask, dseg required",
    )
    parser.add_argument(
        "--options-json",
        default=None,
        help='options as JSON, e.g. {"registration": "precise"} (config anatomy:)',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_anatomy` from parsed :func:`add_arguments` arguments; exit status 0."""
    import json

    outputs = key_paths(args.out)
    run_anatomy(
        args.t1w,
        outputs,
        seed=args.seed,
        n_threads=args.threads,
        options=json.loads(args.options_json) if args.options_json else None,
    )
    return 0


__all__ = [
    "DEFAULT_OPTIONS",
    "OUTPUTS",
    "REGISTRATION_PRESETS",
    "TEMPLATE",
    "add_arguments",
    "apply_to_grid",
    "from_ants",
    "output_paths",
    "run_anatomy",
    "run_from_args",
    "template_maps",
    "to_ants",
    "validate_t1w",
    "write_description",
]

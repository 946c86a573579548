"""The anatomy stage's computation and outputs (:func:`run_anatomy`), the names of its outputs
and the template's label; see the package docstring."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.adapters import ants, deepbet
from echoprep.adapters.ants import REGISTRATION_PRESETS
from echoprep.io.atomic import atomic_path
from echoprep.io.gradients import correct_image
from echoprep.io.images import StageInputError, atomic_save, float_image
from echoprep.io.outputs import TEMPLATE, stage_table
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels import tissue
from echoprep.options import options_dict
from echoprep.stages.anatomy.background import prepare_background
from echoprep.stages.anatomy.options import AnatomyOptions, parse_anatomy_options
from echoprep.stages.anatomy.t1w import MIN_VOXELS, _axes, _like, template_maps, validate_t1w

log = logging.getLogger(__name__)

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

#: Output key -> (suffix, derivative entities, extension), from the output registry.
#: Subject-level names: ``sub-<label>/anat/sub-<label>_<entities>_<suffix><ext>``.
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("anatomy")

#: Keys every call must write; the others are written when their key is given.
REQUIRED_OUTPUTS = ("preproc", "brain_mask", "dseg")

_SOFTWARE = ("antspyx", "deepbet", "torch")
#: Brain volumes below this (ml) give a warning (an adult brain is about 1000-1600 ml; a small
#: head, a child or a partial field of view give less). An empty brain mask is an error.
USUAL_MIN_BRAIN_ML = 100.0
#: A Dice of the warped brain mask with the template's below this gives a warning.
USUAL_MIN_TEMPLATE_DICE = 0.5


def _template_resolution(opts: AnatomyOptions, voxel_mm: float) -> int:
    if opts.template_resolution is not None:
        return int(opts.template_resolution)
    return int(np.clip(round(voxel_mm), 1, 4))


def _n4_shrink(opts: AnatomyOptions, voxel_mm: float, shape: tuple[int, ...]) -> int:
    shrink = opts.n4_shrink_factor
    if shrink is None:
        shrink = int(np.clip(round(8.0 / voxel_mm), 1, 8))
        # a small image keeps at least MIN_VOXELS voxels per axis once shrunk
        shrink = min(shrink, max(1, min(shape) // MIN_VOXELS))
    return int(shrink)


# ---------------------------------------------------------------------------------------------
# the stage


def run_anatomy(
    t1w_file: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    seed: int = 0,
    n_threads: int = 1,
    options: AnatomyOptions | Mapping[str, Any] | None = None,
    gradient: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bias-correct, skull-strip, segment and register one T1w; write the outputs.

    Parameters
    ----------
    t1w_file
        The subject's T1w (3D NIfTI, voxel sizes 0.2-6 mm; a field of view smaller than a
        whole head is processed with a warning).
    outputs
        Keys of :data:`OUTPUTS` to paths (``echoprep.io.outputs.paths_in(root, "anatomy",
        subject_key(subject, datatype="anat"))`` builds them). ``preproc``, ``brain_mask`` and
        ``dseg`` are required; other keys are written when given. The
        registration runs when a transform or ``template_preproc`` is asked for, or when the
        segmentation uses the template priors.
    seed
        Non-negative; seeds the ANTs registration (``seed + 1``) and torch.
    n_threads
        Threads for ITK (ANTs) and torch.
    options
        :class:`AnatomyOptions`, or (part of) the config's ``anatomy`` section: missing keys
        take the schema default.
    gradient
        Gradient-nonlinearity correction of the T1w (docs/gradients.md, "Anatomy and
        SBRefs"): ``{"coefficients": .grad file of the T1w's scanner, "patient_position":
        "HFS" | "HFP"}``: the T1w is taken at ``p + d(p)`` on its own grid (cubic B-spline)
        before any other step, every sidecar records ``GradientNonlinearity`` and lists the
        file among its sources. None (default): not corrected, nothing recorded.

    Returns
    -------
    dict
        What the sidecars record: template, registration quality (``TemplateBrainDice``: Dice of
        the warped brain mask with the template's), tissue volumes (ml), brain volume, seconds
        per step, and ``Warnings``: legal but unusual input (a field of view or brain smaller
        than a whole adult head's), one line each, also logged and written to every sidecar.

    Raises
    ------
    StageInputError
        For an unusable T1w (see :func:`validate_t1w`), an unusable ``gradient`` (a missing
        or malformed coefficient file, an unknown patient position), an empty brain mask, or
        a brain in which Atropos finds no tissue classes.
    ValueError
        For unknown or invalid options (``echoprep.options.OptionsError``), a missing required
        output key or a negative seed.
    """
    opts = parse_anatomy_options(options)
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
    warnings: list[str] = []
    img = validate_t1w(t1w_path, warnings)
    n_threads = max(1, int(n_threads))
    ants.set_itk_threads(n_threads)

    affine = np.asarray(img.affine, float)
    spacing, _ = _axes(affine)
    voxel_mm = float(spacing.max())
    data = np.asarray(img.dataobj, dtype=np.float32)

    seconds: dict[str, float] = {}
    grad_record = None
    if gradient is not None:  # before anything else: every later step sees the true anatomy
        t0 = time.perf_counter()
        data, grad_record, _ = correct_image(data, affine, gradient, "T1w")
        seconds["gradient_nonlinearity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    voxel_mm3 = float(np.prod(spacing))
    data, background = prepare_background(t1w_path, data, voxel_mm3, opts.uni_background, warnings)
    seconds["background"] = time.perf_counter() - t0
    with deepbet.torch_threads(n_threads), ants.private_tempdir() as work:
        try:
            result, arrays = _run(
                data, affine, voxel_mm, outputs, opts, seed, work, seconds, warnings
            )
        except StageInputError as exc:
            raise StageInputError(f"{t1w_path}: {exc}") from exc
        result["Background"] = background
        if grad_record is not None:
            result["GradientNonlinearity"] = grad_record
        result["Seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        result["Warnings"] = list(warnings)
        _write_all(t1w_path, img, outputs, arrays, opts, seed, n_threads, result)
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
    opts: AnatomyOptions,
    seed: int,
    work: Path,
    seconds: dict[str, float],
    warnings: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute everything: (record for the sidecars, arrays and transform files in ``work``);
    legal but unusual findings are logged and appended to ``warnings``."""
    t0 = time.perf_counter()
    shrink = _n4_shrink(opts, voxel_mm, data.shape)
    n4data, head_voxels = ants.n4_bias_correction(
        data,
        affine,
        shrink_factor=shrink,
        iterations=opts.n4_iterations,
        spline_distance=opts.n4_spline_distance,
    )
    n4_record = {
        "ShrinkFactor": shrink,
        "Iterations": list(opts.n4_iterations),
        "SplineDistanceMm": float(opts.n4_spline_distance),
        "HeadMaskVoxels": head_voxels,
    }
    seconds["n4"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mask = deepbet.brain_mask(n4data, affine, float(opts.brain_threshold), seed)
    seconds["brain_mask"] = time.perf_counter() - t0
    brain_ml = float(mask.sum() * np.prod(_axes(affine)[0])) / 1000.0
    if not mask.any():
        raise StageInputError(
            f"expected a brain in the T1w; brain extraction (deepbet, threshold "
            f"{opts.brain_threshold}) found none (an empty mask). Fix: check that the input is a "
            "T1w of a head, or lower anatomy.brain_threshold."
        )
    if brain_ml < USUAL_MIN_BRAIN_ML:
        _warn(
            warnings,
            f"brain extraction found {int(mask.sum())} voxels ({brain_ml:.1f} ml), less than "
            f"the {USUAL_MIN_BRAIN_ML:.0f} ml expected of a head (an adult brain is about "
            "1000-1600 ml): a small head, a child, or a partial field of view? Processing "
            "goes on; check the brain mask and the template registration in the report.",
        )

    wants_reg = opts.segmentation == "priors" or any(
        k in outputs for k in ("xfm_to_template", "xfm_from_template", "template_preproc")
    )
    result: dict[str, Any] = {"N4": n4_record, "Template": TEMPLATE}
    priors = None
    arrays: dict[str, Any] = {"preproc": n4data, "mask": mask}
    if wants_reg:
        t0 = time.perf_counter()
        res = _template_resolution(opts, voxel_mm)
        maps, tpl_affine = template_maps(res)
        fwd, inv = ants.register_to_template(
            n4data,
            mask,
            affine,
            maps["t1"],
            tpl_affine,
            REGISTRATION_PRESETS[opts.registration],
            seed,
            work,
        )
        warped_mask = ants.warp(mask, affine, maps["t1"], tpl_affine, fwd, "linear")
        result["TemplateBrainDice"] = round(
            tissue.dice(warped_mask >= 0.5, maps["brain"] >= 0.5), 4
        )
        result["TemplateResolutionMm"] = res
        result["Registration"] = opts.registration
        arrays["xfm"] = (fwd, inv)
        if "template_preproc" in outputs:
            warped = ants.warp(n4data, affine, maps["t1"], tpl_affine, fwd, "linear")
            arrays["template_preproc"] = (warped.astype(np.float32), tpl_affine)
        if opts.segmentation == "priors":
            priors = [
                ants.warp(maps[key], tpl_affine, n4data, affine, inv, "linear")
                for key in ("csf", "gm", "wm")  # darkest first, like the k-means order
            ]
        seconds["registration"] = time.perf_counter() - t0

    dice = result.get("TemplateBrainDice")
    if dice is not None and dice < USUAL_MIN_TEMPLATE_DICE:
        _warn(
            warnings,
            f"the brain mask brought to the template overlaps the template's brain poorly "
            f"(Dice {dice:.2f} < {USUAL_MIN_TEMPLATE_DICE}): the registration to {TEMPLATE} (and "
            "anything placed through it, e.g. template-space ROIs) may be off. Expected for a "
            "partial field of view; otherwise try anatomy.registration: precise.",
        )

    t0 = time.perf_counter()
    result["Segmentation"] = opts.segmentation
    try:
        raw = _atropos(n4data, mask, affine, priors, opts)
    except Exception as exc:  # antspyx raises a bare Exception when Atropos fails
        if priors is None:
            raise _no_tissues(mask, brain_ml, exc) from exc
        # the template's priors can miss a partial or unusual brain: fall back to intensities
        _warn(
            warnings,
            f"Atropos with the {TEMPLATE} tissue priors failed ({exc}); the tissue classes come "
            "from k-means initialisation without template information (as with "
            "anatomy.segmentation: kmeans).",
        )
        result["Segmentation"] = "kmeans"
        try:
            raw = _atropos(n4data, mask, affine, None, opts)
        except Exception as exc2:
            raise _no_tissues(mask, brain_ml, exc2) from exc2
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


def _warn(warnings: list[str], message: str) -> None:
    """Log a warning about legal but unusual input and keep it for the sidecars."""
    log.warning("%s", message)
    warnings.append(message)


def _atropos(
    n4data: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    priors: list[np.ndarray] | None,
    opts: AnatomyOptions,
) -> np.ndarray:
    return ants.atropos(
        n4data,
        mask,
        affine,
        priors,
        prior_weight=opts.prior_weight,
        mrf_weight=opts.mrf_weight,
        iterations=opts.atropos_iterations,
    )


def _no_tissues(mask: np.ndarray, brain_ml: float, exc: Exception) -> StageInputError:
    return StageInputError(
        f"expected a brain with grey matter, white matter and CSF inside the brain mask "
        f"({int(mask.sum())} voxels, {brain_ml:.0f} ml); Atropos failed ({exc}). Fix: check "
        "that the input is a T1w of a head."
    )


def _parameters(opts: AnatomyOptions, seed: int, n_threads: int) -> dict[str, Any]:
    """The sidecars' ``Parameters``: every option, the registration preset, seed, threads."""
    params = options_dict(opts)
    params["registration_settings"] = REGISTRATION_PRESETS[opts.registration]
    params["seed"] = seed
    params["n_threads"] = n_threads
    return params


def _write_all(
    t1w_path: Path,
    img: nib.Nifti1Image,
    outputs: Mapping[str, str | Path],
    arrays: Mapping[str, Any],
    opts: AnatomyOptions,
    seed: int,
    n_threads: int,
    result: Mapping[str, Any],
) -> None:
    params = _parameters(opts, seed, n_threads)
    sources = [t1w_path]
    grad_record = result.get("GradientNonlinearity")
    grad_sources = [Path(grad_record["Coefficients"])] if grad_record is not None else []

    def sidecar(path: Path, extra: Mapping[str, Any], srcs: Sequence[Path] = sources) -> None:
        # every sidecar says what was unusual about the input (empty list: nothing) and, when
        # the T1w was corrected, the gradient correction (the coefficient file a source)
        extra = {**extra, "Warnings": list(result.get("Warnings", []))}
        if grad_record is not None:
            extra["GradientNonlinearity"] = grad_record
        srcs = [*srcs, *grad_sources]
        write_sidecar(path, sources=srcs, parameters=params, extra=extra, software=_SOFTWARE)

    preproc = Path(outputs["preproc"])
    atomic_save(float_image(arrays["preproc"], img), preproc)
    background = result["Background"]
    suppressed = (
        ", its MP2RAGE UNI noise background first set to 0 (Background)"
        if background["Suppressed"]
        else ""
    )
    sidecar(
        preproc,
        {
            "Description": "T1w after N4 bias-field correction (ANTs) inside a head mask"
            + suppressed,
            "SkullStripped": False,
            "N4": result["N4"],
            "Background": background,
        },
    )
    mask_path = Path(outputs["brain_mask"])
    atomic_save(_like(arrays["mask"], img, np.uint8), mask_path)
    sidecar(
        mask_path,
        {
            "Type": "Brain",
            "SpatialReference": str(t1w_path),
            "Description": "Brain mask from deepbet (CNN) on the N4-corrected T1w" + suppressed,
            "BrainVolumeMl": result["BrainVolumeMl"],
            "Background": background,
        },
        [t1w_path, preproc],
    )
    method = (
        f"ANTs Atropos, 3 classes, initialised with the {TEMPLATE} GM/WM/CSF probability maps "
        f"brought into the T1w (prior weight {opts.prior_weight})"
        if result["Segmentation"] == "priors"
        else "ANTs Atropos, 3 classes, k-means initialisation (no template information)"
    )
    seg_sources = [t1w_path, preproc, mask_path]
    if result["Segmentation"] == "priors" and "xfm_from_template" in outputs:
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
            ants.export_transform(src, path)  # HDF5 object times set to 0
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
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "name", "abbreviation", "mapping"])
        for index, (name, abbr) in tissue.DSEG_LABELS.items():
            writer.writerow([index, name, abbr, index])


__all__ = [
    "OUTPUTS",
    "REQUIRED_OUTPUTS",
    "TEMPLATE",
    "TEMPLATE_INFO",
    "run_anatomy",
]

"""GLMsingle stage: single-trial betas of one session and one preprocessing variant.

Validate → load → fit → write. The session's preprocessed BOLD runs (one per run, the output of
the echo-handling stage, native or T1w space) and their BIDS events files go in; out come, in
``glmsingle-<nordic>-<combine>/sub-X/ses-Y/func/`` (LAION-fMRI's names, ``shared/specs/
pipeline.md``)::

    sub-X_ses-Y_task-T[_space-T1w]_stat-effect_desc-SingletrialBetas_statmap.nii.gz  4D, % BOLD
    sub-X_ses-Y_task-T_desc-SingletrialBetas_trials.tsv     session, run, beta_index, label, onset
    sub-X_ses-Y_task-T[_space-T1w]_stat-rsquare_desc-R2_statmap.nii.gz
    sub-X_ses-Y_task-T[_space-T1w]_stat-rsquare_desc-OnoffR2_statmap.nii.gz  type-A ON-OFF R²
    sub-X_ses-Y_task-T[_space-T1w]_desc-HRFindex_dseg.nii.gz       0-based library index (0-19)
    sub-X_ses-Y_task-T[_space-T1w]_desc-Fracridge_statmap.nii.gz   chosen ridge fraction
    sub-X_ses-Y_task-T[_space-T1w]_desc-GLMsingle_mask.nii.gz      the voxels fitted
    sub-X_ses-Y_task-T_desc-GLMsingle_summary.json        options, runs used, pcnum, timings
    (optional) sub-X_ses-Y_task-T_desc-GLMsingle_model.h5 all fitted arrays (needs h5py)
    (optional) sub-X_ses-Y_task-T[_space-T1w]_stat-effect_desc-SingletrialBetasTypeB_statmap.nii.gz
        type-B betas (per-voxel library HRF, or the assumed HRF with ``wantlibrary: 0``; least
        squares); ``stop_at="typeb"`` fits only up to them

every image with a JSON sidecar. Only the voxels of the brain mask are fitted (a given mask --
in the workflow the session's analysis mask, :mod:`echoprep.stages.glm_mask` -- or GLMsingle's
``brainthresh`` rule on the mean image: mean > 0.1 x its 99th percentile), less any voxel
without data in some run (a constant series, e.g. all 0: left out with a warning; NaN/Inf:
``glm.nan_policy``); every map is 0 outside. The betas are those of type D
(FITHRF_GLMDENOISE_RR) when the engine computed it, else of type C, else B (``glmsingle.md``
§17: without conditions repeated across runs types C and D are switched off); the summary
records which.

Engines: ``echoprep`` (:func:`echoprep.kernels.glm.fit_glmsingle`, the default) or
``glmsingle`` (the upstream package through :mod:`echoprep.stages.glm_upstream`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.paths import run_output
from echoprep.io.sidecars import write_dataset_description, write_json, write_sidecar
from echoprep.stages.arguments import key_paths
from echoprep.stages.glm_design import SessionDesign, build_session_design, read_events

log = logging.getLogger(__name__)

#: Output key -> (suffix, derivative entities, extension). Keys in :data:`SPATIAL_KEYS` carry
#: the ``space`` entity when the inputs are in a named space (e.g. T1w).
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = {
    "betas": ("statmap", {"stat": "effect", "desc": "SingletrialBetas"}, ".nii.gz"),
    "betas_typeb": ("statmap", {"stat": "effect", "desc": "SingletrialBetasTypeB"}, ".nii.gz"),
    "trials": ("trials", {"desc": "SingletrialBetas"}, ".tsv"),
    "r2": ("statmap", {"stat": "rsquare", "desc": "R2"}, ".nii.gz"),
    "onoff_r2": ("statmap", {"stat": "rsquare", "desc": "OnoffR2"}, ".nii.gz"),
    "hrfindex": ("dseg", {"desc": "HRFindex"}, ".nii.gz"),
    "fracridge": ("statmap", {"desc": "Fracridge"}, ".nii.gz"),
    "mask": ("mask", {"desc": "GLMsingle"}, ".nii.gz"),
    "summary": ("summary", {"desc": "GLMsingle"}, ".json"),
    "model": ("model", {"desc": "GLMsingle"}, ".h5"),
}
#: Outputs that are images on the functional grid (they get ``space-<label>``).
SPATIAL_KEYS = ("betas", "betas_typeb", "r2", "onoff_r2", "hrfindex", "fracridge", "mask")
#: Outputs written unless asked otherwise (``model`` needs h5py and ``glm.hdf5: true``;
#: ``betas_typeb``, the type-B reference betas, only when asked).
DEFAULT_OUTPUTS = tuple(k for k in OUTPUTS if k not in ("model", "betas_typeb"))
#: Outputs every call must be given (``stop_at="typeb"``: only ``betas_typeb``).
REQUIRED_OUTPUTS = ("betas", "trials", "summary")
#: Where a fit may stop: ``typed`` (the full FITHRF_GLMDENOISE_RR) or ``typeb`` (library HRF
#: per voxel, or the assumed HRF with ``wantlibrary: 0``, and plain least squares: no
#: GLMdenoise PCs, no ridge).
STOP_AT = ("typed", "typeb")
#: Names the BIDS specification does not define.
BIDSIGNORE = ("*_summary.json", "*_model.h5", "*_model.json", "*_trials.tsv", "*_trials.json")

#: GLMsingle options the ``glm:`` config section passes to the engine (glmsingle.md §16 names),
#: with their defaults (None = the engine's default: tail threshold, linspace fractions, ...).
ENGINE_OPTIONS: dict[str, Any] = {
    "wantlibrary": 1,
    "wantglmdenoise": 1,
    "wantfracridge": 1,
    "wantlss": 0,
    "wantpercentbold": 1,
    "wantautoscale": 1,
    "n_pcs": 10,
    "pcstop": 1.05,
    "fracs": None,
    "brainthresh": [99.0, 0.1],
    "brainR2": None,
    "pcR2cutoff": None,
    "maxpolydeg": None,
    "xvalscheme": None,
    "chunklen": 50000,
}

#: Stage settings of the ``glm:`` config section (not engine options).
STAGE_SETTINGS = (
    "engine",
    "label_column",
    "blank_trial_types",
    "onset_tolerance",
    "stimdur",
    "nan_policy",
    "hdf5",
)

ENGINES = ("echoprep", "glmsingle")
NAN_POLICIES = ("error", "exclude")


# ---------------------------------------------------------------------------------------------
# names


def session_key(subject: str, session: str | None, task: str) -> tuple[str, str]:
    """``(folder, stem)`` of a session's outputs, e.g. ``("sub-01/ses-01/func",
    "sub-01_ses-01_task-images")``; Snakemake wildcards such as ``{subject}`` work too."""
    folder = f"sub-{subject}/ses-{session}/func" if session else f"sub-{subject}/func"
    stem = f"sub-{subject}_ses-{session}_task-{task}" if session else f"sub-{subject}_task-{task}"
    return folder, stem


def output_paths(
    root: str | Path,
    key: tuple[str, str],
    *,
    space: str | None = None,
    keys: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Paths of one session's GLMsingle outputs.

    Parameters
    ----------
    root
        The derivative folder, e.g. ``<out>/glmsingle-nordic-optcom``.
    key
        ``(folder, stem)`` from :func:`session_key` (or wildcard patterns).
    space
        Space label of the inputs (``"T1w"``) or None for the native grid.
    keys
        Keys of :data:`OUTPUTS`; None gives :data:`DEFAULT_OUTPUTS`.

    Returns
    -------
    dict
        Key -> path.
    """
    out: dict[str, Path] = {}
    for k in keys if keys is not None else DEFAULT_OUTPUTS:
        suffix, entities, ext = OUTPUTS[k]
        ents = {"space": space, **entities} if k in SPATIAL_KEYS else dict(entities)
        out[k] = run_output(root, key, suffix, ext, **ents)
    return out


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of a ``glmsingle-<variant>`` folder."""
    return write_dataset_description(
        root,
        f"echoprep single-trial betas ({Path(root).name})",
        description="GLMsingle FITHRF_GLMDENOISE_RR single-trial betas per session "
        "(echoprep's engine unless glm.engine is glmsingle) and noise ceilings (NSD ncsnr)",
        config=config,
        source_datasets=[str(source)],
        bidsignore=BIDSIGNORE,
    )


# ---------------------------------------------------------------------------------------------
# options


def resolve_settings(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a ``glm:`` config section into (engine options, stage settings), with defaults.

    Engine options left at None are not passed (the engine's own default applies). Keys that
    belong to neither (e.g. ``all_sessions_variants``, used by the workflow) are ignored.

    Raises
    ------
    ValueError
        Unknown engine or NaN policy.
    """
    options = dict(options or {})
    engine = {k: options.get(k, v) for k, v in ENGINE_OPTIONS.items()}
    engine = {k: v for k, v in engine.items() if v is not None}
    settings = {
        "engine": options.get("engine", "echoprep"),
        "label_column": options.get("label_column"),
        "blank_trial_types": list(options.get("blank_trial_types", ["blank"])),
        "onset_tolerance": options.get("onset_tolerance"),
        "stimdur": options.get("stimdur"),
        "nan_policy": options.get("nan_policy", "error"),
        "hdf5": bool(options.get("hdf5", False)),
    }
    if settings["engine"] not in ENGINES:
        raise ValueError(
            f"glm.engine: expected one of {list(ENGINES)}; found {settings['engine']!r}. "
            "Fix: set glm.engine to echoprep (default) or glmsingle."
        )
    if settings["nan_policy"] not in NAN_POLICIES:
        raise ValueError(
            f"glm.nan_policy: expected one of {list(NAN_POLICIES)}; found "
            f"{settings['nan_policy']!r}."
        )
    return engine, settings


# ---------------------------------------------------------------------------------------------
# inputs


def series_tr(path: str | Path, img: nib.Nifti1Image) -> float:
    """Sampling interval (s) of a BOLD series: ``RepetitionTime`` of its JSON sidecar, else the
    NIfTI header's 4th zoom (ms converted when the header says so)."""
    side = Path(str(path).removesuffix(".nii.gz").removesuffix(".nii") + ".json")
    if side.exists():
        try:
            tr = json.loads(side.read_text()).get("RepetitionTime")
        except json.JSONDecodeError:
            tr = None
        if tr:
            return float(tr)
    zoom = float(img.header.get_zooms()[3]) if len(img.shape) == 4 else 0.0
    unit = img.header.get_xyzt_units()[1]
    if unit == "msec":
        zoom /= 1000.0
    if not (zoom > 0):
        raise StageInputError(
            f"{path}: expected the repetition time in the JSON sidecar (RepetitionTime) or the "
            f"NIfTI header (pixdim[4]); found neither. Fix: pass --tr."
        )
    return zoom


def brainthresh_mask(mean: np.ndarray, brainthresh: Sequence[float]) -> np.ndarray:
    """GLMsingle's bright-voxel rule: ``mean > frac x percentile(mean, p)`` (NaN = outside).

    Parameters
    ----------
    mean
        Mean image over all volumes of all runs, any shape.
    brainthresh
        ``(p, frac)``, default ``(99, 0.1)``.
    """
    finite = np.isfinite(mean)
    if not finite.any():
        return np.zeros(mean.shape, bool)
    thr = float(brainthresh[1]) * float(np.percentile(mean[finite], float(brainthresh[0])))
    out = np.zeros(mean.shape, bool)
    out[finite] = mean[finite] > thr
    return out


def _nonfinite_voxels(data: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: voxels (rows of ``(V, T)``) with any NaN/Inf."""
    return ~np.isfinite(data.sum(axis=-1, dtype=np.float64))


def constant_voxels(data: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: rows of ``(V, T)`` whose finite values are all equal (e.g. all 0).

    A row with no finite value counts as constant too; callers that treat NaN/Inf separately
    mask those rows out first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        top = np.nanmax(data, axis=-1) if data.shape[-1] else np.zeros(data.shape[:-1])
        low = np.nanmin(data, axis=-1) if data.shape[-1] else np.zeros(data.shape[:-1])
    return ~(top > low)


def constant_warning(total: int, by_run: Mapping[str, int], what: str) -> str:
    """The warning for voxels left out because their series is constant in some run.

    Parameters
    ----------
    total
        Voxels left out (constant in at least one run).
    by_run
        Run label (or ``variant run``) -> voxels constant in that run (0 entries are skipped).
    what
        What they are left out of (``"fit"``, ``"analysis mask"``).
    """
    runs = "; ".join(f"run {k}: {v}" for k, v in by_run.items() if v)
    return (
        f"leaving {total} voxels out of the {what}: their series is constant (e.g. all 0, "
        f"outside another tool's mask) in some run ({runs}); they have no data there"
    )


def load_brain_mask(path: str | Path, ref: nib.Nifti1Image) -> np.ndarray:
    """``(X, Y, Z)`` bool brain mask (non-zero) from ``path``, checked to lie on ``ref``'s grid.

    Raises
    ------
    StageInputError
        A mask of another shape or affine, naming the file and the fix.
    """
    spatial = ref.shape[:3]
    mimg = load_image(path, "brain mask")
    if mimg.shape[:3] != spatial or not np.allclose(mimg.affine, ref.affine, atol=1e-3):
        raise StageInputError(
            f"{path}: expected a brain mask on the BOLD grid {spatial}; found shape "
            f"{mimg.shape} or another affine. Fix: resample the mask to the functional grid."
        )
    return np.asarray(mimg.dataobj).reshape(spatial) > 0


def load_session(
    bold_files: Sequence[str | Path],
    *,
    mask_file: str | Path | None = None,
    brainthresh: Sequence[float] = (99.0, 0.1),
    nan_policy: str = "error",
    run_labels: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], np.ndarray, nib.Nifti1Image, dict[str, Any]]:
    """Read a session's BOLD runs, inside the brain mask, as ``(V, T_r)`` float32 arrays.

    Parameters
    ----------
    bold_files
        One 4D series per run (same grid).
    mask_file
        Brain mask on that grid (non-zero = brain); None: GLMsingle's ``brainthresh`` rule on
        the mean image over all runs.
    brainthresh
        ``(percentile, fraction)`` of that rule.
    nan_policy
        ``"error"``: a voxel with NaN/Inf in any run (inside the mask) is an error naming the
        run and the voxel count; ``"exclude"``: such voxels are left out of the mask.
    run_labels
        Run labels for the messages.

    Returns
    -------
    data, mask, reference, info
        ``data[r]`` is ``(V, T_r)`` float32 over the ``V`` mask voxels (C order);
        ``mask`` ``(X, Y, Z)`` bool; ``reference`` the first run's image (geometry);
        ``info``: ``mask_source``, ``n_nonfinite_excluded``, ``nonfinite_by_run`` (run label
        -> voxels), ``n_constant_excluded``, ``constant_by_run`` (run label -> voxels),
        ``tr``, ``n_volumes``.

    Notes
    -----
    A voxel whose (finite) series is constant in some run -- typically all 0 outside the mask
    another tool applied to that run, e.g. tedana's adaptive mask -- has no data there: it is
    left out of the fit under either NaN policy, with a warning naming the runs and counts.
    This is legal data, never an error; fitting it would give betas of one run's zeros and
    noise ceilings that mean nothing. The NaN policy applies to NaN/Inf only.

    Raises
    ------
    StageInputError
        Naming the file: not 4D, differing grids or TRs, a mask of another grid, NaNs.
    """
    files = [Path(f) for f in bold_files]
    if not files:
        raise StageInputError("expected at least one BOLD run for the session; found none")
    labels = list(run_labels) if run_labels else [str(i + 1) for i in range(len(files))]
    imgs = [load_image(f, "preprocessed BOLD series (x, y, z, volumes)", ndim=4) for f in files]
    ref = imgs[0]
    trs = []
    for f, img in zip(files, imgs, strict=True):
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise StageInputError(
                f"{f}: expected the grid of {files[0].name} (shape {ref.shape[:3]}); found shape "
                f"{img.shape[:3]} or another affine. Fix: all runs of a session must be "
                "resampled to one grid (enable spatial preprocessing)."
            )
        trs.append(series_tr(f, img))
    if not np.allclose(trs, trs[0], rtol=1e-4):
        raise StageInputError(
            f"{files[0]}: expected one repetition time for all runs of the session; found "
            f"{trs} s. Fix: runs with different TRs cannot share one GLM."
        )
    spatial = ref.shape[:3]
    source = "brainthresh"
    if mask_file is not None:
        mask = load_brain_mask(mask_file, ref)
        source = str(mask_file)
    else:
        # mean over the finite values, so that a voxel with a few NaNs is still judged (and
        # then reported by the NaN check below) rather than silently left out
        total = np.zeros(spatial, np.float64)
        count = np.zeros(spatial, np.int64)
        for img in imgs:
            arr = img.get_fdata(dtype=np.float32)
            finite = np.isfinite(arr)
            total += np.where(finite, arr, 0.0).sum(axis=3, dtype=np.float64)
            count += finite.sum(axis=3)
            del arr, finite
        with np.errstate(invalid="ignore", divide="ignore"):
            mask = brainthresh_mask(np.where(count > 0, total / count, np.nan), brainthresh)
    if not mask.any():
        raise StageInputError(
            f"{mask_file or files[0]}: expected brain voxels to fit; found an empty mask. "
            "Fix: check the brain mask (or the BOLD intensities)."
        )
    data: list[np.ndarray] = []
    bad = np.zeros(int(mask.sum()), bool)
    constant = np.zeros(int(mask.sum()), bool)
    problems = []
    nonfinite_by_run: dict[str, int] = {}
    constant_by_run: dict[str, int] = {}
    for f, img, label in zip(files, imgs, labels, strict=True):
        arr = img.get_fdata(dtype=np.float32)
        run = np.ascontiguousarray(arr[mask])
        del arr
        nonfinite = _nonfinite_voxels(run)
        nonfinite_by_run[label] = int(nonfinite.sum())
        if nonfinite.any():
            problems.append(f"run {label} ({f}): {int(nonfinite.sum())} voxels")
            bad |= nonfinite
        flat = constant_voxels(run) & ~nonfinite
        constant_by_run[label] = int(flat.sum())
        constant |= flat
        data.append(run)
    n_bad = int(bad.sum())
    if n_bad and nan_policy == "error":
        raise StageInputError(
            "expected finite BOLD values in every brain voxel; found NaN or Inf in "
            + "; ".join(problems)
            + ". Fix: provide a brain mask that leaves these voxels out, or set "
            "glm.nan_policy: exclude to drop them from the fit."
        )
    if n_bad:
        log.warning("leaving out %d voxels with NaN/Inf: %s", n_bad, "; ".join(problems))
    constant &= ~bad
    n_constant = int(constant.sum())
    if n_constant:
        log.warning(constant_warning(n_constant, constant_by_run, "fit"))
    if n_bad or n_constant:
        keep = ~(bad | constant)
        idx = np.flatnonzero(mask.reshape(-1))
        mask = np.zeros(mask.size, bool)
        mask[idx[keep]] = True
        mask = mask.reshape(spatial)
        data = [np.ascontiguousarray(d[keep]) for d in data]
    info = {
        "mask_source": source,
        "n_nonfinite_excluded": n_bad,
        "nonfinite_by_run": nonfinite_by_run,
        "n_constant_excluded": n_constant,
        "constant_by_run": constant_by_run,
        "tr": float(trs[0]),
        "n_volumes": [int(d.shape[1]) for d in data],
    }
    return data, mask, ref, info


def check_events_span(
    events_files: Sequence[str | Path],
    n_volumes: Sequence[int],
    tr: float,
    run_labels: Sequence[str],
    bold_files: Sequence[str | Path],
) -> None:
    """Refuse events that do not fit their run's series (design/data length mismatch).

    Raises
    ------
    StageInputError
        Naming the run, the events file, the BOLD file and both lengths.
    """
    for ev, nvol, label, bold in zip(events_files, n_volumes, run_labels, bold_files, strict=True):
        onsets = read_events(ev)["onset"].to_numpy()
        if not onsets.size:
            continue
        last = float(onsets.max())
        length = nvol * tr
        if last >= length - tr / 2:
            raise StageInputError(
                f"run {label}: design/data length mismatch: {ev} has an onset at {last:g} s, but "
                f"the BOLD series {bold} has {nvol} volumes x {tr:g} s = {length:g} s (the "
                f"design needs at least {math.floor(last / tr + 0.5) + 1} volumes). Fix: pair "
                "each run's events file with its own series, and do not drop volumes that "
                "trials fall into."
            )


# ---------------------------------------------------------------------------------------------
# fit


def _fit(
    engine: str,
    design: SessionDesign,
    data: list[np.ndarray],
    stimdur: float,
    tr: float,
    options: Mapping[str, Any],
    *,
    n_threads: int,
    seed: int,
) -> dict[str, Any]:
    if engine == "glmsingle":
        from echoprep.stages.glm_upstream import fit_upstream

        return fit_upstream(design.designs, data, stimdur, tr, options)
    from echoprep.kernels.glm import fit_glmsingle

    return fit_glmsingle(
        design.designs,
        data,
        stimdur,
        tr,
        **options,
        wantfithrfr2run=0,
        seed=seed,
        n_threads=n_threads,
    )


def choose_betas(results: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The most complete model in ``results``: ``typed``, else ``typec``, else ``typeb``."""
    for name in ("typed", "typec", "typeb"):
        if results.get(name):
            return name, results[name]
    raise RuntimeError("the GLM engine returned no single-trial model (types B, C and D absent)")


def _scatter(values: np.ndarray, mask: np.ndarray, fill: float = 0.0, dtype=np.float32):
    """``(V, ...)`` mask-voxel values -> ``(X, Y, Z, ...)`` volume, ``fill`` outside."""
    values = np.asarray(values)
    out = np.full(mask.shape + values.shape[1:], fill, dtype=dtype)
    v = np.nan_to_num(values.astype(dtype), nan=fill, posinf=fill, neginf=fill)
    out[mask] = v
    return out


def _image(data: np.ndarray, ref: nib.Nifti1Image, dtype=np.float32) -> nib.Nifti1Image:
    if np.issubdtype(dtype, np.integer):
        header = ref.header.copy()
        header.set_data_dtype(dtype)
        img = nib.Nifti1Image(np.asarray(data, dtype), ref.affine, header)
        img.header.set_slope_inter(1.0, 0.0)
    else:
        img = float_image(data, ref)
    if data.ndim == 3:
        img.header.set_xyzt_units(xyz="mm")
    return img


def _jsonable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in options.items()
    }


def write_hdf5(path: Path, results: Mapping[str, Any], mask: np.ndarray) -> Path:
    """All arrays of ``results`` (types A-D, mask-voxel layout) and the mask in one HDF5 file.

    Raises
    ------
    StageInputError
        h5py is not installed (it is optional: ``pip install h5py``).
    """
    try:
        import h5py
    except ImportError as exc:
        raise StageInputError(
            f"{path}: glm.hdf5 is true, which needs the optional package h5py; found it not "
            "installed. Fix: install h5py in the workflow's environment or set glm.hdf5: false."
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as fh:
        fh.create_dataset("mask", data=mask.astype(np.uint8), compression="gzip")
        for model, content in results.items():
            if not isinstance(content, Mapping):
                continue
            group = fh.create_group(model)
            for key, value in content.items():
                if isinstance(value, list | tuple):
                    sub = group.create_group(key)
                    for i, v in enumerate(value):
                        sub.create_dataset(str(i), data=np.asarray(v))
                elif value is not None:
                    group.create_dataset(key, data=np.asarray(value))
    tmp.replace(path)
    return path


def run_glm(
    bold_files: Sequence[str | Path],
    events_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    mask: str | Path | None = None,
    space: str | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int = 1,
    run_labels: Sequence[str | None] | None = None,
    session: str | None = None,
    tr: float | None = None,
    stop_at: str = "typed",
) -> dict[str, Path]:
    """Fit GLMsingle to one session and write the outputs.

    Parameters
    ----------
    bold_files
        Preprocessed 4D BOLD series, one per run, in run order, on one grid.
    events_files
        The runs' BIDS events files, same order.
    outputs
        Keys of :data:`OUTPUTS` to paths (``betas``, ``trials`` and ``summary`` required).
    mask
        Brain mask on the BOLD grid, or None (GLMsingle's ``brainthresh`` rule).
    space
        Space label of the inputs (recorded in the sidecars; the names come from ``outputs``).
    options
        The ``glm:`` config section: GLMsingle options (:data:`ENGINE_OPTIONS`) and stage
        settings (:data:`STAGE_SETTINGS`).
    seed
        Seed of the engine's random steps (tail-threshold mixture fit).
    n_threads
        BLAS threads of the engine.
    run_labels
        BIDS run labels (trials table and messages); None: 1, 2, ...
    session
        Session label for the trials table (``n/a`` when None).
    tr
        Sampling interval (s); None: from the series' sidecars or headers.
    stop_at
        ``"typed"``: the full fit (the betas are of type D when the engine computes it).
        ``"typeb"``: stop after type B (GLMdenoise and ridge switched off): only
        ``betas_typeb`` is required; ``betas``, if given, then holds type B too. Any fit writes
        ``betas_typeb`` (the type-B betas of the same fit) when that key is in ``outputs``.

    Returns
    -------
    dict
        Key -> written path.

    Raises
    ------
    StageInputError
        Unusable inputs (messages name the file, the expectation, the finding and the fix).
    """
    if stop_at not in STOP_AT:
        raise ValueError(f"stop_at: expected one of {list(STOP_AT)}; found {stop_at!r}")
    required = REQUIRED_OUTPUTS if stop_at == "typed" else ("betas_typeb",)
    missing = [k for k in required if k not in outputs]
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if missing or unknown:
        raise ValueError(f"outputs: missing {missing}, unknown {unknown}; keys are {list(OUTPUTS)}")
    bold = [Path(f) for f in bold_files]
    events = [Path(f) for f in events_files]
    if len(bold) != len(events):
        raise StageInputError(
            f"{bold[0] if bold else '<no BOLD>'}: expected one events file per BOLD run; found "
            f"{len(bold)} runs and {len(events)} events files. Fix: every run needs its "
            "events.tsv."
        )
    labels = [str(r) if r else str(i + 1) for i, r in enumerate(run_labels or [None] * len(bold))]
    engine_opts, settings = resolve_settings(options)
    if stop_at == "typeb":
        engine_opts.update(wantglmdenoise=0, wantfracridge=0)
    if settings["hdf5"] and "model" not in outputs and stop_at == "typed":
        raise ValueError("glm.hdf5 is true: pass the 'model' output path")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data, fit_mask, ref, info = load_session(
        bold,
        mask_file=mask,
        brainthresh=engine_opts.get("brainthresh", (99.0, 0.1)),
        nan_policy=settings["nan_policy"],
        run_labels=labels,
    )
    series_dt = float(tr) if tr is not None else info["tr"]
    check_events_span(events, info["n_volumes"], series_dt, labels, bold)
    design = build_session_design(
        events,
        info["n_volumes"],
        series_dt,
        label_column=settings["label_column"],
        exclude_trial_types=settings["blank_trial_types"],
        onset_tolerance=settings["onset_tolerance"],
        run_labels=labels,
    )
    stimdur = settings["stimdur"]
    if stimdur is None:
        stimdur = design.stimulus_duration if math.isfinite(design.stimulus_duration) else 0.0
    timings["load_s"] = round(time.perf_counter() - t0, 3)
    n_vox = int(fit_mask.sum())
    log.info(
        "GLMsingle (%s engine): %d runs, %d trials of %d conditions, %d voxels, TR %g s, "
        "stimdur %g s",
        settings["engine"],
        len(bold),
        len(design.trials),
        len(design.conditions),
        n_vox,
        series_dt,
        stimdur,
    )
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _fit(
            settings["engine"],
            design,
            data,
            float(stimdur),
            series_dt,
            engine_opts,
            n_threads=n_threads,
            seed=seed,
        )
    messages = [str(w.message) for w in caught]
    for m in messages:
        log.warning("GLMsingle: %s", m)
    timings["fit_s"] = round(time.perf_counter() - t1, 3)
    del data

    t2 = time.perf_counter()
    kind, model = choose_betas(results)
    if kind != "typed" and stop_at == "typed":
        log.warning(
            "GLMsingle: type D was not computed (see the messages above); writing the type-%s "
            "betas",
            kind[-1].upper(),
        )
    written: dict[str, Path] = {}
    sources = [*bold, *events, *([Path(mask)] if mask else [])]
    parameters = {
        **_jsonable_options(engine_opts),
        **settings,
        "seed": seed,
        "stimdur": float(stimdur),
        "tr": series_dt,
    }
    space_note = {"Space": space} if space else {}
    excluded = {
        "ConstantVoxelsExcluded": info["n_constant_excluded"],
        "ConstantVoxelsByRun": info["constant_by_run"],
        "NonfiniteVoxelsExcluded": info["n_nonfinite_excluded"],
        "NonfiniteVoxelsByRun": info["nonfinite_by_run"],
    }
    betas = np.asarray(model["betasmd"]).reshape(n_vox, -1)
    for key, kind_written in (("betas", kind), ("betas_typeb", "typeb")):
        if key not in outputs:
            continue
        values = betas if kind_written == kind else results.get("typeb", {}).get("betasmd")
        if values is None:
            raise RuntimeError("the GLM engine returned no type-B betas (wantlibrary off?)")
        values = np.asarray(values).reshape(n_vox, -1)
        out = Path(outputs[key])
        atomic_save(_image(_scatter(values, fit_mask), ref), out)
        hrf = (
            "the library HRF chosen per voxel"
            if engine_opts.get("wantlibrary", 1)
            else "the assumed (canonical) HRF in every voxel"
        )
        note = (
            f" Type B: {hrf} and ordinary least squares (no GLMdenoise PCs, no ridge), a "
            "reference free of the denoising steps."
            if kind_written == "typeb"
            else ""
        )
        write_sidecar(
            out,
            sources=sources,
            parameters=parameters,
            software=_software(settings["engine"]),
            extra={
                **space_note,
                "Units": "% BOLD (of |mean signal|)",
                "Description": f"Single-trial betas (GLMsingle {_MODEL_NAMES[kind_written]}), "
                "one volume per modelled trial in chronological order (row beta_index of the "
                f"trials TSV); 0 outside the fitted mask.{note}",
                "ModelType": _MODEL_NAMES[kind_written],
                "NumberOfTrials": int(values.shape[1]),
                "VoxelsFitted": n_vox,
                **excluded,
            },
        )
        written[key] = out
    if "trials" in outputs:
        written["trials"] = _write_trials(
            Path(outputs["trials"]), design, session, events, settings, series_dt, labels
        )
    maps = {
        "r2": (
            model.get("R2"),
            np.float32,
            {"Units": "%", "Description": "Variance explained by the task part of the model"},
        ),
        "onoff_r2": (
            results.get("typea", {}).get("onoffR2"),
            np.float32,
            {
                "Units": "%",
                "Description": "Type-A ON-OFF R² (all trials as one condition, canonical HRF)",
            },
        ),
        "hrfindex": (
            model.get("HRFindex"),
            np.int16,
            {
                "Description": "0-based index (0-19) of the library HRF chosen per voxel; "
                "voxels outside the fitted mask are 0 too (see the mask)",
            },
        ),
        "fracridge": (
            model.get("FRACvalue") if kind == "typed" else np.ones(n_vox, np.float32),
            np.float32,
            {
                "Units": "1",
                "Description": "Ridge fraction chosen per voxel (1 = no shrinkage; all 1 when "
                "type D was not computed); 0 outside the fitted mask",
            },
        ),
        "mask": (
            np.ones(n_vox, np.uint8),
            np.uint8,
            {
                "Type": "Brain",
                "Description": f"Voxels fitted (mask: {info['mask_source']}), less those "
                "without data in some run (constant or NaN/Inf series)",
                **excluded,
            },
        ),
    }
    for key, (values, dtype, extra) in maps.items():
        if key not in outputs:
            continue
        if values is None:
            values = np.zeros(n_vox, np.float32)
        out = Path(outputs[key])
        vol = _scatter(np.asarray(values).reshape(n_vox), fit_mask, dtype=dtype)
        atomic_save(_image(vol, ref, dtype), out)
        write_sidecar(
            out,
            sources=sources,
            parameters=parameters,
            software=_software(settings["engine"]),
            extra={**space_note, **extra, "ModelType": _MODEL_NAMES[kind]},
        )
        written[key] = out
    if "model" in outputs:
        written["model"] = write_hdf5(Path(outputs["model"]), results, fit_mask)
        write_sidecar(
            written["model"],
            sources=sources,
            parameters=parameters,
            software=[*_software(settings["engine"]), "h5py"],
            extra={
                **space_note,
                "Description": "All GLMsingle results (types A-D, fitted-voxel layout) and the "
                "fitted mask",
                "ModelType": _MODEL_NAMES[kind],
            },
        )
    timings["write_s"] = round(time.perf_counter() - t2, 3)
    summary = {
        "Engine": settings["engine"],
        "ModelType": _MODEL_NAMES[kind],
        "Options": parameters,
        "ResolvedOptions": _resolved(results.get("params", {})),
        "RunsUsed": [
            {"run": lab, "bold": str(b), "events": str(e), "volumes": n}
            for lab, b, e, n in zip(labels, bold, events, info["n_volumes"], strict=True)
        ],
        "Session": session,
        "Space": space,
        "pcnum": int(model.get("pcnum", 0)) if kind != "typeb" else 0,
        "xvaltrend": _list(results.get("typec", {}).get("xvaltrend")),
        "NumberOfTrials": len(design.trials),
        "NumberOfConditions": len(design.conditions),
        "ConditionsInSeveralRuns": int((design.trials.groupby("label")["run"].nunique() > 1).sum()),
        "LabelColumn": design.label_column,
        "ExcludedEvents": int(design.excluded),
        "MaxOnsetRoundingError_s": float(design.max_rounding_error),
        "StimulusDuration_s": float(stimdur),
        "RepetitionTime_s": series_dt,
        "VoxelsFitted": n_vox,
        "MaskSource": info["mask_source"],
        **excluded,
        "Warnings": messages,
        "Timings_s": timings,
        "SoftwareVersions": _software_versions(settings["engine"]),
    }
    if "summary" in outputs:
        write_json(Path(outputs["summary"]), summary)
        written["summary"] = Path(outputs["summary"])
    log.info(
        "GLMsingle: %s betas of %d trials -> %s",
        kind,
        betas.shape[1],
        written.get("betas", written.get("betas_typeb")),
    )
    return written


def _write_trials(
    out: Path,
    design: SessionDesign,
    session: str | None,
    events: Sequence[Path],
    settings: Mapping[str, Any],
    series_dt: float,
    labels: Sequence[str],
) -> Path:
    """Write the trials table (row i = volume i of the betas) and its sidecar."""
    trials = _trials_table(design, session)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    trials.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    tmp.replace(out)
    write_sidecar(
        out,
        sources=events,
        parameters={
            "label_column": design.label_column,
            "blank_trial_types": settings["blank_trial_types"],
            "onset_tolerance": settings["onset_tolerance"],
            "tr": series_dt,
            "run_labels": labels,
            "session": session,
        },
        extra={
            "Description": "Modelled trials in chronological order (run, then onset); row i is "
            "volume i of the single-trial betas",
            "session": {"Description": "BIDS session label"},
            "run": {"Description": "BIDS run label (or position in the session)"},
            "beta_index": {"Description": "0-based volume index in the betas"},
            "label": {"Description": f"condition (events column {design.label_column!r})"},
            "onset": {"Description": "onset from the events file", "Units": "s"},
            "onset_volume": {"Description": "0-based volume the onset was rounded to"},
            "trial_type": {"Description": "trial_type from the events file"},
        },
    )
    return out


_MODEL_NAMES = {
    "typeb": "FITHRF",
    "typec": "FITHRF_GLMDENOISE",
    "typed": "FITHRF_GLMDENOISE_RR",
}


def _software(engine: str) -> list[str]:
    return ["glmsingle"] if engine == "glmsingle" else []


def _software_versions(engine: str) -> dict[str, str]:
    from echoprep.io.sidecars import software_versions

    return software_versions(_software(engine))


def _list(value: Any) -> list | None:
    return None if value is None else np.asarray(value).tolist()


def _resolved(params: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar and short resolved engine parameters (no HRF arrays)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k in ("hrflibrary", "hrftoassume"):
            continue
        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating):
            out[k] = np.round(v, 10).tolist()
        elif isinstance(v, np.ndarray | list | tuple):
            arr = [np.asarray(x).tolist() for x in v] if isinstance(v, tuple | list) else v.tolist()
            out[k] = arr
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _trials_table(design: SessionDesign, session: str | None) -> pd.DataFrame:
    t = design.trials
    return pd.DataFrame(
        {
            "session": session or "n/a",
            "run": t["run_label"],
            "beta_index": t["beta_index"].astype(int),
            "label": t["label"],
            "onset": t["onset"],
            "onset_volume": t["onset_volume"].astype(int),
            "trial_type": t["trial_type"],
        }
    )


def read_trials(path: str | Path) -> pd.DataFrame:
    """A trials table written by :func:`run_glm` (labels and run labels kept as text)."""
    return pd.read_csv(
        path, sep="\t", dtype={"session": str, "run": str, "label": str}, keep_default_na=False
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep glm`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument(
        "--bold", nargs="+", required=True, type=Path, help="preprocessed BOLD, one per run"
    )
    parser.add_argument(
        "--events", nargs="+", required=True, type=Path, help="events.tsv per run, same order"
    )
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help=f"output paths by key ({', '.join(OUTPUTS)}); betas, trials, summary required "
        "(with --stop-at typeb: betas_typeb only)",
    )
    parser.add_argument("--mask", type=Path, default=None, help="brain mask on the BOLD grid")
    parser.add_argument("--space", default=None, help="space label of the inputs (e.g. T1w)")
    parser.add_argument("--run-labels", nargs="+", default=None, help="BIDS run labels")
    parser.add_argument("--session", default=None, help="BIDS session label")
    parser.add_argument(
        "--options-json", default=None, help="the glm: config section as JSON (see config.yaml)"
    )
    parser.add_argument("--tr", type=float, default=None, help="TR in s (default: sidecars)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--stop-at",
        choices=STOP_AT,
        default="typed",
        help="typeb: fit only up to type B (library HRF, least squares; the reference betas)",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_glm` from parsed :func:`add_arguments` arguments; exit status 0."""
    run_glm(
        args.bold,
        args.events,
        key_paths(args.out),
        mask=args.mask,
        space=args.space,
        options=json.loads(args.options_json) if args.options_json else None,
        seed=args.seed,
        n_threads=args.threads,
        run_labels=args.run_labels,
        session=args.session,
        tr=args.tr,
        stop_at=args.stop_at,
    )
    return 0


__all__ = [
    "DEFAULT_OUTPUTS",
    "ENGINE_OPTIONS",
    "OUTPUTS",
    "STOP_AT",
    "add_arguments",
    "brainthresh_mask",
    "check_events_span",
    "choose_betas",
    "constant_voxels",
    "constant_warning",
    "load_session",
    "output_paths",
    "read_trials",
    "resolve_settings",
    "run_from_args",
    "run_glm",
    "session_key",
    "write_description",
]

"""Analysis mask: the one set of voxels every GLM variant of a session is fitted on.

The variants of a session (NORDIC off/on x single echo/optcom/ICA-denoised) differ in which
voxels carry data: tedana writes 0 outside its adaptive mask, which differs between runs and
between variants. Fitting each variant on its own voxels lets a voxel with data in one run only
(its other runs all 0) into one variant's noise ceiling and not into another's, which makes the
variants' ROI statistics incomparable. The analysis mask is::

    brain mask  AND  (valid data in every run of every variant fitted in the session)

where the brain mask is the given one (the anatomy brain mask on the functional grid when
spatial preprocessing is on) or, without one, GLMsingle's bright-voxel rule (``brainthresh``)
applied to each variant's mean image, intersected over the variants; a voxel has valid data in
a run when its series there is finite and not constant. Constant voxels are legal data (left
out with a warning); NaN/Inf inside the brain follow ``glm.nan_policy`` (error by default, as
in the GLM stage). The runs are read one at a time (memory: about two copies of one run).

Output (one per subject and session), with its JSON sidecar (sources; per variant and run the
voxels left out)::

    glmsingle-analysis/sub-X/ses-Y/func/sub-X_ses-Y_task-T[_space-T1w]_desc-analysis_mask.nii.gz

See docs/glm.md §13. Sub-command: ``echoprep analysis-mask --bold VARIANT RUN... [--bold ...]
--options-json GLM_SECTION --out mask=PATH``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.arguments import key_paths
from echoprep.io.images import StageInputError, atomic_save, check_same_grid, load_image, read_array
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.glm.voxels import (
    brainthresh_mask,
    finite_mean,
    finite_sums,
    run_without_data,
)
from echoprep.stages.glm.inputs import check_nonfinite, constant_warning, load_brain_mask
from echoprep.stages.glm.options import GlmOptions, parse_glm_options

log = logging.getLogger(__name__)


def analysis_mask(
    variant_runs: Mapping[str, Sequence[str | Path]],
    *,
    brain_mask: str | Path | None = None,
    brainthresh: Sequence[float],
    nan_policy: str,
    run_labels: Mapping[str, Sequence[str]] | None = None,
) -> tuple[np.ndarray, nib.Nifti1Image, dict[str, Any]]:
    """The voxels of the brain mask with valid data in every run of every variant.

    Parameters
    ----------
    variant_runs
        Variant name (e.g. ``raw-optcom``) -> its preprocessed 4D BOLD runs of the session, all
        on one grid.
    brain_mask
        Brain mask on that grid (non-zero = brain); None: GLMsingle's bright-voxel rule on
        each variant's mean image (``mean > frac x percentile(mean, p)``), intersected.
    brainthresh
        ``(p, frac)`` of that rule (config ``glm.brainthresh``).
    nan_policy
        ``"error"``: NaN/Inf in a brain voxel of any run is an error naming the runs;
        ``"exclude"``: those voxels are left out (config ``glm.nan_policy``). Constant series
        are left out either way.
    run_labels
        Variant -> run labels (messages and sidecar); None: 1, 2, ...

    Returns
    -------
    mask, reference, info
        ``mask`` ``(X, Y, Z)`` bool; ``reference`` the first run's image (geometry);
        ``info``: ``BrainVoxels``, ``MaskSource``, ``BrainVoxelsByVariant`` (bright-voxel
        rule only), ``ExcludedVoxels`` (variant -> run -> ``{"constant": n, "nonfinite": n}``,
        brain voxels only), ``ConstantVoxelsExcluded``, ``NonfiniteVoxelsExcluded``,
        ``Voxels``.

    Raises
    ------
    StageInputError
        No runs, runs or mask on different grids, NaN/Inf under ``nan_policy="error"``, an
        empty result.
    """
    runs = {v: [Path(f) for f in files] for v, files in variant_runs.items() if files}
    if not runs:
        raise StageInputError(
            "analysis mask: expected the BOLD runs of at least one variant; found none"
        )
    first = next(iter(runs.values()))[0]
    ref = load_image(first, "preprocessed BOLD series (x, y, z, volumes)", ndim=4)
    spatial = ref.shape[:3]
    nonfinite = np.zeros(spatial, bool)
    constant = np.zeros(spatial, bool)
    per_run: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    means: dict[str, np.ndarray] = {}
    for variant, files in runs.items():
        labels = list((run_labels or {}).get(variant) or [str(i + 1) for i in range(len(files))])
        if len(labels) != len(files):
            raise ValueError(f"{variant}: {len(files)} runs but {len(labels)} run labels")
        total = np.zeros(spatial, np.float64)
        count = np.zeros(spatial, np.int64)
        per_run[variant] = {}
        for f, label in zip(files, labels, strict=True):
            img = load_image(f, "preprocessed BOLD series (x, y, z, volumes)", ndim=4)
            check_same_grid(
                img,
                ref,
                path=f,
                ref_path=first,
                what="BOLD run",
                fix="Fix: every variant and run of a session must be on one grid (enable "
                "spatial preprocessing).",
            )
            arr = read_array(img)
            if brain_mask is None:
                run_total, run_count = finite_sums(arr)
                total += run_total
                count += run_count
                del run_total, run_count
            bad, flat = run_without_data(arr)
            del arr, img
            nonfinite |= bad
            constant |= flat
            per_run[variant][label] = {"constant": flat, "nonfinite": bad, "file": f}
        if brain_mask is None:
            means[variant] = finite_mean(total, count)
    by_variant: dict[str, int] = {}
    if brain_mask is not None:
        brain = load_brain_mask(brain_mask, ref, ref_path=first)
        source = str(brain_mask)
    else:
        brain = np.ones(spatial, bool)
        for variant, mean in means.items():
            own = brainthresh_mask(mean, brainthresh)
            by_variant[variant] = int(own.sum())
            brain &= own
        source = f"brainthresh {list(brainthresh)} of each variant's mean image, intersected"
    if not brain.any():
        raise StageInputError(
            f"{brain_mask or first}: expected brain voxels; found an empty brain mask. Fix: "
            "check the brain mask (or the BOLD intensities)."
        )
    excluded: dict[str, dict[str, dict[str, int]]] = {}
    problems = []
    constant_by_run: dict[str, int] = {}
    for variant, entries in per_run.items():
        excluded[variant] = {}
        for label, entry in entries.items():
            n_const = int((entry["constant"] & brain).sum())
            n_bad = int((entry["nonfinite"] & brain).sum())
            excluded[variant][label] = {"constant": n_const, "nonfinite": n_bad}
            constant_by_run[f"{variant} {label}"] = n_const
            if n_bad:
                problems.append(f"{variant} run {label} ({entry['file']}): {n_bad} voxels")
    n_bad = int((nonfinite & brain).sum())
    check_nonfinite(n_bad, problems, nan_policy)
    left_constant = constant & brain & ~nonfinite
    n_const = int(left_constant.sum())
    if n_const:
        log.warning(constant_warning(n_const, constant_by_run, "analysis mask"))
    mask = brain & ~nonfinite & ~constant
    if not mask.any():
        raise StageInputError(
            f"{first}: expected brain voxels with data in every run of every variant "
            f"({', '.join(runs)}); found none. Fix: check the runs' masks (e.g. tedana's) and "
            "the brain mask."
        )
    info = {
        "MaskSource": source,
        "BrainVoxels": int(brain.sum()),
        "BrainVoxelsByVariant": by_variant or None,
        "ExcludedVoxels": excluded,
        "ConstantVoxelsExcluded": n_const,
        "NonfiniteVoxelsExcluded": n_bad,
        "Voxels": int(mask.sum()),
    }
    return mask, ref, info


def run_analysis_mask(
    variant_runs: Mapping[str, Sequence[str | Path]],
    out: str | Path,
    *,
    brain_mask: str | Path | None = None,
    options: Mapping[str, Any] | GlmOptions | None = None,
    run_labels: Mapping[str, Sequence[str]] | None = None,
    space: str | None = None,
) -> Path:
    """Compute :func:`analysis_mask` and write it (uint8 NIfTI) with its JSON sidecar.

    Parameters
    ----------
    variant_runs, brain_mask, run_labels
        As :func:`analysis_mask`.
    out
        The mask to write (its name from the output registry, ``analysis_mask.mask``).
    options
        The ``glm`` config section (``brainthresh`` and ``nan_policy`` are used; missing keys
        take the schema default, unknown keys are refused).
    space
        Space label of the grid (recorded in the sidecar).

    Returns
    -------
    Path
        ``out``.
    """
    opts = parse_glm_options(options, source="glm options")
    brainthresh = list(opts.brainthresh)
    mask, ref, info = analysis_mask(
        variant_runs,
        brain_mask=brain_mask,
        brainthresh=brainthresh,
        nan_policy=opts.nan_policy,
        run_labels=run_labels,
    )
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(mask.astype(np.uint8), ref.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_xyzt_units(xyz="mm")
    atomic_save(img, out)
    sources = [Path(f) for files in variant_runs.values() for f in files]
    if brain_mask is not None:
        sources.append(Path(brain_mask))
    write_sidecar(
        out,
        sources=sources,
        parameters={
            "brainthresh": brainthresh,
            "nan_policy": opts.nan_policy,
            "Variants": list(variant_runs),
        },
        extra={
            **({"Space": space} if space else {}),
            "Type": "Brain",
            "Description": "Analysis mask shared by every GLM variant of the session: brain "
            "voxels whose series is finite and not constant in every run of every variant "
            "(ExcludedVoxels: brain voxels left out, per variant and run)",
            **info,
        },
    )
    log.info(
        "analysis mask: %d of %d brain voxels (%d variants) -> %s",
        info["Voxels"],
        info["BrainVoxels"],
        len(variant_runs),
        out,
    )
    return Path(out)


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep analysis-mask`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument(
        "--bold",
        nargs="+",
        action="append",
        required=True,
        metavar="VARIANT_OR_PATH",
        help="a variant name followed by its BOLD runs (repeat per variant)",
    )
    parser.add_argument(
        "--run-labels", nargs="+", default=None, help="BIDS run labels (same for every variant)"
    )
    parser.add_argument("--brain-mask", type=Path, default=None, help="brain mask on the grid")
    parser.add_argument("--space", default=None, help="space label of the grid (e.g. T1w)")
    parser.add_argument("--options-json", default=None, help="the glm: config section as JSON")
    parser.add_argument(
        "--out", nargs="+", required=True, metavar="KEY=PATH", help="mask=PATH: the mask"
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_analysis_mask` from parsed :func:`add_arguments` arguments."""
    variant_runs: dict[str, list[Path]] = {}
    for group in args.bold:
        if len(group) < 2:
            raise SystemExit(f"--bold {' '.join(group)}: expected a variant name and its runs")
        variant_runs[group[0]] = [Path(p) for p in group[1:]]
    labels = {v: args.run_labels for v in variant_runs} if args.run_labels else None
    out = key_paths(args.out, keys=("mask",))
    if "mask" not in out:
        raise SystemExit("analysis-mask: --out mask=PATH is required")
    run_analysis_mask(
        variant_runs,
        out["mask"],
        brain_mask=args.brain_mask,
        options=parse_glm_options(
            json.loads(args.options_json) if args.options_json else None,
            source="--options-json",
        ),
        run_labels=labels,
        space=args.space,
    )
    return 0


__all__ = [
    "add_arguments",
    "analysis_mask",
    "run_analysis_mask",
    "run_from_args",
]

"""Noise-ceiling stage: NSD ncsnr noise ceilings of GLMsingle single-trial betas.

Per session and variant (betas z-scored per run), in the session's ``glmsingle-<variant>``
folder::

    sub-X_ses-Y_task-T[_space-T1w]_desc-Noiseceiling_statmap.nii.gz

and per subject across its sessions (betas z-scored per session; the sessions must share one
grid, i.e. T1w space), in ``glmsingle-<variant>/sub-X/func/``::

    sub-X_task-T[_space-T1w]_desc-NoiseceilingAllrep_statmap.nii.gz   every repeat, k = mean(1/n)
    sub-X_task-T[_space-T1w]_desc-Noiseceiling{N}rep_statmap.nii.gz   (mixed repeat counts only)
    sub-X_task-T[_space-T1w]_stat-rsquare_desc-R2mean_statmap.nii.gz  mean of the sessions' R²
    sub-X_task-T[_space-T1w]_desc-Ncsnr_statmap.nii.gz               ncsnr (for the N-rep maps)

The ceilings are those of the repeat-averaged response (``k = mean_c(1/n_c)`` over the stimuli
with at least 2 repeats, as NSD and LAION-fMRI report them); a ``Noiseceiling{N}rep`` map is the
ceiling of a response averaged over ``N`` repeats (``k = 1/N``) from the same ncsnr. Only
stimuli shown at least twice count; every map is 0 outside the fitted brain mask (the
intersection of the sessions' masks for subject maps). The sidecars record the z-scoring, the
ceiling type, ``mean_c(1/n_c)`` and the repeat counts.
Formula: :mod:`echoprep.kernels.noiseceiling`; docs/noise-ceiling.md.
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
import pandas as pd

from echoprep.io.arguments import key_paths
from echoprep.io.events import read_trials
from echoprep.io.images import (
    StageInputError,
    atomic_save,
    check_same_grid,
    float_image,
    load_image,
    read_array,
)
from echoprep.io.outputs import TRIALS_NAME
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.noiseceiling import NoiseCeiling, nc_from_ncsnr, noise_ceiling

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# computation


def _read_trials(path: str | Path) -> pd.DataFrame:
    return read_trials(
        path,
        required=("beta_index", "label", "run"),
        fix=f"Fix: pass the {TRIALS_NAME} of the betas.",
        sort=True,
    )


def _load_betas(
    betas_file: str | Path, trials: pd.DataFrame, trials_file: str | Path
) -> nib.Nifti1Image:
    img = load_image(betas_file, "4D single-trial betas")
    n = img.shape[3] if len(img.shape) == 4 else 1
    if len(img.shape) != 4 or n != len(trials):
        raise StageInputError(
            f"{betas_file}: expected a 4D image with one volume per trial of {trials_file} "
            f"({len(trials)}); found shape {img.shape}. Fix: pass the betas and trials table of "
            "the same GLMsingle fit."
        )
    return img


def _load_mask(
    mask_file: str | Path | None, ref: nib.Nifti1Image, ref_path: str | Path
) -> np.ndarray:
    spatial = ref.shape[:3]
    if mask_file is None:
        return np.ones(spatial, bool)
    img = load_image(mask_file, "brain mask")
    check_same_grid(
        img,
        ref,
        path=mask_file,
        ref_path=ref_path,
        what="mask",
        fix="Fix: pass the GLMsingle mask of the same fit.",
    )
    return np.asarray(img.dataobj).reshape(spatial) > 0


def _save_map(
    values: np.ndarray,
    mask: np.ndarray,
    ref: nib.Nifti1Image,
    out: Path,
    *,
    sources: Sequence[str | Path],
    extra: Mapping[str, Any],
) -> Path:
    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = np.nan_to_num(np.asarray(values, np.float32), nan=0.0)
    img = float_image(vol, ref)
    img.header.set_xyzt_units(xyz="mm")
    atomic_save(img, out)
    parameters = {k: extra[k] for k in ("ZScoring", "K", "NoiseCeilingType") if k in extra} | {
        "min_repeats": 2,
        "method": "NSD ncsnr",
    }
    write_sidecar(out, sources=sources, parameters=parameters, extra=dict(extra))
    return out


def _nc_sidecar(result: NoiseCeiling, zscoring: str, k: float, kind: str) -> dict[str, Any]:
    return {
        "Units": "%",
        "Description": "Noise ceiling (NSD ncsnr method): maximum percentage of variance a "
        f"model of the stimuli can explain, for the {kind}; betas z-scored {zscoring}; only "
        "stimuli shown at least twice; 0 outside the fitted brain mask",
        "NoiseCeilingType": kind,
        "ZScoring": zscoring,
        "K": k,
        "MeanInverseRepeats": result.mean_inverse_repeats,
        "StimuliUsed": result.n_stimuli,
        "RepeatCounts": {str(n): c for n, c in result.repeat_counts.items()},
    }


def session_noise_ceiling(
    betas_file: str | Path,
    trials_file: str | Path,
    output: str | Path,
    *,
    mask_file: str | Path | None = None,
    space: str | None = None,
) -> Path:
    """Noise-ceiling map of one session's betas (z-scored per run).

    Parameters
    ----------
    betas_file
        4D single-trial betas ``(X, Y, Z, N)``.
    trials_file
        Its trials table (``beta_index``, ``label``, ``run``).
    output
        The map to write (percent, float32).
    mask_file
        The fit's brain mask (0 outside); None: all voxels.
    space
        Space label, recorded in the sidecar.

    Raises
    ------
    StageInputError
        Mismatched betas/trials/mask, or no stimulus shown twice in the session.
    """
    trials = _read_trials(trials_file)
    img = _load_betas(betas_file, trials, trials_file)
    mask = _load_mask(mask_file, img, betas_file)
    betas = read_array(img)[mask]
    try:
        result = noise_ceiling(betas, trials["label"].to_numpy(), trials["run"].to_numpy())
    except ValueError as exc:
        raise StageInputError(f"{trials_file}: {exc}") from exc
    extra = _nc_sidecar(result, "per run", result.mean_inverse_repeats, "repeat-averaged response")
    if space:
        extra["Space"] = space
    sources = [betas_file, trials_file, *([mask_file] if mask_file else [])]
    out = _save_map(result.nc, mask, img, Path(output), sources=sources, extra=extra)
    log.info(
        "noise ceiling: %d voxels, %d stimuli with repeats, median %.1f %% -> %s",
        int(mask.sum()),
        result.n_stimuli,
        float(np.median(result.nc)) if result.nc.size else float("nan"),
        out,
    )
    return out


def subject_noise_ceiling(
    betas_files: Sequence[str | Path],
    trials_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    mask_files: Sequence[str | Path] | None = None,
    r2_files: Sequence[str | Path] | None = None,
    space: str | None = None,
) -> dict[str, Path]:
    """Noise ceilings of a subject across sessions (betas z-scored per session), per-repeat-count
    maps and the mean R².

    Parameters
    ----------
    betas_files, trials_files
        One 4D betas image and trials table per session (one grid for all).
    outputs
        ``allrep`` (required), ``r2mean`` (with ``r2_files``) and ``rep<N>`` keys (ceiling for
        ``N`` averaged repeats) to paths.
    mask_files
        The sessions' brain masks; the maps are 0 outside their intersection.
    r2_files
        The sessions' R² maps (for ``r2mean``).
    space
        Space label, recorded in the sidecars.

    Raises
    ------
    StageInputError
        Sessions on different grids, mismatched inputs, or no stimulus shown twice.
    """
    if "allrep" not in outputs:
        raise ValueError("outputs: 'allrep' is required")
    if len(betas_files) != len(trials_files) or not betas_files:
        raise StageInputError(
            f"expected one trials table per betas image; found {len(betas_files)} betas and "
            f"{len(trials_files)} trials tables"
        )
    tables = [_read_trials(t) for t in trials_files]
    imgs = [
        _load_betas(b, t, tf) for b, t, tf in zip(betas_files, tables, trials_files, strict=True)
    ]
    ref = imgs[0]
    for f, img in zip(betas_files, imgs, strict=True):
        check_same_grid(
            img,
            ref,
            path=f,
            ref_path=betas_files[0],
            what="betas image",
            fix="Fix: a cross-session noise ceiling needs all sessions on one grid: enable "
            "spatial preprocessing so that all sessions are in T1w space.",
        )
    mask = np.ones(ref.shape[:3], bool)
    for m in mask_files or []:
        mask &= _load_mask(m, ref, betas_files[0])
    betas = np.concatenate([read_array(img)[mask] for img in imgs], axis=1)
    labels = np.concatenate([t["label"].to_numpy() for t in tables])
    groups = np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)])
    try:
        result = noise_ceiling(betas, labels, groups)
    except ValueError as exc:
        raise StageInputError(f"{trials_files[0]} and the subject's other sessions: {exc}") from exc
    del betas
    sources = [*betas_files, *trials_files, *(mask_files or [])]
    space_note = {"Space": space} if space else {}
    written: dict[str, Path] = {}
    extra = _nc_sidecar(
        result, "per session", result.mean_inverse_repeats, "repeat-averaged response"
    )
    written["allrep"] = _save_map(
        result.nc,
        mask,
        ref,
        Path(outputs["allrep"]),
        sources=sources,
        extra={**extra, **space_note},
    )
    if "ncsnr" in outputs:
        snr = np.where(np.isfinite(result.ncsnr), result.ncsnr, 0.0)
        written["ncsnr"] = _save_map(
            snr,
            mask,
            ref,
            Path(outputs["ncsnr"]),
            sources=sources,
            extra={
                **_nc_sidecar(result, "per session", 0.0, "ncsnr (signal SD / noise SD)"),
                "Units": "1",
                "Description": "Noise-ceiling SNR sigma_signal / sigma_noise of the betas "
                "z-scored per session (NSD ncsnr; 0 outside the fitted brain mask, and where "
                "repeats agree exactly); NC(n repeats) = 100 ncsnr^2 / (ncsnr^2 + 1/n)",
                **space_note,
            },
        )
    present = set(result.repeat_counts)
    for key, path in outputs.items():
        if not key.startswith("rep"):
            continue
        n = int(key[3:])
        if n not in present:
            log.warning(
                "noise ceiling for %d repeats: no stimulus is shown %d times (counts %s); the "
                "map is still the ceiling of a %d-repeat average",
                n,
                n,
                sorted(present),
                n,
            )
        extra = _nc_sidecar(result, "per session", 1.0 / n, f"average of {n} repeats")
        written[key] = _save_map(
            nc_from_ncsnr(result.ncsnr, 1.0 / n),
            mask,
            ref,
            Path(path),
            sources=sources,
            extra={**extra, **space_note},
        )
    if "r2mean" in outputs:
        if not r2_files:
            raise ValueError("outputs: 'r2mean' needs r2_files")
        total = np.zeros(int(mask.sum()), np.float64)
        for f in r2_files:
            r2 = load_image(f, "R² map")
            if r2.shape[:3] != ref.shape[:3]:
                raise StageInputError(
                    f"{f}: expected an R² map on the betas' grid {ref.shape[:3]}; found "
                    f"{r2.shape}. Fix: pass the R² maps of the same fits."
                )
            total += np.asarray(r2.get_fdata(dtype=np.float32)).reshape(ref.shape[:3])[mask]
        written["r2mean"] = _save_map(
            total / len(r2_files),
            mask,
            ref,
            Path(outputs["r2mean"]),
            sources=list(r2_files),
            extra={
                "Units": "%",
                "Description": f"Mean over {len(r2_files)} sessions of the GLMsingle R² "
                "(task part of the model); 0 outside the fitted brain masks",
                **space_note,
            },
        )
    return written


def repeats_noise_ceiling(
    ncsnr_file: str | Path, repeats: int, output: str | Path, *, space: str | None = None
) -> Path:
    """Noise ceiling of a response averaged over ``repeats`` trials, from an ncsnr map.

    ``NC = 100 ncsnr^2 / (ncsnr^2 + 1/repeats)``; 0 where the ncsnr map is 0 (outside the mask).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    img = load_image(ncsnr_file, "ncsnr map")
    snr = img.get_fdata(dtype=np.float32)
    mask = snr > 0
    info: dict[str, Any] = {}
    side = Path(str(ncsnr_file).removesuffix(".nii.gz") + ".json")
    if side.exists():
        content = json.loads(side.read_text())
        info = {k: content[k] for k in ("ZScoring", "StimuliUsed", "RepeatCounts") if k in content}
    out = _save_map(
        nc_from_ncsnr(snr[mask], 1.0 / repeats),
        mask,
        img,
        Path(output),
        sources=[ncsnr_file],
        extra={
            "Units": "%",
            "Description": "Noise ceiling (NSD ncsnr method) of a response averaged over "
            f"{repeats} repeats: 100 ncsnr^2 / (ncsnr^2 + 1/{repeats}); only stimuli shown at "
            "least twice inform the ncsnr; 0 outside the fitted brain mask",
            "NoiseCeilingType": f"average of {repeats} repeats",
            "K": 1.0 / repeats,
            **info,
            **({"Space": space} if space else {}),
        },
    )
    return out


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep noiseceiling`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument("level", choices=["session", "subject", "repeats"])
    parser.add_argument("--betas", nargs="+", default=None, type=Path, help="4D betas per session")
    parser.add_argument("--trials", nargs="+", default=None, type=Path, help="trials.tsv each")
    parser.add_argument("--ncsnr", type=Path, default=None, help="ncsnr map (level repeats)")
    parser.add_argument("--repeats", type=int, default=None, help="N (level repeats)")
    parser.add_argument("--mask", nargs="*", default=None, type=Path, help="GLMsingle masks")
    parser.add_argument("--r2", nargs="*", default=None, type=Path, help="R² maps (subject)")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="session: nc=PATH; subject: allrep=PATH [r2mean=PATH] [ncsnr=PATH] "
        "[rep<N>=PATH ...]; repeats: nc=PATH",
    )
    parser.add_argument("--space", default=None, help="space label of the betas (e.g. T1w)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the session or subject noise ceiling from parsed :func:`add_arguments` arguments."""
    outputs = key_paths(args.out)
    if args.level == "repeats":
        if args.ncsnr is None or args.repeats is None or "nc" not in outputs:
            raise SystemExit("noiseceiling repeats: --ncsnr, --repeats and --out nc=PATH")
        repeats_noise_ceiling(args.ncsnr, args.repeats, outputs["nc"], space=args.space)
        return 0
    if not args.betas or not args.trials:
        raise SystemExit(f"noiseceiling {args.level}: --betas and --trials are required")
    if args.level == "session":
        if len(args.betas) != 1 or len(args.trials) != 1 or "nc" not in outputs:
            raise SystemExit("noiseceiling session: one --betas, one --trials and --out nc=PATH")
        session_noise_ceiling(
            args.betas[0],
            args.trials[0],
            outputs["nc"],
            mask_file=args.mask[0] if args.mask else None,
            space=args.space,
        )
    else:
        subject_noise_ceiling(
            args.betas,
            args.trials,
            outputs,
            mask_files=args.mask or None,
            r2_files=args.r2 or None,
            space=args.space,
        )
    return 0


__all__ = [
    "add_arguments",
    "repeats_noise_ceiling",
    "run_from_args",
    "session_noise_ceiling",
    "subject_noise_ceiling",
]

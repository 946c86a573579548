"""NORDIC diagnostics per subject: does NORDIC keep the amplitude and the point-spread?

Vizioli et al. 2021 report that NORDIC raises tSNR while the evoked amplitude and the
point-spread stay unchanged. For every comparison session of a subject and every echo handling
(single/optcom/denoised) with both a NORDIC-off and a NORDIC-on variant, this stage measures on
the user's own data (kernels in :mod:`echoprep.kernels.diagnostics`):

- ``tsnr_raw``, ``tsnr_nordic``, ``tsnr_gain``: median tSNR (Legendre drift of degree 3
  removed) in the brain mask of the echo-handling outputs (combine-raw/ vs combine-nordic/),
  averaged over the session's runs, and their ratio;
- ``amplitude_raw``, ``amplitude_nordic``, ``amplitude_ratio``: mean single-trial beta (GLM
  outputs, % signal change) over the image trials and the visually responsive ROI voxels fitted
  in both variants, and NORDIC / raw (the share of the evoked amplitude NORDIC kept);
- ``fwhm_raw``, ``fwhm_nordic``, ``fwhm_ratio`` (brain mask) and ``fwhm_roi_*`` (ROI): FWHM
  (mm, geometric mean over axes, AFNI classic estimator) of the image-specific beta patterns
  (repeats averaged, each voxel's mean over images removed);
- ``removed_nn_x/y/z``: neighbour correlation along each axis of what NORDIC removed (input -
  output), recorded by the NORDIC stage in its sidecars and averaged over the session's runs and
  echoes: about 0 for spatially white (thermal) noise.

Output: ``<reports>/sub-<S>/sub-<S>_task-<T>_desc-nordic_diagnostics.tsv`` (+ JSON sidecar);
its plain-words reading for the report: :func:`echoprep.report.diagnostics.reading`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.arguments import key_paths
from echoprep.io.events import read_trials
from echoprep.io.images import (
    StageInputError,
    check_same_grid,
    load_image,
    load_mask_on_grid,
    read_array,
)
from echoprep.io.outputs import TRIALS_NAME
from echoprep.io.sidecars import write_sidecar
from echoprep.io.tables import write_tsv
from echoprep.kernels import diagnostics as kd

log = logging.getLogger(__name__)

#: Echo handlings in canonical order.
COMBINES = ("single", "optcom", "denoised")
#: Columns of the table, in order.
COLUMNS = (
    "subject",
    "session",
    "combine",
    "n_runs",
    "tsnr_raw",
    "tsnr_nordic",
    "tsnr_gain",
    "roi_voxels",
    "amplitude_raw",
    "amplitude_nordic",
    "amplitude_ratio",
    "fwhm_raw",
    "fwhm_nordic",
    "fwhm_ratio",
    "fwhm_roi_raw",
    "fwhm_roi_nordic",
    "fwhm_roi_ratio",
    "removed_nn_x",
    "removed_nn_y",
    "removed_nn_z",
)
#: Column descriptions of the sidecar.
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    # not "runs": pybids would take it for the plural of the run entity
    "n_runs": {"Description": "runs whose tSNR was measured"},
    "tsnr_raw": {"Description": "median tSNR in the brain mask without NORDIC, mean over runs"},
    "tsnr_nordic": {"Description": "median tSNR in the brain mask with NORDIC, mean over runs"},
    "tsnr_gain": {"Description": "tsnr_nordic / tsnr_raw"},
    "roi_voxels": {"Description": "visual ROI voxels fitted in both GLMs"},
    "amplitude_raw": {
        "Description": "mean single-trial beta over image trials and ROI voxels, NORDIC off",
        "Units": "% signal change",
    },
    "amplitude_nordic": {
        "Description": "mean single-trial beta over image trials and ROI voxels, NORDIC on",
        "Units": "% signal change",
    },
    "amplitude_ratio": {
        "Description": "amplitude_nordic / amplitude_raw (share of the evoked amplitude kept; "
        "n/a when amplitude_raw <= 0)"
    },
    "fwhm_raw": {
        "Description": "FWHM of the image-specific beta patterns in the brain mask, NORDIC off "
        "(AFNI classic, geometric mean over axes)",
        "Units": "mm",
    },
    "fwhm_nordic": {
        "Description": "FWHM of the image-specific beta patterns in the brain mask, NORDIC on",
        "Units": "mm",
    },
    "fwhm_ratio": {"Description": "fwhm_nordic / fwhm_raw"},
    "fwhm_roi_raw": {"Description": "as fwhm_raw, in the visual ROI", "Units": "mm"},
    "fwhm_roi_nordic": {"Description": "as fwhm_nordic, in the visual ROI", "Units": "mm"},
    "fwhm_roi_ratio": {"Description": "fwhm_roi_nordic / fwhm_roi_raw"},
    **{
        f"removed_nn_{a}": {
            "Description": f"neighbour correlation along {a} of the part NORDIC removed (input "
            "- output), mean over the session's runs and echoes; the same for every echo "
            "handling (NORDIC runs on each echo before echo handling); about 0 = spatially white"
        }
        for a in "xyz"
    },
}


def _mask_like(path: Path, like: Any, what: str, like_path: str | Path) -> np.ndarray:
    """A mask (> 0) checked to lie on the grid of ``like`` (the file ``like_path``)."""
    fix = (
        "Fix: pass the subject's masks on its functional grid (the GLM and echo-handling "
        "outputs' grid)."
    )
    return load_mask_on_grid(path, like, like_path=like_path, what=what, fix=fix)


@dataclass(frozen=True)
class TsnrPair:
    """One run of one echo handling without (``raw``) and with (``nordic``) NORDIC."""

    session: str | None
    combine: str
    raw: Path
    nordic: Path


@dataclass(frozen=True)
class GlmFit:
    """The GLM outputs of one session and variant (``nordic``: "raw" or "nordic")."""

    session: str | None
    combine: str
    nordic: str
    betas: Path
    trials: Path
    mask: Path


def _read_trials(path: Path, n: int) -> np.ndarray:
    """The labels of a fit's trials table, in beta-volume order (one row per volume)."""
    fix = f"Fix: pass the {TRIALS_NAME} of the same fit."
    table = read_trials(path, required=("beta_index", "label"), fix=fix, sort=True)
    if len(table) != n:
        raise StageInputError(
            f"{path}: expected a GLMsingle trials table with one row per beta volume ({n}); "
            f"found {len(table)} rows. {fix}"
        )
    return table["label"].to_numpy()


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _voxel_size(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def glm_measures(
    raw: GlmFit, nordic: GlmFit, roi_file: str | Path, brain_file: str | Path
) -> dict[str, float | int]:
    """Amplitude and pattern smoothness of one echo handling, NORDIC off and on.

    Returns
    -------
    dict
        ``roi_voxels``, ``amplitude_*``, ``fwhm_*`` and ``fwhm_roi_*`` (see the module doc).
    """
    imgs = {
        k: load_image(f.betas, "4D single-trial betas", ndim=4)
        for k, f in (("raw", raw), ("nordic", nordic))
    }
    ref = imgs["raw"]
    check_same_grid(
        imgs["nordic"],
        ref,
        path=nordic.betas,
        ref_path=raw.betas,
        what="4D single-trial betas",
        fix="Fix: both variants must be fitted on the subject's functional grid.",
    )
    roi = _mask_like(Path(roi_file), ref, "visual ROI mask", raw.betas)
    brain = _mask_like(Path(brain_file), ref, "brain mask", raw.betas)
    fitted = _mask_like(raw.mask, ref, "GLM mask", raw.betas) & _mask_like(
        nordic.mask, ref, "GLM mask", raw.betas
    )
    roi &= fitted
    brain &= fitted
    vox = _voxel_size(ref.affine)
    out: dict[str, float | int] = {"roi_voxels": int(roi.sum())}
    for key, fit in (("raw", raw), ("nordic", nordic)):
        img = imgs[key]
        labels = _read_trials(fit.trials, img.shape[3])
        data = read_array(img)
        out[f"amplitude_{key}"] = kd.evoked_amplitude(data[roi]) if roi.any() else math.nan
        for name, mask in (("fwhm", brain), ("fwhm_roi", roi)):
            if mask.sum() < 2:
                out[f"{name}_{key}"] = math.nan
                continue
            box = _bbox(mask)
            patterns = kd.image_patterns(data[box], labels)
            out[f"{name}_{key}"] = kd.pattern_fwhm(patterns, mask[box], vox)[1]
        del data
    out["amplitude_ratio"] = kd.ratio(out["amplitude_nordic"], out["amplitude_raw"])
    for name in ("fwhm", "fwhm_roi"):
        out[f"{name}_ratio"] = kd.ratio(out[f"{name}_nordic"], out[f"{name}_raw"])
    return out


def tsnr_measures(pairs: Sequence[TsnrPair], brain_file: str | Path) -> dict[str, float | int]:
    """Median tSNR without and with NORDIC in the brain mask, mean over runs, and the gain."""
    raws, nords = [], []
    for p in pairs:
        a = load_image(p.raw, "4D BOLD series", ndim=4)
        b = load_image(p.nordic, "4D BOLD series", ndim=4)
        if a.shape != b.shape:
            raise StageInputError(
                f"{p.nordic}: expected the shape of {p.raw} {a.shape}; found {b.shape}. Fix: "
                "pass the same run's outputs with NORDIC off and on."
            )
        brain = _mask_like(Path(brain_file), a, "brain mask", p.raw)
        t_raw = kd.tsnr_map(read_array(a))
        t_nor = kd.tsnr_map(read_array(b))
        m_raw, m_nor, _, n = kd.median_ratio(t_raw, t_nor, brain)
        if n:
            raws.append(m_raw)
            nords.append(m_nor)
    if not raws:
        return {"n_runs": 0, "tsnr_raw": math.nan, "tsnr_nordic": math.nan, "tsnr_gain": math.nan}
    r, n = float(np.mean(raws)), float(np.mean(nords))
    return {"n_runs": len(raws), "tsnr_raw": r, "tsnr_nordic": n, "tsnr_gain": kd.ratio(n, r)}


def removed_whiteness(sidecars: Sequence[str | Path]) -> list[float]:
    """Mean neighbour correlation per axis of the removed part over NORDIC sidecars (NaN where
    none records it: outputs of an older version)."""
    values = []
    for path in sidecars:
        record = json.loads(Path(path).read_text()).get("NORDIC", {}).get("RemovedPart") or {}
        nn = record.get("NeighbourCorrelation")
        if nn and len(nn) == 3:
            values.append([math.nan if v is None else float(v) for v in nn])
    if not values:
        return [math.nan] * 3
    arr = np.asarray(values, np.float64)
    return [float(np.nanmean(c)) if np.isfinite(c).any() else math.nan for c in arr.T]


def diagnostics_table(
    subject: str,
    *,
    roi: str | Path,
    brain: str | Path,
    tsnr_pairs: Sequence[TsnrPair] = (),
    glm_fits: Sequence[GlmFit] = (),
    nordic_sidecars: Mapping[str | None, Sequence[str | Path]] | None = None,
) -> pd.DataFrame:
    """One row per session and echo handling that has NORDIC off and on (see the module doc).

    Raises
    ------
    StageInputError
        No echo handling with both variants, or inputs on different grids.
    """
    fits = {(f.session, f.combine, f.nordic): f for f in glm_fits}
    keys = sorted(
        {(p.session, p.combine) for p in tsnr_pairs}
        | {(s, c) for s, c, n in fits if (s, c, "raw" if n == "nordic" else "nordic") in fits},
        key=lambda k: (k[0] or "", COMBINES.index(k[1]) if k[1] in COMBINES else 99),
    )
    if not keys:
        raise StageInputError(
            f"sub-{subject}: expected runs or GLM fits with NORDIC both off and on; found none. "
            "Fix: enable NORDIC (nordic.enabled: true) so both variants exist."
        )
    rows = []
    for ses, combine in keys:
        row: dict[str, Any] = {"subject": subject, "session": ses or "n/a", "combine": combine}
        row.update(
            tsnr_measures(
                [p for p in tsnr_pairs if (p.session, p.combine) == (ses, combine)], brain
            )
        )
        r, n = fits.get((ses, combine, "raw")), fits.get((ses, combine, "nordic"))
        if r is not None and n is not None:
            row.update(glm_measures(r, n, roi, brain))
        nn = removed_whiteness((nordic_sidecars or {}).get(ses, ()))
        row.update({f"removed_nn_{a}": v for a, v in zip("xyz", nn, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def run_diagnostics(
    subject: str,
    output: str | Path,
    *,
    roi: str | Path,
    brain: str | Path,
    tsnr_pairs: Sequence[TsnrPair] = (),
    glm_fits: Sequence[GlmFit] = (),
    nordic_sidecars: Mapping[str | None, Sequence[str | Path]] | None = None,
) -> pd.DataFrame:
    """Compute :func:`diagnostics_table` and write it (TSV, ``n/a`` for missing values) with
    its JSON sidecar; returns the table."""
    table = diagnostics_table(
        subject,
        roi=roi,
        brain=brain,
        tsnr_pairs=tsnr_pairs,
        glm_fits=glm_fits,
        nordic_sidecars=nordic_sidecars,
    )
    out = write_tsv(table, output)
    sources = [roi, brain]
    sources += [f for p in tsnr_pairs for f in (p.raw, p.nordic)]
    sources += [f for g in glm_fits for f in (g.betas, g.trials, g.mask)]
    sources += [f for fs in (nordic_sidecars or {}).values() for f in fs]
    write_sidecar(
        out,
        sources=sources,
        parameters={"tsnr_detrend_order": 3, "fwhm": "AFNI classic (Gaussian ACF)"},
        extra={
            "Description": "NORDIC diagnostics: tSNR gain, evoked-amplitude ratio in the visual "
            "ROI, smoothness of the image-specific beta patterns, whiteness of the removed "
            "part; NORDIC on against off for the same runs",
            **COLUMN_DESCRIPTIONS,
        },
    )
    log.info("NORDIC diagnostics: %d rows -> %s", len(table), out)
    return table


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep diagnostics`` arguments to a sub-command parser."""
    parser.add_argument("--subject", required=True)
    parser.add_argument("--roi", required=True, type=Path, help="visually responsive ROI mask")
    parser.add_argument("--brain", required=True, type=Path, help="brain mask (same grid)")
    parser.add_argument(
        "--tsnr",
        nargs=4,
        action="append",
        default=[],
        metavar=("SESSION", "COMBINE", "RAW", "NORDIC"),
        help="one run's echo-handling output without and with NORDIC; repeat per run",
    )
    parser.add_argument(
        "--glm",
        nargs=6,
        action="append",
        default=[],
        metavar=("SESSION", "COMBINE", "NORDIC", "BETAS", "TRIALS", "MASK"),
        help="GLM outputs of a session and variant (NORDIC: raw or nordic); repeat",
    )
    parser.add_argument(
        "--nordic-json",
        nargs=2,
        action="append",
        default=[],
        metavar=("SESSION", "JSON"),
        help="a NORDIC output's sidecar (whiteness of the removed part); repeat",
    )
    parser.add_argument(
        "--out", nargs="+", required=True, metavar="KEY=PATH", help="output paths: tsv=..."
    )
    return parser


def _ses(s: str) -> str | None:
    return None if s == "n/a" else s


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_diagnostics` from parsed arguments; exit status 0."""
    sidecars: dict[str | None, list[Path]] = {}
    for ses, path in args.nordic_json:
        sidecars.setdefault(_ses(ses), []).append(Path(path))
    for _, combine, nordic, *_rest in args.glm:
        if nordic not in ("raw", "nordic") or combine not in COMBINES:
            raise SystemExit(f"--glm: expected COMBINE in {COMBINES} and NORDIC raw|nordic")
    outputs = key_paths(args.out, form="tsv=PATH", keys=("tsv",))
    if "tsv" not in outputs:
        raise SystemExit("--out needs tsv=...")
    run_diagnostics(
        args.subject,
        outputs["tsv"],
        roi=args.roi,
        brain=args.brain,
        tsnr_pairs=[TsnrPair(_ses(s), c, Path(a), Path(b)) for s, c, a, b in args.tsnr],
        glm_fits=[
            GlmFit(_ses(s), c, n, Path(b), Path(t), Path(m)) for s, c, n, b, t, m in args.glm
        ],
        nordic_sidecars=sidecars,
    )
    return 0


__all__ = [
    "COLUMNS",
    "COMBINES",
    "GlmFit",
    "TsnrPair",
    "add_arguments",
    "diagnostics_table",
    "glm_measures",
    "removed_whiteness",
    "run_diagnostics",
    "run_from_args",
    "tsnr_measures",
]

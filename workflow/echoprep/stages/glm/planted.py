"""A variant's GLM fit, frozen, applied to what its series contain of the planted responses
(``echoprep glm-planted``).

The variant's published fit chose, per voxel, a library HRF and a ridge fraction, and for the
session a number of GLMdenoise PCs; given those choices the fit is linear in the data
(:mod:`echoprep.kernels.glm.frozen`). The stage rebuilds that linear map from the session's
own series and the fit's recorded choices, checks that it gives the published betas back, and
applies it to the series of the planted responses (:mod:`echoprep.stages.comparison.planting`): the
result is what the published betas contain of the planted responses. For the visual ROI's
source variant it also applies the type-B fit the planted responses were measured with (its gain
for them scales the comparison's estimate).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.arguments import key_paths
from echoprep.io.events import build_session_design
from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.glm.frozen import Choices, apply, freeze, relative_difference
from echoprep.stages.glm.inputs import read_session
from echoprep.stages.glm.options import engine_options, parse_glm_options, stage_settings

log = logging.getLogger(__name__)

#: Largest difference (relative to the 99th percentile of |betas|) between the frozen fit's
#: betas and the published ones before the stage warns that the choices were not read right.
CHECK_TOLERANCE = 1e-3


def _voxels(path: Path, mask: np.ndarray, what: str) -> np.ndarray:
    img = load_image(path, what)
    data = np.asanyarray(img.dataobj)
    if data.shape[:3] != mask.shape:
        raise StageInputError(
            f"{path}: expected the fit's grid {mask.shape}; found {data.shape[:3]}. Fix: rerun "
            "the GLM of this variant."
        )
    return np.asarray(data[mask])


def run_planted_glm(
    bold: Sequence[str | Path],
    events: Sequence[str | Path],
    planted: Sequence[str | Path],
    fit: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    *,
    mask: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    run_labels: Sequence[str] | None = None,
    n_threads: int = 1,
) -> dict[str, Any]:
    """Apply a variant's frozen fit to its planted series and write the betas.

    Parameters
    ----------
    bold, events
        The variant's series and events of the session (the fit's inputs), run order.
    planted
        What each run's series contains of the planted responses (same order and grid).
    fit
        The fit's outputs: ``betas``, ``hrfindex``, ``fracridge``, ``mask``, ``summary``.
    outputs
        ``betas`` (and ``betas_typeb`` for the type-B fit of the visual ROI's source).
    mask
        The session's analysis mask (the fit's).
    options
        The ``glm`` config section.
    run_labels
        Run labels (as the fit's).
    n_threads
        BLAS threads.

    Returns
    -------
    dict
        ``check`` (the frozen fit against the published betas) and the written paths.
    """
    opts = parse_glm_options(options, source="glm options")
    settings = stage_settings(opts)
    if len(planted) != len(bold):
        raise StageInputError(
            f"{planted[0] if planted else '<none>'}: expected one planted series per run "
            f"({len(bold)}); found {len(planted)}. Fix: rerun the planted_run jobs of the "
            "session."
        )
    session = read_session(
        bold,
        events,
        mask_file=mask,
        brainthresh=opts.brainthresh,
        nan_policy=settings["nan_policy"],
        run_labels=run_labels,
    )
    fit_mask = session.fit_mask
    published_mask = np.asarray(load_image(fit["mask"], "GLM fit mask").dataobj) > 0
    if published_mask.shape != fit_mask.shape or not np.array_equal(published_mask, fit_mask):
        raise StageInputError(
            f"{fit['mask']}: expected the voxels the session's series give ({int(fit_mask.sum())})"
            f"; found {int(published_mask.sum())}. Fix: rerun the GLM of this variant."
        )
    summary = json.loads(Path(fit["summary"]).read_text())
    design = build_session_design(
        session.events,
        session.info["n_volumes"],
        session.tr,
        label_column=settings["label_column"],
        exclude_trial_types=settings["blank_trial_types"],
        onset_tolerance=settings["onset_tolerance"],
        run_labels=session.labels,
    )
    stimdur = float(summary["StimulusDuration_s"])
    resolved = summary.get("ResolvedOptions", {})
    engine = engine_options(opts)
    pcnum = int(summary.get("pcnum") or 0) if engine["wantglmdenoise"] else 0
    model = (
        "typed" if engine["wantfracridge"] else ("typec" if engine["wantglmdenoise"] else "typeb")
    )
    hrf = _voxels(Path(fit["hrfindex"]), fit_mask, "HRF index map").astype(np.int64)
    frac = (
        _voxels(Path(fit["fracridge"]), fit_mask, "ridge fraction map")
        if model == "typed"
        else None
    )
    choices = Choices(
        model=model,
        hrfindex=hrf,
        fracvalue=frac,
        pcnum=pcnum,
        brain_r2=resolved.get("brainR2") if pcnum else None,
        percent=bool(engine["wantpercentbold"]),
    )
    frozen = freeze(design.designs, session.data, stimdur, session.tr, choices, engine, n_threads)
    published = _voxels(Path(fit["betas"]), fit_mask, "single-trial betas").astype(np.float32)
    check = relative_difference(frozen.betas, published)
    if not check <= CHECK_TOLERANCE:
        log.warning(
            "%s: the frozen fit gives betas %.2g (relative) away from the published ones; the "
            "planted estimate of this variant may be off",
            fit["betas"],
            check,
        )
    series = [
        np.asarray(
            np.asanyarray(load_image(p, "planted series", ndim=4).dataobj)[fit_mask], np.float32
        )
        for p in planted
    ]
    for p, s, d in zip(planted, series, session.data, strict=True):
        if s.shape != d.shape:
            raise StageInputError(
                f"{p}: expected {d.shape[1]} volumes like the run's series; found {s.shape[1]}. "
                "Fix: rerun the planted_run job of this run."
            )
    written: dict[str, Any] = {"check": check}
    ref = load_image(fit["betas"], "single-trial betas")
    fits = [("betas", frozen)]
    if "betas_typeb" in outputs:
        typeb = freeze(
            design.designs,
            session.data,
            stimdur,
            session.tr,
            Choices("typeb", hrf, None, 0, None, percent=bool(engine["wantpercentbold"])),
            engine_options(opts, stop_at="typeb"),
            n_threads,
        )
        fits.append(("betas_typeb", typeb))
    for key, linear in fits:
        betas = apply(linear, series, n_threads)
        full = np.zeros((*fit_mask.shape, betas.shape[1]), dtype=np.float32)
        full[fit_mask] = betas
        out = Path(outputs[key])
        atomic_save(float_image(full, ref), out)
        write_sidecar(
            out,
            # the planted series are temporary files of the work folder: named by their content
            # (PlantedSeries), the derivatives they were made beside are the Sources
            sources=[*map(Path, bold), *(Path(v) for v in fit.values())],
            parameters={"model": linear_model(key, model)},
            extra={
                "Description": "what the variant's published single-trial betas contain of the "
                "responses planted into the session: its fit with the choices it made "
                "(HRF, GLMdenoise PCs, ridge fraction, autoscale) applied to half the "
                "difference of its series with the planted responses added and subtracted"
                if key == "betas"
                else "the same for the type-B fit (HRF per voxel, least squares) the planted "
                "responses were measured with",
                "Units": "percent signal change",
                "PlantedSeries": [str(Path(p).resolve()) for p in planted],
                "FrozenFitCheck": check,
                "PCs": pcnum,
            },
        )
        written[key] = out
    return written


def linear_model(key: str, model: str) -> str:
    """The model of an output (``typeb`` for the type-B fit)."""
    return "typeb" if key == "betas_typeb" else model


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep glm-planted`` arguments to a sub-command parser."""
    parser.add_argument("--bold", type=Path, nargs="+", required=True, help="the fit's series")
    parser.add_argument("--events", type=Path, nargs="+", required=True)
    parser.add_argument("--planted", type=Path, nargs="+", required=True, help="per run")
    parser.add_argument(
        "--fit",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="betas, hrfindex, fracridge, mask, summary of the fit",
    )
    parser.add_argument("--mask", type=Path, default=None, help="the analysis mask")
    parser.add_argument("--run-labels", nargs="+", default=None)
    parser.add_argument("--options-json", default=None, help="the glm: section as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", nargs="+", required=True, metavar="KEY=PATH")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_planted_glm` from parsed arguments; exit status 0."""
    run_planted_glm(
        args.bold,
        args.events,
        args.planted,
        key_paths(args.fit, "--fit"),
        key_paths(args.out, keys=("betas", "betas_typeb")),
        mask=args.mask,
        options=json.loads(args.options_json) if args.options_json else None,
        run_labels=args.run_labels,
        n_threads=args.threads,
    )
    return 0


__all__ = ["CHECK_TOLERANCE", "add_arguments", "linear_model", "run_from_args", "run_planted_glm"]

"""Where the planted estimate's error comes from, measured against the simulator's truth
(docs/comparison.md, "Where the estimate's error comes from").

The planted estimate of a variant (:mod:`echoprep.kernels.planted_fidelity`) reads its gain for
the session's real responses off its gain for the planted ones, in the units of the reference's
type-B fit: it is right when every fit passes a planted response as it passes a real one,
relative to the reference (``a_real / a_planted`` the same for every fit), and when the halves
the response variance ``S`` is read from share nothing but the response. On a case kept by
``benchmarks/comparison_regimes.py --keep`` (a simulated session whose workflow ran through the
comparison) this script measures both against the truth, pooled over the truly active voxels of
the comparison's ROI that received a planted response:

- per fit (each variant's published betas, and the reference's type-B betas): ``a_real``, the
  gain of its repeat-averaged betas on the true image means (covariance over images, pooled over
  voxels, over the true means' variance; in the fit's own units), and ``a_planted``, its gain on
  the planted responses as the estimate reads it (what its betas carry of them at the half-A
  presentations, against half B, over the planted pattern against half B); ``transfer`` =
  ``a_real / a_planted``;
- ``misread`` = the reference's ``transfer`` over the variant's: the factor by which the
  estimate reads the variant because the chain passes the planted responses otherwise than the
  real ones (below 1: read low); ``misread_truth`` the same with every ``a_planted`` read against
  the true image means instead of half B (``a_planted_truth``): where the two differ, what a
  fit's betas carry of the planted pattern follows half B otherwise than the true responses;
- ``shared`` = ``sqrt(cov(planted, half B) / (cov(planted, R) cov(half B, R) / var(R)))``: the
  factor from what the planted pattern and half B share besides the true response ``R``;
- ``residual``: what the planted pattern and half B share beyond the true response, measured
  apart: each regressed per voxel on the true image means, the covariance of what is left,
  pooled over the voxels, as a share of the response covariance they share (``share``), with
  the same share after half B's residuals are permuted over the images (500 permutations, seed
  0: its ``null_sd`` and the two-sided ``p`` of ``share``): a share within the null spread is a
  chance alignment of the two patterns' noise over the images, not a term they share;
- ``predicted`` = ``misread * shared`` against ``observed`` = ``planted_r / r_truth`` (the
  comparison's estimate over the truth, as ``comparison_regimes.py`` reports them; the rest is
  the median over voxels against the pooled gains, and the smoothing); ``planted_r_again``: the
  estimate recomputed here from the same files (a check that they were read as the comparison
  read them);
- the reading itself, with the truth in place of the planted halves (:func:`reading_of_truth`):
  ``reading``, the estimate's smoothing and median applied to the variant's image means and the
  true image means (no planting error at all), against the truth's own summaries over the same
  voxels and images: ``truth_median`` (what ``r_truth`` is), ``truth_mean`` and ``truth_skew``
  (the skewness of the voxels' r); ``reading_over_truth`` = ``reading / truth_median`` and
  ``reading_over_mean`` = ``reading / truth_mean``: a reading that follows the mean over voxels
  rather than the median reads a variant low by its mean over its median.

With ``--models`` it also splits each variant's final fit into its steps (docs/comparison.md,
same item): the fit's frozen map (:mod:`echoprep.kernels.glm.frozen`) rebuilt as type B (the
HRF per voxel, least squares), C (with the fit's GLMdenoise PCs), D without the PCs (ridge at
the fit's fractions) and D (the published fit), each applied to the session's series (its
``real`` betas) and to the planted series (its ``recovered`` betas); per step ``a_real``,
``a_planted``, ``transfer``, the estimate ``planted_r`` (the reference's type-B gain, as the
comparison reads it) against ``r_truth`` (the same step's betas against the true image means,
over the truly active voxels) and their ratio. The planted series are temporary files of the
workflow; keep them by running the case's planted jobs again without deleting them (the case
folder's own config; about 6 minutes for 6 runs):

    .venv/bin/python -m snakemake -s Snakefile DIR/results/comparison/recommended_variant.json \
        --configfile DIR/config.yaml --cores 2 --rerun-triggers mtime \
        --forcerun planted_run --notemp

    .venv/bin/python benchmarks/planted_transfer.py --case DIR [--session S] [--models] [--json F]

A few seconds per case; with ``--models`` a few minutes (every step of six fits is rebuilt).
Reads only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from comparison_regimes import TASK, session_truth_scores  # noqa: E402

from echoprep.io.events import build_session_design, read_trials  # noqa: E402
from echoprep.io.outputs import paths_in  # noqa: E402
from echoprep.kernels import planted_fidelity as pf  # noqa: E402
from echoprep.kernels.fidelity import (  # noqa: E402
    image_means,
    rowwise_correlation,
    truth_fidelity,
)
from echoprep.kernels.glm.frozen import Choices, apply, freeze  # noqa: E402
from echoprep.kernels.noiseceiling import zscore_within  # noqa: E402
from echoprep.kernels.planted import (  # noqa: E402
    image_columns,
    read_presentations,
    repeated_images,
)
from echoprep.simulate.truth import truth_paths  # noqa: E402
from echoprep.stages import glm as glm_stage  # noqa: E402
from echoprep.stages.comparison import VARIANTS  # noqa: E402
from echoprep.stages.comparison.planted_design import read_design  # noqa: E402
from echoprep.stages.glm.inputs import read_session  # noqa: E402
from echoprep.stages.glm.options import (  # noqa: E402
    engine_options,
    parse_glm_options,
    stage_settings,
)

#: The steps of a final fit that ``--models`` rebuilds, in order.
STEPS = ("B", "C", "D_noPC", "D")


def _statmap(folder: Path, session: str, desc: str) -> Path | None:
    found = sorted(folder.glob(f"sub-01/ses-{session}/func/*_desc-{desc}_statmap.nii.gz"))
    return found[0] if found else None


def _glm_options(own: dict) -> dict:
    """The ``glm`` section a case ran with: the workflow's defaults and the case's own config
    (``own``)."""
    options = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["glm"]
    options.update(own.get("glm") or {})
    return options


def _split_fit(
    case: Path, session: str, variant: str, rows: tuple[np.ndarray, ...]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Per step of the variant's final fit (:data:`STEPS`): its betas of the session's series and
    of the planted series, ``(V, N)`` over the voxels ``rows`` (indices into the volume); and the
    fit's number of GLMdenoise PCs."""
    res, bids = case / "results", case / "bids"
    folder = res / f"glmsingle-{variant}"
    recovered = _statmap(folder, session, "plantedBetas")
    assert recovered is not None
    sidecar = json.loads(
        recovered.with_name(recovered.name[: -len(".nii.gz")] + ".json").read_text()
    )
    n_runs = len(sidecar["PlantedSeries"])
    # the first sources are the variant's series, "bids:<derivative folder>:<path>"
    series = [src.split(":", 2)[1:] for src in sidecar["Sources"][:n_runs]]
    bold = [res / name / rel for name, rel in series]
    own = yaml.safe_load((case / "config.yaml").read_text()) or {}
    work = Path(own["work_dir"])
    planted = [work / "planted" / name / rel for name, rel in series]
    missing = [str(p) for p in planted if not p.exists()]
    if missing:
        raise SystemExit(
            f"{missing[0]}: expected the planted series of the case (temporary files); found "
            f"{len(missing)} of {n_runs} missing. Fix: run the case's planted jobs again with "
            "--forcerun planted_run --notemp (module docstring)."
        )
    stems = [re.sub(r"_space-[^_]+", "", b.name.split("_desc-")[0]) for b in bold]
    events = [
        bids / b.relative_to(res / series[0][0]).parent / f"{st}_events.tsv"
        for b, st in zip(bold, stems, strict=True)
    ]
    labels = [re.search(r"_run-([^_]+)", st).group(1) for st in stems]  # type: ignore[union-attr]
    (mask,) = (res / "glmsingle-analysis").glob(
        f"sub-01/ses-{session}/func/*_desc-analysis_mask.nii.gz"
    )
    opts = parse_glm_options(_glm_options(own), source=str(case / "config.yaml"))
    settings = stage_settings(opts)
    data = read_session(
        bold,
        events,
        mask_file=mask,
        brainthresh=opts.brainthresh,
        nan_policy=settings["nan_policy"],
        run_labels=labels,
    )
    fit_mask = data.fit_mask
    key = glm_stage.session_key("01", session, TASK)
    fit = paths_in(folder, "glm", key, keys=["hrfindex", "fracridge", "summary"])
    summary = json.loads(Path(fit["summary"]).read_text())
    design = build_session_design(
        data.events,
        data.info["n_volumes"],
        data.tr,
        label_column=settings["label_column"],
        exclude_trial_types=settings["blank_trial_types"],
        onset_tolerance=settings["onset_tolerance"],
        run_labels=data.labels,
    )
    engine = engine_options(opts)
    pcnum = int(summary.get("pcnum") or 0) if engine["wantglmdenoise"] else 0
    r2 = summary.get("ResolvedOptions", {}).get("brainR2") if pcnum else None
    hrf = np.asarray(nib.load(fit["hrfindex"]).dataobj)[fit_mask].astype(np.int64)
    frac = np.asarray(nib.load(fit["fracridge"]).dataobj, np.float64)[fit_mask]
    index = np.full(fit_mask.shape, -1, np.int64)
    index[fit_mask] = np.arange(int(fit_mask.sum()))
    at = index[rows]
    if (at < 0).any():
        raise SystemExit(f"{folder}: {int((at < 0).sum())} comparison voxels outside the fit")
    runs = [np.asarray(np.asanyarray(nib.load(p).dataobj)[fit_mask], np.float32) for p in planted]
    steps = {
        "B": (Choices("typeb", hrf, None, 0, None), engine_options(opts, stop_at="typeb")),
        "C": (Choices("typec", hrf, None, pcnum, r2), engine),
        "D_noPC": (Choices("typed", hrf, frac, 0, None), engine),
        "D": (Choices("typed", hrf, frac, pcnum, r2), engine),
    }
    stimdur = float(summary["StimulusDuration_s"])
    out = {}
    for step, (choices, options) in steps.items():
        frozen = freeze(design.designs, data.data, stimdur, data.tr, choices, options)
        out[step] = (
            frozen.betas.astype(np.float64)[at],
            apply(frozen, runs).astype(np.float64)[at],
        )
    return out, pcnum


def trial_responses(pattern: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(V, N)`` each trial's response in ``pattern`` ``(V, I)``, by its image's column
    (:func:`~echoprep.kernels.planted.image_columns`; 0 for a trial of another image)."""
    out = np.zeros((pattern.shape[0], cols.size))
    out[:, cols >= 0] = pattern[:, cols[cols >= 0]]
    return out


def _slice_time_bins(
    bids: Path, session: str, ijk: np.ndarray, active: np.ndarray, bins: int = 4
) -> list[tuple[float, float, np.ndarray]]:
    """The truly active voxels ``ijk`` grouped by their slice's acquisition time within the
    volume (the first run's first echo's ``SliceTiming``; without it, one group)."""
    (sidecar,) = sorted((bids / "sub-01" / f"ses-{session}" / "func").glob("*_bold.json"))[:1]
    meta = json.loads(sidecar.read_text())
    timing = meta.get("SliceTiming")
    if not timing:
        return [(0.0, float(meta.get("RepetitionTime", 0.0)), active)]
    tr = float(meta["RepetitionTime"])
    at = np.asarray(timing, np.float64)[ijk[:, 2]]
    edges = np.linspace(0.0, tr, bins + 1)
    return [
        (float(lo), float(hi), active & (at >= lo) & (at < hi))
        for lo, hi in itertools.pairwise(edges)
    ]


def leakage(betas: np.ndarray, responses: np.ndarray, runs: np.ndarray) -> list[float]:
    """How much of the responses of trials t-2 .. t+2 (same run) a trial's beta carries, each
    relative to its own trial's: ``betas`` and ``responses`` ``(V, N)`` (the response each trial
    was given), one least-squares fit pooled over the voxels (each row centred)."""
    n = betas.shape[1]
    lagged = np.zeros((*betas.shape, 5))
    for k, lag in enumerate(range(-2, 3)):
        idx = np.arange(n) + lag
        ok = (idx >= 0) & (idx < n)
        ok[ok] &= runs[idx[ok]] == runs[ok]
        lagged[:, ok, k] = responses[:, idx[ok]]
    lagged -= lagged.mean(axis=1, keepdims=True)
    y = betas - betas.mean(axis=1, keepdims=True)
    coef = np.linalg.solve(
        np.einsum("vnk,vnl->kl", lagged, lagged), np.einsum("vnk,vn->k", lagged, y)
    )
    return [float(c) for c in coef / coef[2]]


def residual_share(
    planted: np.ndarray, half_b: np.ndarray, true_means: np.ndarray, permutations: int = 500
) -> dict[str, float]:
    """What ``planted`` and ``half_b`` share beyond the true response (module docstring,
    ``residual``).

    Parameters
    ----------
    planted, half_b, true_means
        ``(V, I)`` the design's planted pattern, its half B and the true image means, per voxel
        and image (any units; each centred over the images here).
    permutations
        Image permutations of half B's residuals for the null spread (seed 0).

    Returns
    -------
    dict
        ``share`` (the pooled residual covariance over the pooled response covariance),
        ``null_mean``, ``null_sd`` and ``p`` (two-sided: the share of permutations at least as
        far from 0).
    """

    def centred(x: np.ndarray) -> np.ndarray:
        return x - x.mean(axis=1, keepdims=True)

    p, b, m = centred(planted), centred(half_b), centred(true_means)
    power = (m * m).sum(axis=1)
    ok = power > 0
    p, b, m, power = p[ok], b[ok], m[ok], power[ok]
    slope_p, slope_b = (p * m).sum(axis=1) / power, (b * m).sum(axis=1) / power
    rest_p, rest_b = p - slope_p[:, None] * m, b - slope_b[:, None] * m
    response = float((slope_p * slope_b * power).sum())
    share = float((rest_p * rest_b).sum()) / response
    rng = np.random.default_rng(0)
    null = np.array(
        [
            float((rest_p * rest_b[:, rng.permutation(rest_b.shape[1])]).sum()) / response
            for _ in range(permutations)
        ]
    )
    return {
        "share": share,
        "null_mean": float(null.mean()),
        "null_sd": float(null.std()),
        "p": float((np.abs(null) >= abs(share)).mean()),
    }


def reading_of_truth(
    means: np.ndarray, true: np.ndarray, smoother: pf.Smoother, scored: np.ndarray
) -> dict[str, float]:
    """The planted estimate's reading (:mod:`echoprep.kernels.planted_fidelity`) applied to the
    truth itself: per voxel ``smooth(cov(M, R)) / (sqrt(smooth(var R)) sd(M))``, the median over
    the ``scored`` voxels, beside the summaries of the voxels' own r.

    Parameters
    ----------
    means
        ``(V, I)`` a variant's repeat-averaged betas (z-scored per run) of the repeated images.
    true
        ``(V, I)`` the true image means of the same voxels and images.
    smoother
        The comparison's smoothing over these ``V`` voxels.
    scored
        ``(V,)`` bool: the voxels the truth is summarised over (the truly active ones).

    Returns
    -------
    dict
        ``truth_median``, ``truth_mean``, ``truth_skew`` (the voxels' r), ``reading`` and its
        ratios to the median and the mean, ``reading_over_truth`` and ``reading_over_mean``.
    """
    w = np.ones((1, means.shape[1]))
    cov = pf._wcov(means, true, w)[0]
    var_t = pf._wcov(true, true, w)[0]
    sd_m = np.sqrt(pf._wcov(means, means, w)[0])
    r = rowwise_correlation(means, true)
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth_var = smoother(var_t[None])[0]
        read = smoother(cov[None])[0] / (
            np.sqrt(np.where(smooth_var > 0, smooth_var, np.nan)) * sd_m
        )
    r_in = r[scored]
    r_in = r_in[np.isfinite(r_in)]
    read_in = read[scored]
    median, mean = float(np.median(r_in)), float(np.mean(r_in))
    reading = float(np.median(read_in[np.isfinite(read_in)]))
    return {
        "truth_median": median,
        "truth_mean": mean,
        "truth_skew": float(stats.skew(r_in)),
        "reading": reading,
        "reading_over_truth": reading / median,
        "reading_over_mean": reading / mean,
    }


def measure(case: Path, session: str = "01", models: bool = False) -> dict:
    """Every figure of the module docstring for one session of a kept case (``models``: the
    split of each final fit into its steps, too)."""
    res, bids = case / "results", case / "bids"
    key = glm_stage.session_key("01", session, TASK)
    variants = [v for v in VARIANTS if (res / f"glmsingle-{v}").is_dir()]
    (design_path,) = (res / "planted").glob(f"sub-01/ses-{session}/func/*_design.npz")
    design = read_design(design_path)
    shape = tuple(int(s) for s in design["shape"])
    (roi_path,) = (res / "rois" / "sub-01" / "visual").glob(
        "*_label-visuallyResponsive_mask.nii.gz"
    )
    roi = np.asarray(nib.load(roi_path).dataobj) > 0
    fits = {
        v: paths_in(res / f"glmsingle-{v}", "glm", key, keys=["trials", "mask"]) for v in variants
    }
    for paths in fits.values():
        roi &= np.asarray(nib.load(paths["mask"]).dataobj) > 0
    voxels = np.asarray(design["voxels"], np.int64)
    keep = roi[tuple(voxels.T)]
    ijk = voxels[keep]
    rows = tuple(ijk.T)
    images = np.asarray(design["images"]).astype(str)
    planted = np.asarray(design["planted"], np.float64)[keep]
    half_b = np.asarray(design["truth"], np.float64)[keep]
    factor = float(design["factor"])
    truth = truth_paths(bids, "01", session)
    active = (np.asarray(nib.load(truth["active_mask"]).dataobj) > 0)[rows]
    true_images = pd.read_csv(truth["images"], sep="\t", dtype={"label": str})["label"]
    column = {str(lab): i for i, lab in enumerate(true_images)}
    means = np.asarray(nib.load(truth["image_means"]).dataobj, np.float64)[rows]
    true_r = means[:, [column[i] for i in images]]
    trials = read_trials(fits[variants[0]]["trials"])
    labels = trials["label"].astype(str).to_numpy()
    runs = trials["run"].astype(str).to_numpy()
    source = str(design["source"])
    read = read_presentations(labels, images, source)

    def load(path: Path) -> np.ndarray:
        return np.asarray(nib.load(path).dataobj, np.float64)[rows]

    def gains(real: np.ndarray, recovered: np.ndarray) -> dict[str, float]:
        m = image_means(real, labels, images)[active]
        g = image_means(recovered[:, read], labels[read], images)[active] / factor
        r, p, b = true_r[active], planted[active], half_b[active]
        # pf.reference_gain(x, y, t): sum cov(x, t) / sum cov(y, t), pooled over the voxels
        a_real = pf.reference_gain(m, r, r)
        a_planted = pf.reference_gain(g, p, b)
        return {
            "a_real": a_real,
            "a_planted": a_planted,
            "a_planted_truth": pf.reference_gain(g, p, r),
            "transfer": a_real / a_planted,
        }

    reference = None
    for v in variants:
        folder = res / f"glmsingle-{v}"
        real_b = _statmap(folder, session, "SingletrialBetasTypeB")
        planted_b = _statmap(folder, session, "plantedBetasTypeB")
        if real_b is not None and planted_b is not None:
            reference = {"variant": v, **gains(load(real_b), load(planted_b))}
            break
    if reference is None:
        raise SystemExit(f"{case}: no reference type-B fit with planted betas in session {session}")
    r, p, b = true_r[active], planted[active], half_b[active]
    # cov(p, b) var(r) / (cov(p, r) cov(b, r)): the planted pattern's gain on the truth read
    # against half B over the same read against the truth
    shared = np.sqrt(pf.reference_gain(p, r, b) / pf.reference_gain(p, r, r))
    table = pd.read_csv(
        next((res / "comparison" / "sub-01").glob("*_desc-planted_comparison.tsv")),
        sep="\t",
        dtype={"session": str, "subject": str},
    )
    table = table[(table["replicate"] == 0) & (table["session"] == session)]
    estimate = dict(zip(table["variant"], table["planted_r"], strict=True))
    scores = session_truth_scores(bids, res, variants, roi=True, session=session)["r_truth"]
    sizes = np.sqrt((np.asarray(design["affine"])[:3, :3] ** 2).sum(axis=0))
    # the images the estimate's spread of the image means is over, and their true means
    scored_images = repeated_images(labels)
    weights = np.ones((1, scored_images.size))  # the estimate itself, no bootstrap
    ref_gain = reference["a_planted"]
    true_scored = means[:, [column[i] for i in scored_images]]
    if models:
        # what each trial was given, real and planted, and the slices' acquisition times: the
        # same for every variant
        cols = image_columns(labels, images)
        given_real = trial_responses(true_r, cols)
        given_planted = trial_responses(planted, cols)
        slice_bins = _slice_time_bins(bids, session, ijk, active)
    # the session's planted truth, smoothed as the comparison smooths it: one for every variant
    sigma = [pf.SMOOTHING_MM / float(s) for s in sizes]
    truth_obj = pf.PlantedTruth(
        images, planted, half_b, factor, pf.Smoother(ijk, shape, sigma), ref_gain, source
    )
    out_rows = []
    for v in variants:
        folder = res / f"glmsingle-{v}"
        betas = load(_statmap(folder, session, "SingletrialBetas"))
        recovered = load(_statmap(folder, session, "plantedBetas"))
        row = {"variant": v, **gains(betas, recovered)}
        row["misread"] = reference["transfer"] / row["transfer"]
        row["misread_truth"] = (reference["a_real"] / reference["a_planted_truth"]) / (
            row["a_real"] / row["a_planted_truth"]
        )
        row["predicted"] = row["misread"] * shared
        row["planted_r"] = float(estimate.get(v, np.nan))
        row["r_truth"] = float(scores[v])
        row["observed"] = row["planted_r"] / row["r_truth"]
        fid = pf.variant_fidelity(betas, recovered, labels, runs, truth_obj, weights)
        row["planted_r_again"] = float(fid.r[0])
        z_means = image_means(zscore_within(betas, runs), labels, scored_images)
        row.update(reading_of_truth(z_means, true_scored, truth_obj.smoother, active))
        if models:
            split, row["pcs"] = _split_fit(case, session, v, rows)
            # the type-B fit's leakage of the real responses by the voxel's acquisition time
            real_b = split["B"][0]
            row["leakage_by_slice_time"] = {
                f"{lo:.2f}-{hi:.2f}": leakage(real_b[sel], given_real[sel], runs)
                for lo, hi, sel in slice_bins
            }
            for step, (real, rec) in split.items():
                got = gains(real, rec)
                est = float(pf.variant_fidelity(real, rec, labels, runs, truth_obj, weights).r[0])
                r_step = float(
                    np.nanmedian(
                        truth_fidelity(
                            real[active], labels, runs, means[active], true_images.to_numpy()
                        )
                    )
                )
                row[step] = {
                    **got,
                    "leakage_real": leakage(real, given_real, runs),
                    "leakage_planted": leakage(rec / factor, given_planted, runs),
                    "planted_r": est,
                    "r_truth": r_step,
                    "ratio": est / r_step,
                }
        out_rows.append(row)
    return {
        "case": case.name,
        "session": session,
        "voxels": int(active.sum()),
        "reference": reference,
        "shared": float(shared),
        "residual": residual_share(p, b, r),
        "variants": out_rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, required=True, help="a case kept by comparison_regimes.py")
    ap.add_argument("--session", default="01", help="comparison session label (default 01)")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    ap.add_argument(
        "--models",
        action="store_true",
        help="split each final fit into its steps (needs the planted series kept: docstring)",
    )
    args = ap.parse_args(argv)
    out = measure(args.case, args.session, models=args.models)
    ref = out["reference"]
    print(
        f"{out['case']} ses-{out['session']}: {out['voxels']} truly active ROI voxels planted; "
        f"reference type-B fit ({ref['variant']}): a_real {ref['a_real']:.3f}, a_planted "
        f"{ref['a_planted']:.3f} (against the truth {ref['a_planted_truth']:.3f}), transfer "
        f"{ref['transfer']:.3f}; shared {out['shared']:.3f}"
    )
    cols = [
        "variant",
        "a_real",
        "a_planted",
        "transfer",
        "misread",
        "misread_truth",
        "predicted",
        "observed",
        "planted_r",
        "planted_r_again",
        "r_truth",
    ]
    print(pd.DataFrame(out["variants"])[cols].round(3).to_string(index=False))
    print("\nthe reading applied to the truth (no planting error): the voxels' r against it")
    reading = [
        "variant",
        "truth_median",
        "truth_mean",
        "truth_skew",
        "reading",
        "reading_over_truth",
        "reading_over_mean",
    ]
    print(pd.DataFrame(out["variants"])[reading].round(3).to_string(index=False))
    if args.models:
        print("\nper step of the final fit: transfer (a_real / a_planted), planted_r / r_truth")
        split = [
            {
                "variant": row["variant"],
                "pcs": row["pcs"],
                **{f"{st} transfer": row[st]["transfer"] for st in STEPS},
                **{f"{st} ratio": row[st]["ratio"] for st in STEPS},
            }
            for row in out["variants"]
        ]
        print(pd.DataFrame(split).round(3).to_string(index=False))
        print("\nleakage: a trial's beta on the responses of trials t-2 .. t+2 (own = 1)")
        for row in out["variants"]:
            for st in ("B", "D"):
                for kind in ("real", "planted"):
                    lags = " ".join(f"{c:+.2f}" for c in row[st][f"leakage_{kind}"])
                    print(f"  {row['variant']:<16} {st:<2} {kind:<8} {lags}")
        print("\nthe type-B fit's leakage of the real responses by slice acquisition time (s)")
        for row in out["variants"]:
            for span, lags in row["leakage_by_slice_time"].items():
                text = " ".join(f"{c:+.2f}" for c in lags)
                print(f"  {row['variant']:<16} {span:<10} {text}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
